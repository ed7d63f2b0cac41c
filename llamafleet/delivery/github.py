"""The few GitHub REST calls the workflows make, over the standard library.

The token comes from the environment (`GITHUB_TOKEN`), never from the command line, and goes
only to the API's own origin (`GITHUB_API_URL`; a `Link` header pointing elsewhere is refused).
A failure is one line: the call, the status and GitHub's message. Server errors (5xx) and
dropped connections are retried a few times first.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from llamafleet.delivery.errors import DeliveryError

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
PER_PAGE = 100
# Most pages read when listing (10,000 items): a bound, not a limit anyone should reach.
MAX_PAGES = 100
RETRY_DELAYS = (2.0, 5.0)
TIMEOUT_S = 30
_RETRIED = frozenset({500, 502, 503, 504})
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')

Json = dict[str, Any]


class GitHubError(DeliveryError):
    """A call GitHub refused or that never got an answer."""


def _message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()[:200]
    if isinstance(data, dict):
        return str(cast("Json", data).get("message", "")).strip()
    return ""


def next_link(header: str | None) -> str | None:
    """The `rel="next"` URL of a `Link` header, if any."""
    match = _NEXT.search(header or "")
    return match.group(1) if match else None


@dataclass
class GitHub:
    """A client for one repository's issues and comments."""

    token: str = field(repr=False)
    repo: str
    api_url: str = DEFAULT_API_URL
    retry_delays: Sequence[float] = RETRY_DELAYS
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if not self.token:
            raise DeliveryError("GITHUB_TOKEN is not set: the workflow must pass it in `env`")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", self.repo):
            raise DeliveryError(f"not a repository (owner/name): {self.repo!r}")
        parsed = urllib.parse.urlsplit(self.api_url)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise DeliveryError(f"GITHUB_API_URL is not an http(s) URL: {self.api_url!r}")
        self.api_url = self.api_url.rstrip("/")

    def _url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"{self.api_url}/repos/{self.repo}{path}{query}"

    def _same_origin(self, url: str) -> bool:
        ours, theirs = urllib.parse.urlsplit(self.api_url), urllib.parse.urlsplit(url)
        return (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc)

    def request(self, method: str, url: str, body: Json | None = None) -> tuple[Any, str | None]:
        """One call: its JSON answer and its `Link` header.

        Raises:
            GitHubError: GitHub answered with an error, or not at all (after the retries).
        """
        if not self._same_origin(url):
            raise GitHubError(f"GitHub API: refusing to send the token to {url}")
        what = f"GitHub API {method} {urllib.parse.urlsplit(url).path}"
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "llamafleet-delivery",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        delays = list(self.retry_delays)
        while True:
            # The scheme is http(s): checked in __post_init__, and `url` has the API's origin.
            request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:  # noqa: S310
                    raw = answer.read()
                    link = answer.headers.get("Link")
                return (json.loads(raw) if raw.strip() else None), link
            except urllib.error.HTTPError as exc:
                status, message = exc.code, _message(exc.read())
                problem = f"{what}: {status} {exc.reason}" + (f": {message}" if message else "")
                if status not in _RETRIED:
                    raise GitHubError(problem) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                problem = f"{what}: no answer: {reason}"
            except ValueError:
                raise GitHubError(f"{what}: the answer is not JSON") from None
            if not delays:
                raise GitHubError(problem)
            self.sleep(delays.pop(0))

    def paginate(self, path: str, params: Mapping[str, str] | None = None) -> Iterator[Json]:
        """Every item of a list endpoint, following `Link: rel="next"` pages.

        Raises:
            GitHubError: a page is not a list, or there are too many pages.
        """
        url: str | None = self._url(path, {**(params or {}), "per_page": str(PER_PAGE)})
        for _ in range(MAX_PAGES):
            if url is None:
                return
            page, link = self.request("GET", url)
            if not isinstance(page, list):
                raise GitHubError(f"GitHub API GET {path}: expected a list")
            yield from (cast("Json", item) for item in cast("list[Any]", page))
            url = next_link(link)
        raise GitHubError(f"GitHub API GET {path}: more than {MAX_PAGES} pages")

    def get(self, path: str) -> Json:
        """GET a repository path; the object."""
        return cast("Json", self.request("GET", self._url(path))[0])

    def post(self, path: str, body: Json) -> Json:
        """POST to a repository path; the created object."""
        return cast("Json", self.request("POST", self._url(path), body)[0])

    def patch(self, path: str, body: Json) -> Json:
        """PATCH a repository path; the updated object."""
        return cast("Json", self.request("PATCH", self._url(path), body)[0])
