"""Settings of the bulk plane (`[bulk]`, `JUBAO_BULK__*`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from jubao_server import limits


class BulkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The Arrow Flight server `jubao-server serve` starts beside the gRPC server (its own process).
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(50052, ge=0, lt=65536)
    # Per tenant, in one Flight process: DoPut and DoGet streams at once, and bytes per second moved
    # (uploads and downloads alike; a stream over it is slowed down, not refused).
    streams_per_tenant: int = Field(8, gt=0, le=limits.bulk_streams_per_tenant_max)
    bytes_per_s: int = Field(512 * 1024 * 1024, gt=0, le=limits.bulk_bytes_per_s_max)
    # Applying uploads (in the gRPC server processes): how often a server looks for committed uploads,
    # and how long a claim lasts without renewal before another server takes the job over.
    job_poll_ms: int = Field(500, gt=0, le=limits.bulk_job_poll_ms_max)
    # The Flight process's Prometheus scrape endpoint on 127.0.0.1 (the gRPC server's is
    # telemetry.prometheus_port); None turns it off. Its traces and metrics go to the console or nowhere:
    # the OTLP exporters speak gRPC, which the Flight process must not load.
    prometheus_port: int | None = Field(9465, ge=0, lt=65536)
    job_lease_ms: int = Field(10_000, ge=limits.bulk_job_lease_ms_min, le=limits.bulk_job_lease_ms_max)


def flight_location(host: str, port: int, *, tls: bool) -> str:
    """The Arrow Flight URI of a bulk server (TLS when the servers' TLS is on)."""
    return f"{'grpc+tls' if tls else 'grpc+tcp'}://{host}:{port}"
