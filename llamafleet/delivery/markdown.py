"""Markdown that fits in one GitHub comment: collapsible code blocks cut to a size budget.

GitHub refuses a comment or issue body over 65536 characters. Sizes here are counted in UTF-8
bytes, never fewer than characters however GitHub counts them, and a body is composed to stay
under `BUDGET`. Fixed text is kept whole; what is left is shared among the code blocks: a small
block is shown whole and the big ones split the rest evenly, each cut at a line end with a note
saying how much is shown, and a banner at the top says the body was cut.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

LIMIT = 65536
# What a body may use: the limit less room for anything counted differently.
BUDGET = LIMIT - 4096
# Room kept for one block's "cut" note and for the banner.
NOTE_ROOM = 200
BANNER_ROOM = 400
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TICKS = re.compile(r"`+")


def size(text: str) -> int:
    """A text's size as the budget counts it (UTF-8 bytes)."""
    return len(text.encode())


def clean(text: str) -> str:
    """Terminal colours and control characters removed (tabs and newlines kept)."""
    return _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n")))


@dataclass(frozen=True)
class Block:
    """A collapsible code block: `<details>` with a summary line and fenced text."""

    summary: str
    text: str
    lang: str = ""


@dataclass(frozen=True)
class Banner:
    """Where the note that something was cut goes (rendered only when something was)."""

    text: str


Part = str | Block | Banner


def _fence(text: str) -> str:
    """A backtick fence longer than any backtick run in `text`, so nothing in it closes it."""
    longest = max((len(m.group()) for m in _TICKS.finditer(text)), default=0)
    return "`" * max(3, longest + 1)


def _render_block(block: Block, text: str, note: str) -> str:
    fence = _fence(block.text)
    body = text if not text or text.endswith("\n") else text + "\n"
    return (
        f"<details><summary>{html.escape(block.summary)}</summary>\n\n"
        f"{fence}{block.lang}\n{body}{fence}\n{note}\n</details>\n\n"
    )


def cut(text: str, room: int) -> tuple[str, bool]:
    """`text`'s longest run of whole lines within `room` bytes (within a line when even the
    first does not fit); and whether anything was cut."""
    if size(text) <= room:
        return text, False
    kept: list[str] = []
    used = 0
    for line in text.splitlines(keepends=True):
        if used + size(line) > room:
            break
        kept.append(line)
        used += size(line)
    if not kept:
        return text.encode()[: max(room, 0)].decode(errors="ignore"), True
    return "".join(kept), True


def _shares(sizes: Sequence[int], room: int) -> list[int]:
    """Split `room` among blocks of `sizes`: each small one whole, the rest evenly."""
    shares = [0] * len(sizes)
    left = max(room, 0)
    pending = sorted(range(len(sizes)), key=lambda i: sizes[i])
    while pending:
        fair = left // len(pending)
        i = pending.pop(0)
        shares[i] = min(sizes[i], fair)
        left -= shares[i]
    return shares


def compose(parts: Sequence[Part], budget: int = BUDGET) -> str:
    """The parts as one markdown body of at most `budget` bytes."""
    blocks = [p for p in parts if isinstance(p, Block)]
    texts = [clean(b.text) for b in blocks]
    fixed = sum(size(p) for p in parts if isinstance(p, str)) + BANNER_ROOM
    fixed += sum(size(_render_block(b, "", "")) + NOTE_ROOM for b in blocks)
    shares = _shares([size(t) for t in texts], budget - fixed)
    rendered: list[str] = []
    was_cut = False
    for i, (block, text) in enumerate(zip(blocks, texts, strict=True)):
        shown, block_cut = cut(text, shares[i])
        note = ""
        if block_cut:
            was_cut = True
            total, kept = len(text.splitlines()), len(shown.splitlines())
            note = f"\n_Cut to fit the comment: {kept} of {total} lines shown._\n"
        rendered.append(_render_block(block, shown, note))
    out: list[str] = []
    next_block = iter(rendered)
    for part in parts:
        if isinstance(part, Block):
            out.append(next(next_block))
        elif isinstance(part, Banner):
            out.append(part.text if was_cut else "")
        else:
            out.append(part)
    body = "".join(out)
    if size(body) > budget:  # only when the fixed text alone is too big
        note = "\n\n_… cut: this body was too long for GitHub._\n"
        body = body.encode()[: budget - size(note)].decode(errors="ignore") + note
    return body
