"""The errors a backend raises to its callers."""

from __future__ import annotations


class StorageError(Exception):
    """The backend could not answer (unreachable, overloaded, timed out on a read or a plain write).
    The gRPC layer maps it to UNAVAILABLE; the caller may retry with the same request id."""


class FollowingWriteError(StorageError):
    """`write_after`: the batch applied, and a batch that follows it failed (it may be written again)."""


class MigrationError(Exception):
    """A schema file is malformed, or an applied one changed."""
