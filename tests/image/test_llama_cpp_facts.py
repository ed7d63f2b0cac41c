"""Facts of the pinned llama.cpp build that the project writes down, checked against its source
(unpacked by the native build)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from llama_server import source_tree

from llamafleet.components.server_args import BUILTIN_CHAT_TEMPLATES
from llamafleet.modelsync.llama_cpp_facts import SWA_PATTERNS

pytestmark = pytest.mark.image


@pytest.fixture(scope="module")
def source(payload: Path) -> Path:
    del payload  # built first: the build unpacks the pinned source
    return source_tree() / "src"


def test_builtin_chat_templates_are_the_pinned_sources(source: Path) -> None:
    """The names `validate` accepts for chatTemplate are LLM_CHAT_TEMPLATES' keys."""
    text = (source / "llama-chat.cpp").read_text()
    table = text[text.index("LLM_CHAT_TEMPLATES") :]
    table = table[: table.index("};")]
    assert set(re.findall(r'\{\s*"([^"]+)",\s*LLM_CHAT_TEMPLATE_', table)) == BUILTIN_CHAT_TEMPLATES


def model_source(source: Path, architecture: str) -> str:
    """src/models/<class>.cpp of `architecture`, via llama-arch.cpp's names and the
    constructor llama-model.cpp picks for the enum."""
    names = (source / "llama-arch.cpp").read_text()
    enum = re.search(rf'\{{\s*(LLM_ARCH_\w+),\s*"{re.escape(architecture)}"\s*\}}', names)
    assert enum is not None, architecture
    models = (source / "llama-model.cpp").read_text()
    made = re.search(rf"case {enum[1]}:\s*return new llama_model_(\w+)\(", models)
    assert made is not None, enum[1]
    candidates = [source / "models" / f"{made[1]}.cpp"]
    candidates.append(source / "models" / f"{made[1].replace('_', '-')}.cpp")
    found = [path for path in candidates if path.is_file()]
    assert found, candidates
    return found[0].read_text()


@pytest.mark.parametrize("architecture", sorted(SWA_PATTERNS))
def test_sliding_window_patterns_are_the_pinned_sources(source: Path, architecture: str) -> None:
    """Each architecture in the table reads its window from the file and calls
    load_swa_pattern with the same pattern and order."""
    text = model_source(source, architecture)
    calls = re.findall(
        r"load_swa_pattern\(ml,\s*(\d+)\s*(?:,\s*(?:/\*[^*]*\*/\s*)?(true|false))?\)", text
    )
    assert len(calls) == 1, calls
    n_pattern, dense_first = calls[0]
    assert (int(n_pattern), dense_first == "true") == SWA_PATTERNS[architecture]
    assert "LLM_KV_ATTENTION_SLIDING_WINDOW," in text
