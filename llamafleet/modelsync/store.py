"""The remote store: an S3 bucket/prefix holding `sha256/<hex>.gguf` objects and a manifest."""

from __future__ import annotations

import re
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any, Final
from urllib.parse import quote, unquote

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.session import Session, get_session

from llamafleet.modelsync.digest import sha256_base64
from llamafleet.modelsync.errors import StoreError
from llamafleet.modelsync.manifest import Manifest, ModelEntry

# S3 bucket naming rules (general purpose buckets): 3-63 characters of lower-case letters,
# digits, dots and hyphens, starting and ending with a letter or digit
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
BUCKET_NAME_PATTERN: Final = r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]"
_BUCKET_RE: Final = re.compile(rf"^{BUCKET_NAME_PATTERN}$")
_IPV4_LIKE_RE: Final = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_SAFE_KEY_RE: Final = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")
_URL_RE: Final = re.compile(rf"^s3://({BUCKET_NAME_PATTERN})(?:/(.*))?$")
MANIFEST_NAME: Final = "manifest.json"
# Stores without conditional writes: one object per model entry, which no writer overwrites
# with another model's (see RemoteStore.conditional_writes).
ENTRIES_DIR: Final = "manifest.d"
PROBE_NAME: Final = ".llamafleet-conditional-write-probe"
OBJECTS_DIR: Final = "sha256"
RETRY_ATTEMPTS: Final = 10

S3Client = Any  # boto3 clients are generated at run time; no stubs are pinned.


def bucket_name_problem(name: str) -> str | None:
    """Why `name` is not a valid S3 bucket name (None if it is): the characters and length
    above, no two adjacent dots, not formatted as an IPv4 address (same AWS page)."""
    if not _BUCKET_RE.match(name):
        return (
            "is not an S3 bucket name: 3-63 lower-case letters, digits, dots and hyphens, "
            "starting and ending with a letter or digit"
        )
    if ".." in name:
        return "is not an S3 bucket name: no two adjacent dots"
    if _IPV4_LIKE_RE.match(name):
        return "is not an S3 bucket name: must not look like an IP address"
    return None


def prefix_problem(prefix: str) -> str | None:
    """Why `prefix` is not a usable key prefix (None if it is): S3's safe key characters only
    (letters, digits, and !-_.*'()/; https://docs.aws.amazon.com/AmazonS3/latest/userguide/
    object-keys.html), no leading or trailing `/`, no empty segment (`//`); may be empty (the
    bucket's root)."""
    if not _SAFE_KEY_RE.match(prefix):
        return "may hold only letters, digits and !-_.*'()/ (S3's safe key characters)"
    if prefix != prefix.strip("/") or "//" in prefix:
        return "must not start or end with '/' or hold '//'"
    return None


@dataclass(frozen=True)
class StoreLocation:
    """A store's bucket and key prefix, as in `s3://BUCKET/PREFIX`."""

    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str) -> StoreLocation:
        """Parse `s3://BUCKET[/PREFIX]`; slashes around the prefix are dropped.

        Raises:
            StoreError: `url` is not of that form, or BUCKET breaks S3's naming rules
                (bucket_name_problem).
        """
        match = _URL_RE.match(url.strip())
        if match is None:
            raise StoreError(f"invalid store URL {url!r}: expected s3://BUCKET[/PREFIX]")
        problem = bucket_name_problem(match.group(1))
        if problem is not None:
            raise StoreError(f"invalid store URL {url!r}: bucket {match.group(1)!r} {problem}")
        return cls(match.group(1), (match.group(2) or "").strip("/"))

    @property
    def url(self) -> str:
        """`s3://BUCKET/PREFIX`, or `s3://BUCKET` when the prefix is empty."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, relative: str) -> str:
        """The S3 key of `relative`, a path under the prefix."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def object_key(self, hex_digest: str) -> str:
        """The key of the object holding the content `hex_digest`: `PREFIX/sha256/<hex>.gguf`."""
        return self.key(f"{OBJECTS_DIR}/{hex_digest}.gguf")

    @property
    def manifest_key(self) -> str:
        """The manifest's key: `PREFIX/manifest.json`."""
        return self.key(MANIFEST_NAME)

    @property
    def entries_prefix(self) -> str:
        """Where per-model manifest entries live: `PREFIX/manifest.d/`."""
        return self.key(f"{ENTRIES_DIR}/")

    def entry_key(self, name: str) -> str:
        """The key of model `name`'s entry object: `PREFIX/manifest.d/<name, %-escaped>.json`."""
        return f"{self.entries_prefix}{quote(name, safe='')}.json"


@cache
def _session() -> Session:
    # One botocore session per process: it caches the loaded service model, the slow part of
    # making a client. botocore directly, not boto3, to skip importing s3transfer at start-up.
    return get_session()


def forget_credentials() -> None:
    """Drop the process-wide session, and with it the credentials it resolved and cached; for a
    process whose credentials change (tests switching between S3 servers)."""
    _session.cache_clear()


def make_s3_client(
    endpoint_url: str | None = None,
    max_connections: int = 16,
    max_attempts: int | None = None,
    retry_mode: str = "adaptive",
) -> S3Client:
    """A client with adaptive retries (throttling, 5xx) and the standard credential chain."""
    config = Config(
        retries={"mode": retry_mode, "max_attempts": max_attempts or RETRY_ATTEMPTS},
        max_pool_connections=max_connections,
        # We always send our own SHA-256 per request, so neither a second default CRC nor a
        # SigV4 payload hash over plain HTTP is worth the CPU.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={
            "addressing_style": "path" if endpoint_url else "auto",
            "payload_signing_enabled": False,
        },
    )
    return _session().create_client("s3", endpoint_url=endpoint_url, config=config)


def describe_error(err: Exception) -> str:
    """One line for a botocore failure."""
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = error.get("Code", "?")
        message = error.get("Message") or ""
        operation = err.operation_name
        return f"{operation} failed: {code}{': ' + message if message else ''}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


@contextmanager
def s3_errors(action: str) -> Generator[None]:
    """Turn botocore failures into a one-line StoreError.

    Raises:
        StoreError: the block raised a botocore ClientError or BotoCoreError; the message is
            `<action>: <describe_error(...)>`.
    """
    try:
        yield
    except (ClientError, BotoCoreError) as err:
        raise StoreError(f"{action}: {describe_error(err)}") from err


def _is_write_conflict(err: ClientError) -> bool:
    code = str(err.response.get("Error", {}).get("Code", ""))
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"PreconditionFailed", "ConditionalRequestConflict"} or status in {409, 412}


def _is_not_implemented(err: ClientError) -> bool:
    code = str(err.response.get("Error", {}).get("Code", ""))
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code == "NotImplemented" or status == 501


def is_not_found(err: ClientError) -> bool:
    """Whether `err` means no such key: NoSuchKey (GetObject), NotFound, or "404" (botocore's
    code for a HeadObject error, whose response has no body)."""
    code = str(err.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


def is_missing_bucket(err: ClientError) -> bool:
    """Whether `err` is S3's NoSuchBucket."""
    return str(err.response.get("Error", {}).get("Code", "")) == "NoSuchBucket"


@dataclass(frozen=True)
class ManifestVersion:
    """A manifest as read, with the ETag that a conditional write of its successor must match."""

    manifest: Manifest
    etag: str | None  # None: the store holds no manifest yet


class ManifestChangedError(StoreError):
    """Another writer replaced the manifest since it was read."""


@dataclass(frozen=True)
class ObjectHead:
    """One object as a HEAD saw it: its key, size in bytes and ETag (S3 changes the ETag whenever
    the object is written again; "" where a store sends none)."""

    key: str
    size: int
    etag: str


class RemoteStore:
    """An S3 location plus the client that reaches it.

    `checksum_headers` False sends no `x-amz-checksum-*` or `x-amz-sdk-checksum-algorithm`
    header, for stores that refuse them (Backblaze B2: "Unsupported header"); every object is
    still proven by its SHA-256 content address, re-hashed while it is uploaded and while it is
    fetched.
    """

    def __init__(
        self, location: StoreLocation, client: S3Client, checksum_headers: bool = True
    ) -> None:
        self.location = location
        self.client = client
        self.checksum_headers = checksum_headers

    def checksums(self, **fields: str) -> dict[str, str]:
        """`fields` (a request's Checksum* parameters) where the store takes them; none where
        `checksum_headers` is off."""
        return dict(fields) if self.checksum_headers else {}

    @classmethod
    def open(
        cls,
        url: str,
        endpoint_url: str | None = None,
        max_connections: int = 16,
        checksum_headers: bool = True,
        max_attempts: int | None = None,
    ) -> RemoteStore:
        """A store for `url` (`s3://BUCKET[/PREFIX]`) with a new client (`make_s3_client`).

        `endpoint_url` selects an S3-compatible server (path-style addressing);
        `max_connections` (default 16) sizes the client's connection pool; `checksum_headers`
        as in RemoteStore; `max_attempts` caps botocore's attempts per request (default
        RETRY_ATTEMPTS: about 25 s of retries before an unreachable store is reported).
        """
        client = make_s3_client(endpoint_url, max_connections, max_attempts)
        return cls(StoreLocation.parse(url), client, checksum_headers)

    def read_manifest(self) -> Manifest:
        """The stored manifest: manifest.json and, where it says the store keeps per-model
        entry objects (stores without conditional writes), those over it; an empty one when the
        store has none yet. A failed request or a malformed object is a StoreError."""
        manifest = self.read_manifest_version().manifest
        if manifest.per_model_entries:
            manifest.models.update(self.read_entries())
        return manifest

    def read_entries(self) -> dict[str, ModelEntry]:
        """The per-model entry objects under `manifest.d/` (one LIST, one GET each); a failed
        request or a malformed object is a StoreError."""
        prefix = self.location.entries_prefix
        entries: dict[str, ModelEntry] = {}
        with s3_errors(f"reading s3://{self.location.bucket}/{prefix}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=prefix
            )
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
            for key in sorted(keys):
                raw = self.client.get_object(Bucket=self.location.bucket, Key=key)["Body"].read()
                name = unquote(str(key)[len(prefix) :].removesuffix(".json"))
                entries[name] = ModelEntry.decode(name, raw, f"s3://{self.location.bucket}/{key}")
        return entries

    def write_entry(self, name: str, entry: ModelEntry) -> None:
        """Write model `name`'s entry object (unconditionally: it is this model's alone); a
        failed PUT is a StoreError."""
        key = self.location.entry_key(name)
        body = entry.encode()
        with s3_errors(f"writing s3://{self.location.bucket}/{key}"):
            self.client.put_object(
                Bucket=self.location.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                **self.checksums(ChecksumSHA256=sha256_base64(body)),
            )

    @cached_property
    def conditional_writes(self) -> bool:
        """Whether the store honours conditional writes, probed once: PUT a probe object with
        If-None-Match: *, which a store that honours it refuses (412 PreconditionFailed) once
        the object exists; the first probe in a store creates it and asks again. `rclone serve
        s3` ignores the header and writes (200); some stores answer 501 NotImplemented (Ceph
        before conditional writes, s3gw): both mean no, and the manifest is then kept as
        per-model entries (c05). One PUT per writing sync on a store that honours it. A probe
        that fails for any other reason (access denied, unreachable) is a StoreError."""
        for _ in range(2):
            outcome = self._put_probe()
            if outcome is not None:
                return outcome
        return False

    def _put_probe(self) -> bool | None:
        """True: refused (conditional writes work); False: not implemented; None: written.

        Raises:
            StoreError: the PUT failed for any other reason.
        """
        key = self.location.key(PROBE_NAME)
        where = f"probing conditional writes at s3://{self.location.bucket}/{key}"
        try:
            self.client.put_object(
                Bucket=self.location.bucket, Key=key, Body=b"probe", IfNoneMatch="*"
            )
        except ClientError as err:
            if _is_write_conflict(err):
                return True
            if _is_not_implemented(err):
                return False
            raise StoreError(f"{where}: {describe_error(err)}") from err
        except BotoCoreError as err:
            raise StoreError(f"{where}: {describe_error(err)}") from err
        return None

    def read_manifest_version(self) -> ManifestVersion:
        """The stored manifest and its ETag (one GET); an empty manifest and no ETag when the
        store has none yet.

        Raises:
            StoreError: the GET fails other than with not found, or the manifest is malformed.
        """
        where = f"s3://{self.location.bucket}/{self.location.manifest_key}"
        try:
            response = self.client.get_object(
                Bucket=self.location.bucket, Key=self.location.manifest_key
            )
            raw: bytes = response["Body"].read()
        except ClientError as err:
            if is_not_found(err):
                return ManifestVersion(Manifest(), None)
            raise StoreError(f"reading {where}: {describe_error(err)}") from err
        except BotoCoreError as err:
            raise StoreError(f"reading {where}: {describe_error(err)}") from err
        return ManifestVersion(Manifest.decode(raw, where), str(response["ETag"]))

    def write_manifest(self, manifest: Manifest, replacing: ManifestVersion | None) -> None:
        """Write `manifest` only if the stored one is still `replacing` (If-Match its ETag, or
        If-None-Match when there was none); ManifestChangedError if another writer came first.
        `replacing` None writes unconditionally (stores without conditional writes, where the
        per-model entries are what keeps concurrent writers' models).

        Raises:
            ManifestChangedError: the store refused the conditional write (409 or 412, or the
                codes PreconditionFailed, ConditionalRequestConflict).
            StoreError: the PUT failed for any other reason.
        """
        where = f"s3://{self.location.bucket}/{self.location.manifest_key}"
        body = manifest.encode()
        condition: dict[str, str] = {}
        if replacing is not None:
            condition = {"IfMatch": replacing.etag} if replacing.etag else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(
                Bucket=self.location.bucket,
                Key=self.location.manifest_key,
                Body=body,
                ContentType="application/json",
                **self.checksums(ChecksumSHA256=sha256_base64(body)),
                **condition,
            )
        except ClientError as err:
            if _is_write_conflict(err):
                raise ManifestChangedError(f"{where}: changed by another writer") from err
            raise StoreError(f"writing {where}: {describe_error(err)}") from err
        except BotoCoreError as err:
            raise StoreError(f"writing {where}: {describe_error(err)}") from err

    def list_objects(self) -> dict[str, int]:
        """Size of every complete object under sha256/, by hex digest (one LIST per 1000)."""
        prefix = self.location.key(f"{OBJECTS_DIR}/")
        sizes: dict[str, int] = {}
        with s3_errors(f"listing {self.location.url}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    name: str = item["Key"][len(prefix) :]
                    if name.endswith(".gguf") and "/" not in name:
                        sizes[name.removesuffix(".gguf")] = int(item["Size"])
        return sizes

    def list_objects_if_any(self) -> dict[str, int]:
        """list_objects, where a bucket that does not exist (yet, or any more) holds none.

        Raises:
            StoreError: the listing failed for any reason but a missing bucket.
        """
        try:
            return self.list_objects()
        except StoreError as err:
            cause = err.__cause__
            if isinstance(cause, ClientError) and is_missing_bucket(cause):
                return {}
            raise

    def object_size(self, hex_digest: str) -> int | None:
        """Size in bytes of the object for `hex_digest` (one HEAD); None when there is none.
        A failed HEAD raises as `object_head` does."""
        head = self.object_head(hex_digest)
        return None if head is None else head.size

    def object_head(self, hex_digest: str) -> ObjectHead | None:
        """The object for `hex_digest` as one HEAD sees it; None when there is none.

        Raises:
            StoreError: the HEAD fails other than with not found.
        """
        key = self.location.object_key(hex_digest)
        try:
            response = self.client.head_object(Bucket=self.location.bucket, Key=key)
        except ClientError as err:
            if is_not_found(err):
                return None
            raise StoreError(
                f"checking s3://{self.location.bucket}/{key}: {describe_error(err)}"
            ) from err
        except BotoCoreError as err:
            raise StoreError(
                f"checking s3://{self.location.bucket}/{key}: {describe_error(err)}"
            ) from err
        return ObjectHead(key, int(response["ContentLength"]), str(response.get("ETag", "")))
