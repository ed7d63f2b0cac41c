"""The value types every settings module shares: names, digests, image references, CPU levels.

`llamafleet.settings.schema` and `llamafleet.settings.cluster` both build on these, so neither
imports the other for them (no import cycle).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

from pydantic import StringConstraints

from llamafleet.components.config import DNS_1123_LABEL_PATTERN

# DNS-1123 label: the names become namespaces, Deployments and Services (llamafleet.settings.names
# checks what is built from them).
Name = Annotated[
    str,
    StringConstraints(pattern=DNS_1123_LABEL_PATTERN, min_length=1, max_length=30),
]
Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
ImageRef = Annotated[str, StringConstraints(pattern=r"^[^\s@]+@sha256:[0-9a-f]{64}$")]

# From oldest to newest: a tier's level says which llama.cpp CPU variants its nodes can run.
IsaLevel = Literal[
    "x86-64", "x86-64-v2", "sandybridge", "ivybridge", "avx2", "avx512", "avx512-vnni", "amx"
]
ISA_LEVELS: Final[tuple[str, ...]] = get_args(IsaLevel)
