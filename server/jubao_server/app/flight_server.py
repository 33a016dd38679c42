"""The bulk plane's Arrow Flight server process, assembled from the host's parts and the enabled
products' datasets: `python -m jubao_server.app.flight_server [--config FILE] [--ready-fd N]
[--parent-pid P]`, started by `jubao-server serve` beside the gRPC server. It never imports gRPC's Python
package (apache/arrow#13300; `tests/bulk/test_flight_auth.py` checks the running process) and stops on
SIGTERM or SIGINT.

With `--ready-fd`, the bound port is written to that file descriptor once the server serves; with
`--parent-pid`, the process ends when that process (the supervisor) does."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

import structlog

from jubao_server.app import datasets, load_settings, migrate
from jubao_server.bulk.config import flight_location
from jubao_server.bulk.flight import BulkFlightServer, LoopThread
from jubao_server.bulk.quotas import BulkQuotas
from jubao_server.bulk.store import BulkStore
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.config import Settings, SettingsError, TelemetrySettings, TlsSettings
from jubao_server.platform.lifeline import die_with_parent
from jubao_server.storage.contract import MigrationError, StorageError
from jubao_server.storage.factory import open_backend
from jubao_server.telemetry import setup_logging, setup_telemetry
from jubao_server.tenancy.auth import Authenticator
from jubao_server.tenancy.store import TenantStore

log = structlog.get_logger("jubao.bulk")


def _tls(tls: TlsSettings) -> tuple[list[tuple[bytes, bytes]] | None, bytes | None]:
    if not tls.enabled or tls.cert_path is None or tls.key_path is None:
        return None, None
    roots = tls.client_ca_path.read_bytes() if tls.client_ca_path is not None else None
    return [(tls.cert_path.read_bytes(), tls.key_path.read_bytes())], roots


def flight_telemetry(settings: Settings) -> TelemetrySettings:
    """The telemetry settings of the Flight process: its own Prometheus port, and no OTLP exporter (they
    speak gRPC, which this process must not load: a configured one is replaced by none, said in the log)."""
    telemetry = settings.telemetry
    changes: dict[str, object] = {"prometheus_port": settings.bulk.prometheus_port}
    for exporter in ("traces_exporter", "metrics_exporter"):
        if getattr(telemetry, exporter) == "otlp":
            log.warning("the Flight process does not export over OTLP (gRPC)", setting=exporter)
            changes[exporter] = "none"
    return telemetry.model_copy(update=changes)


def serve(settings: Settings, ready_fd: int | None) -> None:
    """Open storage, serve until SIGTERM or SIGINT, then shut down."""
    clock = SYSTEM_CLOCK
    telemetry = setup_telemetry(flight_telemetry(settings), rpc_system="arrow_flight")
    io = LoopThread()
    backend = io.run(open_backend(settings.storage, clock=clock))
    try:
        if settings.migrate_on_start:
            io.run(migrate(backend))
        authenticator = Authenticator(TenantStore(backend, clock), settings.tenancy.auth_cache_ttl_ms, clock)
        certificates, roots = _tls(settings.server.tls)
        server = BulkFlightServer(
            flight_location(settings.bulk.host, settings.bulk.port, tls=settings.server.tls.enabled),
            io=io,
            authenticator=authenticator,
            store=BulkStore(backend, clock),
            backend=backend,
            datasets=datasets(),
            quotas=BulkQuotas(settings.bulk.streams_per_tenant, settings.bulk.bytes_per_s, clock),
            telemetry=telemetry,
            tls_certificates=certificates,
            root_certificates=roots,
        )
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        log.info("bulk serving", address=f"{settings.bulk.host}:{server.port}", backend=backend.name)
        if ready_fd is not None:
            os.write(ready_fd, f"{server.port}\n".encode())
            os.close(ready_fd)
        stop.wait()
        log.info("bulk shutdown requested")
        server.shutdown()
    finally:
        io.run(backend.close())
        io.stop()
        telemetry.shutdown()
    log.info("bulk stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jubao_server.app.flight_server", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML settings file (or JUBAO_CONFIG)")
    parser.add_argument("--ready-fd", type=int, help="write the bound port to this file descriptor")
    parser.add_argument("--parent-pid", type=int, help="exit when this process (the supervisor) dies")
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    try:
        settings = load_settings(args.config)
        setup_logging(settings.telemetry)
        serve(settings, args.ready_fd)
    except (SettingsError, MigrationError, StorageError) as error:
        print(f"jubao bulk: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
