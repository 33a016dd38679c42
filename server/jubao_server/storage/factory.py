"""Open the configured backend; the platform's migration set."""

from __future__ import annotations

from pathlib import Path

from jubao_server.clock import SYSTEM_CLOCK, Clock
from jubao_server.storage.config import StorageSettings
from jubao_server.storage.contract import NO_FAULTS, Faults, MigrationSet, StorageBackend
from jubao_server.storage.contract.migrations import SHARED_SET_BEFORE_PRODUCTS

_HERE = Path(__file__).resolve().parent


def platform_migrations(backend: str) -> MigrationSet:
    """The platform's schema files of `backend` (storage/<backend>/migrations)."""
    return MigrationSet("platform", _HERE / backend / "migrations", formerly=SHARED_SET_BEFORE_PRODUCTS)


async def open_backend(
    settings: StorageSettings, *, clock: Clock = SYSTEM_CLOCK, faults: Faults = NO_FAULTS
) -> StorageBackend:
    """Connect to the configured backend. The caller migrates it (`app.migrate`: the platform's set and
    every enabled product's) and closes it."""
    if settings.backend == "cassandra":
        from jubao_server.storage.cassandra.backend import CassandraBackend  # noqa: PLC0415 (optional driver)

        return await CassandraBackend.connect(settings.cassandra, clock, faults=faults)
    if settings.backend == "memory":
        from jubao_server.storage.memory import MemoryBackend  # noqa: PLC0415

        return MemoryBackend(clock, faults=faults)
    from jubao_server.storage.sqlite.backend import SqliteBackend  # noqa: PLC0415

    return await SqliteBackend.open(settings.sqlite, clock, faults=faults)
