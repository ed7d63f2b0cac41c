"""Load and validate a stack's `llamafleet:*` settings, from its file or from Pulumi's config.

Every problem becomes one line: `<stack file>: llamafleet:<key path>: <what is wrong/allowed>`.
Nothing here declares resources, so a bad stack fails before any resource exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pulumi
import yaml
from pulumi.runtime import config as runtime_config
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from llamafleet import REPO_ROOT
from llamafleet.settings.rules import Problem, check
from llamafleet.settings.schema import Settings

NAMESPACE = "llamafleet"
STACKS_DIR = REPO_ROOT / "stacks"


class SettingsError(Exception):
    """Bad settings: one line per problem, each naming the file and the key path."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(
            "\n".join(f"{source}: {NAMESPACE}:{p.path}: {p.message}" for p in self.problems)
        )


def stack_file(stack: str) -> Path:
    """The repository's `stacks/Pulumi.<stack>.yaml` (whether or not it exists)."""
    return STACKS_DIR / f"Pulumi.{stack}.yaml"


def resolve_stack_file(stack_or_path: str) -> tuple[str, Path]:
    """`prod` or `stacks/Pulumi.prod.yaml` -> ("prod", path): a `.yaml`/`.yml` argument is a
    stack file, anything else a stack name (`stack_file`)."""
    path = Path(stack_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path.name.removeprefix("Pulumi.").rsplit(".", 1)[0], path
    return stack_or_path, stack_file(stack_or_path)


def load_stack_file(path: Path) -> Settings:
    """Settings of a stack file; raises SettingsError naming the file.

    Raises:
        SettingsError: the file is unreadable or not a YAML mapping, its `config` is not a
            mapping, or (from parse) a setting is invalid; one line per problem, naming the
            stack file and the key path.
    """
    source = display_path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(source, [Problem("", f"cannot read the stack file: {exc}")]) from None
    if not isinstance(document, dict):
        raise SettingsError(source, [Problem("", "the stack file is not a YAML mapping")])
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise SettingsError(source, [Problem("", "`config` must be a mapping")])
    values = namespace_values(config)
    stack = (
        path.name.removeprefix("Pulumi.").rsplit(".", 1)[0]
        if path.name.startswith("Pulumi.")
        else None
    )
    return parse(values, source, encrypted_keys(values), stack)


# What a value encrypted in the stack file (`{secure: v1:…}`, from `pulumi config set --secret`)
# reads as where its plain text is not at hand (`validate`, `render`): set, value withheld.
ENCRYPTED_PLACEHOLDER = "[encrypted]"


def namespace_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `llamafleet:` keys with the prefix dropped; JSON strings (as the engine passes
    structured values) are decoded, and encrypted leaves read as ENCRYPTED_PLACEHOLDER."""
    values: dict[str, Any] = {}
    for key, value in config.items():
        namespace, _, name = str(key).partition(":")
        if namespace == NAMESPACE and name:
            values[name] = _decode(value)
    return values


def encrypted_keys(
    values: Mapping[str, Any], engine_secret: frozenset[str] = frozenset()
) -> frozenset[str]:
    """Which settings were encrypted in the stack file, as key paths (without `llamafleet:`):
    each leaf still in the file's form (`modelStore.credentials.secretAccessKey`), and each
    top-level key the engine decrypted (`engine_secret`: it names only top-level keys, so
    there the whole key counts as encrypted)."""
    found: set[str] = set(engine_secret & set(values))

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, child in value.items():  # pyright: ignore[reportUnknownVariableType]
                walk(child, f"{path}.{key}")
        elif isinstance(value, list):
            for index, child in enumerate(value):  # pyright: ignore[reportUnknownVariableType,reportUnknownArgumentType]
                walk(child, f"{path}[{index}]")
        elif value == ENCRYPTED_PLACEHOLDER:
            found.add(path)

    for key, value in values.items():
        walk(value, key)
    return frozenset(found)


def parse(
    values: Mapping[str, Any],
    source: str,
    encrypted: frozenset[str] = frozenset(),
    stack: str | None = None,
) -> Settings:
    """Validate `values` (namespace_values' output); `encrypted` names the keys that were
    encrypted in the stack file (see encrypted_keys), `stack` the stack (names built from it
    are checked; None: not those). Raises SettingsError, one line per problem.

    Raises:
        SettingsError: the schema refuses `values` or llamafleet.settings.rules.check finds
            problems; one line per problem, `<source>: llamafleet:<key path>: <message>`.
    """
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(source, _schema_problems(exc.errors())) from None
    problems = check(settings, encrypted, stack)
    if problems:
        raise SettingsError(source, problems)
    return settings


def engine_config(settings_file: Path) -> dict[str, str]:
    """The `llamafleet:` keys as the Pulumi engine hands them to a program (JSON strings)."""
    document = yaml.safe_load(settings_file.read_text()) or {}
    config = document.get("config") or {}
    return engine_values({k: v for k, v in config.items() if str(k).startswith(f"{NAMESPACE}:")})


def engine_values(config: Mapping[str, Any]) -> dict[str, str]:
    """A stack file's `config:` mapping as the engine hands it to a program: each value a
    string (structured values as JSON)."""
    return {
        str(key): value if isinstance(value, str) else json.dumps(value)
        for key, value in config.items()
    }


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    return _withhold_encrypted(value)


def _withhold_encrypted(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"secure"}:  # pyright: ignore[reportUnknownArgumentType]
            return ENCRYPTED_PLACEHOLDER
        return {k: _withhold_encrypted(v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, list):
        return [_withhold_encrypted(v) for v in value]  # pyright: ignore[reportUnknownVariableType]
    return value


def display_path(path: Path) -> str:
    """`path` as errors name it: relative to the working directory where it lies under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _schema_problems(errors: Sequence[ErrorDetails]) -> list[Problem]:
    """One problem per error, except that a required key missing beside an unknown key (most
    often a misspelling of it) is named on the unknown key's line instead of a line of its own."""
    unknown_at = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "extra_forbidden"}
    missing: dict[tuple[int | str, ...], list[str]] = {}
    kept: list[ErrorDetails] = []
    for error in errors:
        parent = tuple(error["loc"][:-1])
        if error["type"] == "missing" and parent in unknown_at:
            missing.setdefault(parent, []).append(str(error["loc"][-1]))
        else:
            kept.append(error)
    problems: list[Problem] = []
    for error in kept:
        problem = _problem(error)
        absent = missing.get(tuple(error["loc"][:-1]))
        if error["type"] == "extra_forbidden" and absent:
            problem = Problem(problem.path, f"{problem.message}; missing: {', '.join(absent)}")
        problems.append(problem)
    return problems


def _problem(error: ErrorDetails) -> Problem:
    location = error["loc"]
    path = _key_path(location)
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(location[:-1])
        return Problem(path, f"unknown key; allowed keys here: {', '.join(allowed)}")
    if error["type"] == "missing":
        return Problem(path, "is required")
    message = error["msg"].removeprefix("Value error, ")
    if location and location[-1] == "[key]":
        # pydantic's location for a bad mapping key: report it as the name at that path.
        return Problem(_key_path(location[:-1]), f"name {error['input']!r}: {message}")
    got = error.get("input")
    if not isinstance(got, dict | list | tuple) and error["type"] != "missing":
        message += f" (got {got!r})"
    return Problem(path, message)


def _key_path(location: Sequence[int | str]) -> str:
    """`location` as a settings key path: `a.b[0].c`, each field by its camelCase key (pydantic
    names a field by its Python name where its value came from the default)."""
    path = ""
    annotation: Any = Settings
    for part in location:
        key = part
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            key = field.alias if field is not None and field.alias else part
        annotation = _step(annotation, key)
        path += f"[{key}]" if isinstance(key, int) else (f".{key}" if path else str(key))
    return path


def _allowed_keys(location: Sequence[int | str]) -> list[str]:
    """The camelCase keys the model at `location` accepts (for unknown-key messages)."""
    model: type[BaseModel] = Settings
    annotation: Any = Settings
    for part in location:
        annotation = _step(annotation, part)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    # Excluded fields are retired keys, kept only to say so.
    return [field.alias or name for name, field in model.model_fields.items() if not field.exclude]


def _step(annotation: Any, part: int | str) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        by_alias = {f.alias or n: f for n, f in annotation.model_fields.items()}
        field = by_alias.get(str(part))
        return unwrap_annotation(field.annotation) if field else None
    origin = get_origin(annotation)
    if origin in (dict, list):
        return unwrap_annotation(get_args(annotation)[-1])
    if origin is tuple:
        return unwrap_annotation(get_args(annotation)[0])
    return None


def unwrap_annotation(annotation: Any) -> Any:
    """Strip Optional[...] and Annotated[...] down to the model, container or value type."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation


def settings_source() -> str:
    """The running stack's file, as settings errors name it."""
    return display_path(stack_file(pulumi.get_stack()))


def pulumi_settings() -> Settings:
    """Settings of the running Pulumi program (all config the engine passed, plus any set
    in-process, e.g. by the mock runner), reported against the stack's file."""
    config = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    source = settings_source()
    values = namespace_values(config)
    secret = frozenset(
        key for key in values if runtime_config.is_config_secret(f"{NAMESPACE}:{key}")
    )
    return parse(values, source, encrypted_keys(values, secret), pulumi.get_stack())
