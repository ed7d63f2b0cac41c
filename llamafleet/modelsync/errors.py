"""Errors raised by modelsync. Each carries a one-line message fit for a CLI's stderr."""

from __future__ import annotations


class ModelSyncError(Exception):
    """Base class: a failure the user can act on, described in one line."""


class GgufError(ModelSyncError):
    """A file is not a GGUF file modelsync can read (wrong magic, version, truncated)."""


class SourceError(ModelSyncError):
    """A local source (file, folder, Ollama store) is missing or unusable."""


class StoreError(ModelSyncError):
    """The remote store refused a request or holds something unexpected."""


class DigestMismatchError(ModelSyncError):
    """Bytes read do not hash to the digest they were expected to have."""


class ObjectNotFoundError(StoreError):
    """The store holds no object under the key asked for (a model never synced, a wrong pin)."""
