"""The model-fetcher image installs only the requirements its Dockerfile selects: those must cover
every third-party module modelsync imports, or the init container dies on import."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from llama_server import REPO

DOCKERFILE = REPO / "images" / "model-fetcher" / "Dockerfile"
REQUIREMENTS = REPO / "requirements.txt"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def selected_requirements(dockerfile: str, requirements: str) -> set[str]:
    """Names of the requirements.txt lines the Dockerfile's `grep -E '<pattern>'` keeps."""
    match = re.search(r"grep -E '([^']+)' requirements\.txt", dockerfile)
    assert match, "the fetcher Dockerfile no longer selects requirements with grep -E"
    pattern = re.compile(match.group(1))
    return {
        normalized(line.split("==")[0]) for line in requirements.splitlines() if pattern.match(line)
    }


def with_dependencies(names: set[str]) -> set[str]:
    """`names` and everything they require (without extras), as installed here."""
    found: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for requirement in metadata.requires(name) or []:
            if "extra ==" not in requirement and (match := _NAME.match(requirement)):
                todo.append(normalized(match.group(0)))
    return found


def third_party_imports(package: Path) -> Iterator[str]:
    """The top-level modules `package` (a folder of the `llamafleet` package) imports from
    outside itself and the standard library."""
    own = f"llamafleet.{package.name}"
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and name.split(".")[:2] != own.split("."):
                    yield top


def missing_from_image(dockerfile: str, requirements: str) -> set[str]:
    installed = with_dependencies(selected_requirements(dockerfile, requirements))
    providers = metadata.packages_distributions()
    needed = {
        normalized(dist)
        for module in third_party_imports(REPO / "llamafleet" / "modelsync")
        for dist in providers[module]
    }
    return needed - installed


def test_fetcher_image_installs_what_modelsync_imports() -> None:
    assert missing_from_image(DOCKERFILE.read_text(), REQUIREMENTS.read_text()) == set()


def test_a_selection_that_leaves_out_an_import_is_caught() -> None:
    narrowed = DOCKERFILE.read_text().replace("grep -E '^(boto3|", "grep -E '^(")
    assert narrowed != DOCKERFILE.read_text()
    assert "botocore" in missing_from_image(narrowed, REQUIREMENTS.read_text())
