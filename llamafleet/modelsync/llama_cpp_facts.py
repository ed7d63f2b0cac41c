"""Facts of the pinned llama.cpp build that reading a GGUF needs (tests/image checks each one
against the pinned source)."""

from __future__ import annotations

from typing import Final

# Architectures whose sliding-window layers follow `load_swa_pattern(ml, N[, dense_first])`
# in src/models/<arch>.cpp, with the window size read from the file's
# `%s.attention.sliding_window`: (N, dense_first). Architectures left out (a window hard-coded
# or chosen by layer count) are sized as if every layer attended to the whole context, which
# over-counts and never under-counts.
SWA_PATTERNS: Final[dict[str, tuple[int, bool]]] = {
    "gemma2": (2, False),
    "gemma3": (6, False),
    "gemma-embedding": (6, False),
    "cohere2": (4, False),
    "olmo2": (4, False),
    "gpt-oss": (2, False),
}


def pattern_layers(n_pattern: int, dense_first: bool, layers: int) -> tuple[bool, ...]:
    """Which of `layers` layers use the sliding window (llama_hparams::set_swa_pattern): with
    `dense_first`, every n-th layer from the first is full; otherwise the last of every n."""
    if dense_first:
        return tuple(n_pattern == 0 or il % n_pattern != 0 for il in range(layers))
    return tuple(n_pattern == 0 or il % n_pattern < n_pattern - 1 for il in range(layers))


def default_sliding_window_layers(architecture: str, layers: int) -> tuple[bool, ...] | None:
    """The pinned build's sliding-window layers for `architecture` when the file has a window
    but no pattern; None for architectures outside SWA_PATTERNS."""
    known = SWA_PATTERNS.get(architecture)
    return None if known is None else pattern_layers(*known, layers)
