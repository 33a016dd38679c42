"""Typed storage settings: the `backend` field chooses the implementation (Feast style)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jubao_server import limits


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SqliteSettings(_Strict):
    path: Path = Path("var/jubao.db")
    busy_timeout_ms: int = Field(5_000, gt=0, le=limits.storage_timeout_ms_max)
    readers_max: int = Field(4, gt=0, le=limits.storage_pool_connections_max)
    ttl_sweep_interval_ms: int = Field(60_000, gt=0)
    # How often the WAL is checkpointed (on a thread of its own) while commits come (sqlite/checkpoint.py).
    checkpoint_interval_ms: int = Field(250, gt=0, le=limits.sqlite_checkpoint_interval_ms_max)
    # The writer connection's page cache (sqlite/connections.py), filled as the writer reads pages.
    writer_cache_mib: int = Field(256, gt=0, le=limits.sqlite_writer_cache_mib_max)


class ReplicationSettings(_Strict):
    strategy: Literal["SimpleStrategy", "NetworkTopologyStrategy"] = "SimpleStrategy"
    replication_factor: int = Field(1, gt=0, le=9)
    # Replicas per data centre, for NetworkTopologyStrategy.
    datacenters: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _datacenters_for_nts(self) -> ReplicationSettings:
        if self.strategy == "NetworkTopologyStrategy" and not self.datacenters:
            raise ValueError("NetworkTopologyStrategy needs datacenters, e.g. {dc1 = 3}")
        return self


class CassandraSettings(_Strict):
    contact_points: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    port: int = Field(9042, gt=0, lt=65536)
    keyspace: str = Field("jubao", pattern=r"^[a-z][a-z0-9_]{0,47}$")
    local_dc: str | None = None
    replication: ReplicationSettings = ReplicationSettings()
    consistency: Literal["ONE", "LOCAL_ONE", "QUORUM", "LOCAL_QUORUM", "ALL"] = "QUORUM"
    serial_consistency: Literal["SERIAL", "LOCAL_SERIAL"] = "SERIAL"
    request_timeout_ms: int = Field(10_000, gt=0, le=limits.storage_timeout_ms_max)
    connect_timeout_ms: int = Field(10_000, gt=0, le=limits.storage_timeout_ms_max)
    username: str | None = None
    password: str | None = None


class StorageSettings(_Strict):
    """`backend`: "sqlite" (the embedded default), "cassandra" (scale), or "memory": not durable (every
    row is lost when the process ends, and processes never share it), for tests and the simulator."""

    backend: Literal["sqlite", "cassandra", "memory"] = "sqlite"
    sqlite: SqliteSettings = SqliteSettings()
    cassandra: CassandraSettings = CassandraSettings()
