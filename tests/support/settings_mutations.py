"""Mutations of stack settings, generated from the settings schema
(`llamafleet.settings.schema.Settings`): every leaf the stack files set, and every field the schema
has that they leave unset, gets type changes, deletions, unknown keys, unicode and the boundary
values its constraints name. Keys added to the schema later are covered without editing this module.

A leaf path is a tuple of keys (str) and list indexes (int) under `llamafleet:`, e.g.
`("models", "gemma3-270m", "replicas", "max")`. Its *shape* replaces the names a stack chooses
(models, tiers, teams, clusters) and list indexes with `*`, so each schema field is one shape.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from llamafleet.settings.load import unwrap_annotation
from llamafleet.settings.schema import Settings

Path = tuple[str | int, ...]
DELETE: Any = object()  # the mutation's value: remove the key


@dataclass(frozen=True)
class Mutation:
    """Set `path` to `value` (or delete it) in a stack's `llamafleet:` settings."""

    stack: str
    path: Path
    value: Any
    kind: str

    def apply(self, config: dict[str, Any]) -> dict[str, Any]:
        """A copy of `config` (a stack file's `config:` mapping) with the mutation applied."""
        mutated = copy.deepcopy(config)
        head, *rest = self.path
        if not rest:
            if self.value is DELETE:
                mutated.pop(f"llamafleet:{head}", None)
            else:
                mutated[f"llamafleet:{head}"] = self.value
            return mutated
        target: Any = mutated.setdefault(f"llamafleet:{head}", {})
        for part in rest[:-1]:
            # A section the stack leaves to its defaults is written for the mutation.
            target = target[part] if isinstance(part, int) else target.setdefault(part, {})
        if self.value is DELETE:
            del target[rest[-1]]
        else:
            target[rest[-1]] = self.value
        return mutated

    def __str__(self) -> str:
        shown = "<delete>" if self.value is DELETE else repr(self.value)
        return f"{self.stack}: {key_path(self.path)} = {shown[:80]} ({self.kind})"


def key_path(path: Path) -> str:
    """`models.gemma3-270m.tiers[0]`, as settings errors name it."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def shape(path: Path) -> str:
    """The schema field a path reaches, with chosen names and indexes as `*`."""
    parts: list[str] = []
    annotation: Any = Settings
    for part in path:
        model = _model(annotation)
        if model is not None:
            parts.append(str(part))
            annotation = _field_annotation(model, str(part))
        else:
            parts.append("*")
            annotation = _element(annotation)
    return ".".join(parts)


@dataclass(frozen=True)
class Leaf:
    path: Path
    value: Any  # DELETE where the stack leaves the field unset
    annotation: Any
    field: FieldInfo | None


def leaves(settings: dict[str, Any]) -> Iterator[Leaf]:
    """Every scalar (or empty container) the settings hold, and every field of each model they
    hold that they leave unset, with its annotation and pydantic field."""
    yield from _walk(settings, (), Settings, None)


def _walk(value: Any, path: Path, annotation: Any, field: FieldInfo | None) -> Iterator[Leaf]:
    model = _model(annotation)
    if model is not None and isinstance(value, dict):
        by_alias = {f.alias or n: f for n, f in model.model_fields.items()}
        for key, child in value.items():  # pyright: ignore[reportUnknownVariableType]
            child_field = by_alias.get(str(key))
            child_annotation = None if child_field is None else child_field.annotation
            yield from _walk(child, (*path, str(key)), child_annotation, child_field)
        for alias, unset in by_alias.items():
            if alias in value:
                continue
            yield Leaf((*path, alias), DELETE, unset.annotation, unset)
            nested = _model(unset.annotation)
            if nested is not None and not any(
                f.is_required() for f in nested.model_fields.values()
            ):
                # A section left to its defaults: its fields are mutated one by one too.
                yield from _walk({}, (*path, alias), unset.annotation, unset)
        return
    if isinstance(value, dict) and value:
        for key, child in value.items():  # pyright: ignore[reportUnknownVariableType]
            yield from _walk(child, (*path, str(key)), _element(annotation), None)
        return
    if isinstance(value, list) and value:
        for index, child in enumerate(value):  # pyright: ignore[reportUnknownVariableType,reportUnknownArgumentType]
            yield from _walk(child, (*path, index), _element(annotation), None)
        return
    yield Leaf(path, value, annotation, field)


def mutations(stack: str, leaf: Leaf) -> Iterator[Mutation]:
    """The mutations of one leaf: type changes, deletion, unicode, boundary values from its
    constraints, every choice of a Literal, an unknown key beside it."""
    path, value = leaf.path, leaf.value

    def make(new: Any, kind: str) -> Mutation:
        return Mutation(stack, path, new, kind)

    if value is not DELETE:
        yield make(DELETE, "delete")
        yield make(_other_type(value), "type")
        if isinstance(path[-1], str):
            yield Mutation(stack, (*path[:-1], "unknownKey"), 1, "unknown key")
    else:
        yield make(["unexpected"], "type")
        if _model(leaf.annotation) is not None:
            yield make({"unexpected": 1}, "unknown key")
    if value is DELETE or isinstance(value, str):
        yield make("ünïcødé-名前", "unicode")
        yield make("", "empty")
    for new in _boundaries(leaf):
        yield make(new, "boundary")
    for choice in _choices(leaf.annotation):
        if choice != value:
            yield make(choice, "choice")


def _other_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes please"
    if isinstance(value, int | float):
        return "many"
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return {"not": "a list"}
    if isinstance(value, dict):
        return ["not", "a", "mapping"]
    return 3.5


def _constraints(annotation: Any, field: FieldInfo | None) -> list[Any]:
    found: list[Any] = list(field.metadata) if field is not None else []
    stack = [annotation]
    while stack:
        current = stack.pop()
        if get_origin(current) is Annotated:
            base, *metadata = get_args(current)
            found += metadata
            stack.append(base)
        elif get_origin(current) in (Union, type(int | None)):
            stack += [a for a in get_args(current) if a is not type(None)]
    return found


def _boundaries(leaf: Leaf) -> Iterator[Any]:
    """Each numeric bound and its first value outside, each maximum length and one past it."""
    base = unwrap_annotation(leaf.annotation)
    for constraint in _constraints(leaf.annotation, leaf.field):
        # ge/le: the bound is allowed and one step past it is not; gt/lt: the reverse.
        for attribute, step in (("ge", -1), ("gt", 1), ("le", 1), ("lt", -1)):
            bound = getattr(constraint, attribute, None)
            if isinstance(bound, int | float) and not isinstance(bound, bool):
                yield bound
                yield bound + step
        length = getattr(constraint, "max_length", None)
        if isinstance(length, int) and base is str:
            yield "a" * length
            yield "a" * (length + 1)
    if base is int:
        yield from (0, -1, 2**63)
    if base is float:
        yield from (0.0, float("inf"))


def _choices(annotation: Any) -> list[Any]:
    base = unwrap_annotation(annotation)
    if get_origin(base) is Literal:
        return list(get_args(base))
    if base is bool:
        return [True, False]
    return []


def _model(annotation: Any) -> type[BaseModel] | None:
    base = None if annotation is None else unwrap_annotation(annotation)
    if isinstance(base, type) and issubclass(base, BaseModel):
        return base
    return None


def _field_annotation(model: type[BaseModel], alias: str) -> Any:
    by_alias = {f.alias or n: f for n, f in model.model_fields.items()}
    field = by_alias.get(alias)
    return None if field is None else field.annotation


def _element(annotation: Any) -> Any:
    base = unwrap_annotation(annotation)
    if get_origin(base) in (dict, list):
        return get_args(base)[-1]
    return None


def settings_keys(model: type[BaseModel] = Settings) -> set[str]:
    """Every key (camelCase alias) of `model` and of every settings model nested in it."""
    keys: set[str] = set()
    seen: set[type[BaseModel]] = set()
    pending = [model]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for name, field in current.model_fields.items():
            keys.add(field.alias or name)
            pending += _nested_models(field.annotation)
    return keys


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            found.append(current)
        stack += list(get_args(current))
    return found
