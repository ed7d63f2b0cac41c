"""A fork's preview comment, which `pr-comment.yml` posts: its files come from the fork's run
(whose code, workflow files included, the fork controls), so they are read as untrusted data.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Final

from llamafleet.delivery.bodies import PREVIEW_MARKER
from llamafleet.delivery.errors import DeliveryError
from llamafleet.delivery.markdown import LIMIT

# An @-mention where GitHub would make one (not `repo@sha256:…`): a word joiner after the `@`
# keeps its text and stops the notification.
_MENTION: Final = re.compile(r"(?<![\w/.@-])@(?=[A-Za-z0-9])")
_WORD_JOINER: Final = "\u2060"
# What a fork's pull request run leaves (pr.yml), for the `workflow_run` that posts its comment.
FORK_PR_NUMBER: Final = "pr-number"
FORK_COMMENT: Final = "comment.md"
PR_NUMBER: Final = re.compile(r"[1-9][0-9]{0,9}")
COMMIT: Final = re.compile(r"[0-9a-f]{40}")


def read_untrusted(path: Path, limit: int = LIMIT) -> str:
    """The UTF-8 text of `path`, a regular file that is no symbolic link, of at most `limit`
    bytes (read no further).

    Raises:
        DeliveryError: the file is missing, a link or no regular file, longer than `limit`, or
            not UTF-8.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise DeliveryError(f"{path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise DeliveryError(f"{path}: not a regular file")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise DeliveryError(f"{path}: over {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DeliveryError(f"{path}: not UTF-8") from None


def fork_comment(text: str, run_url: str, head_sha: str) -> str:
    """The comment to post: the marker, a line no fork can remove saying whose run composed it,
    then `text` without its own marker and with its @-mentions made inert.

    Raises:
        DeliveryError: the result would pass GitHub's LIMIT.
    """
    body = text.removeprefix(PREVIEW_MARKER).lstrip("\n")
    banner = (
        f"> [!CAUTION]\n> Composed by [the fork's own run]({run_url}) at `{head_sha}`, whose "
        "code the fork controls: read it as the fork's claim, not this repository's check."
    )
    posted = f"{PREVIEW_MARKER}\n{banner}\n\n{_MENTION.sub('@' + _WORD_JOINER, body)}"
    if len(posted.encode("utf-8")) > LIMIT:
        raise DeliveryError(f"the fork's comment is over GitHub's {LIMIT}-character limit")
    return posted
