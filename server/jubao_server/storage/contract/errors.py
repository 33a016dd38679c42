"""The errors a backend raises to its callers."""

from __future__ import annotations


class StorageError(Exception):
    """The backend could not answer (unreachable, overloaded, timed out on a read or a plain write).
    The gRPC layer maps it to UNAVAILABLE; the caller may retry with the same request id."""


class MigrationError(Exception):
    """A schema file is malformed, or an applied one changed."""
