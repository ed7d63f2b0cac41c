"""Why a model fetch failed, as one of five reasons: what `modelsync fetch` exits with, names on
stderr and counts on its /metrics (`fetch_metrics`), so an operator, and the
LlamafleetModelFetchFailing alert, tell an unreachable store from a corrupt object.

| reason              | exit | what failed                                                     |
|---------------------|------|-----------------------------------------------------------------|
| `store_unreachable` | 4    | no answer from the store: connection refused or reset, DNS, a   |
|                     |      | connect or read timeout, TLS; or a proxy's 502/503/504          |
| `digest_mismatch`   | 5    | the object's bytes hash to another digest (DigestMismatchError) |
| `not_found`         | 6    | no such object or bucket (404, NoSuchKey, NoSuchBucket)         |
| `access_denied`     | 7    | 403, AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch,   |
|                     |      | expired or missing credentials                                  |
| `other`             | 1    | anything else reported in one line (a full disk, a bad GGUF)    |
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from typing import Final, Literal, get_args

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from llamafleet.modelsync.errors import DigestMismatchError, ModelSyncError, ObjectNotFoundError
from llamafleet.modelsync.store import describe_error

FailureReason = Literal[
    "store_unreachable", "digest_mismatch", "not_found", "access_denied", "other"
]
# Every reason, in the order above: the fetcher exports a counter for each from its start.
REASONS: Final[tuple[FailureReason, ...]] = get_args(FailureReason)

# `modelsync fetch`'s exit status per reason (0 is success, 2 a usage error, 130 Ctrl-C).
FETCH_EXIT_STATUS: Final[Mapping[FailureReason, int]] = {
    "store_unreachable": 4,
    "digest_mismatch": 5,
    "not_found": 6,
    "access_denied": 7,
    "other": 1,
}

# The failures the CLI reports as one stderr line (anything else is a bug: a traceback).
REPORTED: Final = (ModelSyncError, ClientError, BotoCoreError, OSError)

_ACCESS_DENIED_CODES: Final = frozenset(
    {
        "403",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
    }
)
# Exceptions whose type says the reason (a ClientError's code and status say it instead).
_REASON_BY_TYPE: Final[tuple[tuple[tuple[type[BaseException], ...], FailureReason], ...]] = (
    ((DigestMismatchError,), "digest_mismatch"),
    ((ObjectNotFoundError,), "not_found"),
    ((NoCredentialsError, PartialCredentialsError, CredentialRetrievalError), "access_denied"),
    (
        # botocore's EndpointConnectionError (refused, DNS), ConnectTimeoutError,
        # ProxyConnectionError, SSLError; ReadTimeoutError, ConnectionClosedError,
        # ResponseStreamingError; a body cut short; and the socket's own, unwrapped.
        (
            BotoConnectionError,
            HTTPClientError,
            IncompleteReadError,
            ConnectionError,
            TimeoutError,
            socket.gaierror,
        ),
        "store_unreachable",
    ),
)
_NOT_FOUND_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
# A proxy or load balancer in front of the store, or the store itself, cannot serve now.
_UNAVAILABLE_STATUSES: Final = frozenset({502, 503, 504})


def one_line(err: Exception) -> str:
    """The one-line message the CLI prints for a REPORTED failure: a ModelSyncError's own
    message, botocore's (`store.describe_error`), or `<file>: <strerror>` for an OSError."""
    if isinstance(err, ModelSyncError):
        return str(err)
    if isinstance(err, ClientError | BotoCoreError):
        return describe_error(err)
    if isinstance(err, OSError):
        return f"{err.filename or ''}: {err.strerror or err}".lstrip(": ")
    return str(err) or type(err).__name__


def failure_reason(err: BaseException) -> FailureReason:
    """The reason (module docstring) of a failed fetch: `err` or, failing that, the first
    exception in its chain of causes (`raise ... from`, or the one being handled) that says.

    modelsync wraps botocore's failures in StoreError (`store.s3_errors`): the cause decides.
    """
    for link in _chain(err):
        reason = _own_reason(link)
        if reason is not None:
            return reason
    return "other"


def describe_failure(err: Exception) -> str:
    """`<reason>: <one_line(err)>`: the fetcher's stderr line, after `<prog>: error: `."""
    return f"{failure_reason(err)}: {one_line(err)}"


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = err
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)


def _own_reason(err: BaseException) -> FailureReason | None:
    """The reason `err` itself gives, without its causes; None when it says none."""
    if isinstance(err, ClientError):
        return _client_error_reason(err)
    return next((reason for kinds, reason in _REASON_BY_TYPE if isinstance(err, kinds)), None)


def _client_error_reason(err: ClientError) -> FailureReason | None:
    code = str(err.response.get("Error", {}).get("Code", ""))
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in _ACCESS_DENIED_CODES or status == 403:
        return "access_denied"
    if code in _NOT_FOUND_CODES or status == 404:
        return "not_found"
    if status in _UNAVAILABLE_STATUSES:
        return "store_unreachable"
    return None
