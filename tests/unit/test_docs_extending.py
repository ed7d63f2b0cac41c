"""docs/extending.md stays true to the code as it is.

The conventions the guide follows, each checked here:

- Paths: an inline code span (`…`) whose first part is a top-level entry of the repository
  (ROOTS: `llamafleet/…`, `tests/…`, `Makefile`, …) names a file or folder that exists. A
  `<placeholder>` part matches any name (it is globbed); a `path::name` suffix names a `def` or
  `class` in that file. The same holds for such paths in a ```sh block.
- Modules: a span that is a dotted `llamafleet.<module>[.<attribute>…]` name imports (the longest
  module prefix) and has the rest as attributes.
- Settings: a span starting with `llamafleet:` and holding no other colon is a key path (a
  Pulumi type token, `llamafleet:<group>:<Name>`, is not); each part that is not a
  `<placeholder>` is a key of the settings schema.
- Commands: `make <target>`, `llamafleet <command>` and `modelsync <command>` (in spans and in
  ```sh blocks, with or without `.venv/bin/`) name a Makefile target or a subcommand.
- Excerpts: a fenced block whose previous non-blank line ends with "From `<path>`:" is an
  excerpt of that file: its lines appear there contiguously and verbatim, at one indentation
  (the guide may remove a common indentation). Every block but a ```sh one is an excerpt.
- Identifiers: every other span part that looks like code (CamelCase, or with an underscore)
  occurs as a word in the code, tests, scripts, images or stack files, or is a settings key. A
  dotted `Class.member` whose class is defined once in `llamafleet/` or `llamafleet_gateway/`
  (or `pulumi.<name>…`) resolves: an attribute, a dataclass field or a pydantic field.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.settings_mutations import settings_keys

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "extending.md"
ROOTS = frozenset(
    {
        ".ci",
        "benchmarks",
        "docs",
        "gateway",
        "images",
        "llamafleet",
        "llamafleet_gateway",
        "scripts",
        "stacks",
        "tests",
        "Makefile",
        "Pulumi.yaml",
        "README.md",
        "pyproject.toml",
    }
)
FENCE = re.compile(r"^```(\w*)\s*$")
SPAN = re.compile(r"`([^`\n]+)`")
EXCERPT_INTRO = re.compile(r"(?:^|\s)From `([^`]+)`:$")
PLACEHOLDER = re.compile(r"<[^<>]+>")
SETTINGS_KEY = re.compile(r"^llamafleet:[^:]*$")
DOTTED = re.compile(r"^llamafleet(\.[A-Za-z_]\w*)+$")
IDENTIFIER = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(\(\))?$")
COMMAND = re.compile(r"^(?:\.venv/bin/)?(make|llamafleet|modelsync)\s+([a-z][a-z-]*)")
PARSERS = {
    "llamafleet": REPO / "llamafleet" / "command" / "cli.py",
    "modelsync": REPO / "llamafleet" / "modelsync" / "cli.py",
}


@dataclass(frozen=True)
class Block:
    """A fenced block: its language, its lines, and the last non-blank line before its opening
    fence (another block's closing fence, if that came last)."""

    language: str
    lines: tuple[str, ...]
    intro: str


@dataclass(frozen=True)
class Guide:
    """The guide split into prose lines and fenced blocks."""

    prose: tuple[str, ...]
    blocks: tuple[Block, ...]

    @property
    def spans(self) -> list[str]:
        """Every inline code span of the prose."""
        return [span for line in self.prose for span in SPAN.findall(line)]

    @property
    def shell_lines(self) -> list[str]:
        """Every line of the ```sh blocks, without its comment."""
        return [
            line.split(" #", 1)[0].strip()
            for block in self.blocks
            if block.language == "sh"
            for line in block.lines
        ]


def parse(text: str) -> Guide:
    """`text` (Markdown) as prose and fenced blocks."""
    prose: list[str] = []
    blocks: list[Block] = []
    current: list[str] | None = None
    language = intro = previous = ""
    for line in text.splitlines():
        fence = FENCE.match(line)
        if current is None and fence:
            current, language, intro = [], fence.group(1), previous
        elif current is not None and line.startswith("```"):
            blocks.append(Block(language, tuple(current), intro))
            current = None
        elif current is not None:
            current.append(line)
        else:
            prose.append(line)
        previous = line if line.strip() else previous
    assert current is None, "an unclosed fence"
    return Guide(tuple(prose), tuple(blocks))


@functools.cache
def guide() -> Guide:
    return parse(GUIDE.read_text())


def path_part(span: str) -> tuple[str, str | None] | None:
    """(path, `::name` or None) when `span` is a repository path, else None."""
    path, _, name = span.partition("::")
    if " " in path or path.split("/", 1)[0] not in ROOTS:
        return None
    return path, name or None


def path_problem(path: str, name: str | None) -> str | None:
    """Why `path` (with an optional `::name` in it) is not in the repository, or None."""
    pattern = PLACEHOLDER.sub("*", path.rstrip("/"))
    found = sorted(REPO.glob(pattern)) if "*" in pattern else [REPO / pattern]
    found = [p for p in found if p.exists()]
    if not found:
        return f"{path}: no such file or folder"
    if name is None:
        return None
    definition = re.compile(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b", re.M)
    if not definition.search(found[0].read_text()):
        return f"{path}: defines no {name}"
    return None


def import_problem(dotted: str) -> str | None:
    """Why `dotted` (llamafleet.module[.attribute…]) does not resolve, or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return f"{dotted}: {'.'.join(parts[:cut])} has no {attribute}"
            target = getattr(target, attribute)
        return None
    return f"{dotted}: imports nothing"


def key_problems(span: str, known: set[str]) -> list[str]:
    """The parts of a `llamafleet:` key path that are not settings keys."""
    path = PLACEHOLDER.sub("", span.removeprefix("llamafleet:"))
    parts = [p for p in re.split(r"[.\[\]]", path) if p and not p.isdigit()]
    return [f"{span}: {part} is not a settings key" for part in parts if part not in known]


@functools.cache
def makefile_targets() -> frozenset[str]:
    return frozenset(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))


def command_problem(text: str) -> str | None:
    """Why the command `text` starts with is not there (None: it is, or it is no command)."""
    match = COMMAND.match(text)
    if match is None:
        return None
    tool, name = match.groups()
    if tool == "make":
        return None if name in makefile_targets() else f"{text}: no make target {name}"
    source = PARSERS[tool].read_text()
    if re.search(rf'add_parser\(\s*"{re.escape(name)}"', source) is None:
        return f"{text}: {tool} has no command {name}"
    return None


@functools.cache
def code_words() -> frozenset[str]:
    """Every word of the code, tests, scripts, images, Makefile and stack files."""
    files = [
        *(REPO / "llamafleet").rglob("*.py"),
        *(REPO / "llamafleet_gateway").rglob("*.py"),
        *(REPO / "tests").rglob("*.py"),
        *(REPO / "stacks").glob("*.yaml"),
        *(p for p in (REPO / "scripts").iterdir() if p.is_file()),
        *(p for p in (REPO / "images").rglob("*") if p.is_file()),
        REPO / "Makefile",
    ]
    # Settings keys are camelCase aliases of the fields (to_camel), not words of the code.
    words: set[str] = set(settings_keys())
    for file in files:
        if file.resolve() != Path(__file__).resolve():  # this file names mistakes on purpose
            words |= set(re.findall(r"[A-Za-z_]\w*", file.read_text(errors="replace")))
    return frozenset(words)


def identifier_problems(span: str) -> list[str]:
    """The code-like parts of an identifier span that the code never mentions."""
    if not IDENTIFIER.match(span):
        return []
    parts = span.removesuffix("()").split(".")
    code_like = [p for p in parts if "_" in p or p != p.lower()]
    return [f"{span}: {p} occurs nowhere in the code" for p in code_like if p not in code_words()]


@functools.cache
def class_modules() -> dict[str, str]:
    """Class name -> the module defining it, for the classes defined exactly once in the
    project's packages."""
    found: dict[str, list[str]] = {}
    for package in ("llamafleet", "llamafleet_gateway"):
        for file in (REPO / package).rglob("*.py"):
            module = ".".join(file.relative_to(REPO).with_suffix("").parts)
            for name in re.findall(r"^class\s+(\w+)", file.read_text(), re.M):
                found.setdefault(name, []).append(module.removesuffix(".__init__"))
    return {name: modules[0] for name, modules in found.items() if len(modules) == 1}


def has_member(owner: Any, name: str) -> bool:
    """An attribute, a dataclass field or a pydantic field of `owner`."""
    fields = {
        *getattr(owner, "__dataclass_fields__", {}),
        *getattr(owner, "model_fields", {}),
    }
    return hasattr(owner, name) or name in fields


def member_problem(span: str) -> str | None:
    """Why a dotted `Class.member` (or `pulumi.…`) span does not resolve; None where it does,
    or where its head is neither a project class nor `pulumi`."""
    head, *members = span.removesuffix("()").split(".")
    if not members or not IDENTIFIER.match(span):
        return None
    if head == "pulumi":
        owner: Any = importlib.import_module("pulumi")
    elif head in class_modules():
        owner = getattr(importlib.import_module(class_modules()[head]), head)
    else:
        return None
    for member in members:
        if not has_member(owner, member):
            return f"{span}: no {member}"
        owner = getattr(owner, member, None)
    return None


def excerpt_found(excerpt: tuple[str, ...], text: str) -> bool:
    """Whether `excerpt`'s lines are contiguous lines of `text`, each under one indentation
    (blank lines match blank lines)."""
    lines = text.splitlines()
    first = excerpt[0]
    for start, line in enumerate(lines):
        indent = line[: len(line) - len(first)]
        if not line.endswith(first) or indent.strip():
            continue
        window = lines[start : start + len(excerpt)]
        if len(window) == len(excerpt) and all(
            have == indent + want or (not want.strip() and not have.strip())
            for have, want in zip(window, excerpt, strict=True)
        ):
            return True
    return False


def excerpts(parsed: Guide) -> Iterator[tuple[str, Block]]:
    """(path, block) for each block the guide introduces as an excerpt of a file."""
    for block in parsed.blocks:
        intro = EXCERPT_INTRO.search(block.intro.strip())
        if intro is not None:
            yield intro.group(1), block


def test_every_path_exists() -> None:
    spans = guide().spans + [t for line in guide().shell_lines for t in line.split()]
    paths = [found for span in spans if (found := path_part(span)) is not None]
    assert len(paths) > 50  # the guide does point at the code
    problems = [problem for path, name in paths if (problem := path_problem(path, name))]
    assert problems == []


def test_every_llamafleet_name_imports() -> None:
    names = [span for span in guide().spans if DOTTED.match(span)]
    assert names
    assert [problem for name in names if (problem := import_problem(name))] == []


def test_every_settings_key_is_in_the_schema() -> None:
    known = settings_keys()
    keys = [span for span in guide().spans if SETTINGS_KEY.match(span)]
    assert len(keys) > 5
    assert [problem for key in keys for problem in key_problems(key, known)] == []


def test_every_command_exists() -> None:
    texts = guide().spans + guide().shell_lines
    commands = [text for text in texts if COMMAND.match(text)]
    assert len(commands) > 5
    assert [problem for text in commands if (problem := command_problem(text))] == []


def test_every_identifier_occurs_in_the_code() -> None:
    spans = [span for span in guide().spans if path_part(span) is None]
    assert [problem for span in spans for problem in identifier_problems(span)] == []


def test_every_class_member_resolves() -> None:
    spans = [span for span in guide().spans if path_part(span) is None and "." in span]
    assert [problem for span in spans if (problem := member_problem(span))] == []


def test_every_excerpt_is_verbatim() -> None:
    found = list(excerpts(guide()))
    assert len(found) >= 5
    # Code shown is code that exists: every block but the shell commands is an excerpt.
    assert [b.lines[0] for b in guide().blocks if b.language != "sh"] == [
        block.lines[0] for _, block in found
    ]
    missing = [
        f"{path}: {block.lines[0].strip()}"
        for path, block in found
        if not excerpt_found(block.lines, (REPO / path).read_text())
    ]
    assert missing == []


def test_the_checks_catch_what_is_wrong() -> None:
    """The controls: each check refuses a mistake, so the tests above are not vacuous."""
    assert path_problem("llamafleet/components/node_tiers.py", None)
    assert path_problem("llamafleet/components/node_tier.py", "NodeTeir")
    assert path_problem("tests/program/urns/<stack>.txt", None) is None
    assert import_problem("llamafleet.program.clusters.provisions")
    assert key_problems("llamafleet:clusters.<c>.tiers.<t>.cpuPerNode", settings_keys())
    assert command_problem("make deploy") and command_problem("llamafleet apply prod")
    assert command_problem("modelsync import-ollama --verify") is None
    assert identifier_problems("NodeTierArguments")
    assert member_problem("GatewayArgs.backend") and member_problem("pulumi.Configuration")
    assert member_problem("Serving.gateway") is None  # a pydantic field
    assert member_problem("InferenceServiceArgs.autoscaler") is None  # a dataclass field
    text = "class A:\n    def f(self) -> None:\n        x = 1\n\n        return x\n"
    assert excerpt_found(("def f(self) -> None:", "    x = 1", "", "    return x"), text)
    assert not excerpt_found(("def f(self) -> None:", "    x = 2"), text)
    assert not excerpt_found(("def f(self) -> None:", "x = 1"), text)
    intro = parse("So. From `a.py`:\n\n```python\nx\n```\n\n```sh\nmake up\n```\n")
    assert [(path, block.lines) for path, block in excerpts(intro)] == [("a.py", ("x",))]
    assert not list(excerpts(parse("From `a.py`, then this:\n```python\nx\n```\n")))
    assert intro.shell_lines == ["make up"]
