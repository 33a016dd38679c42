"""`jubao-server serve|migrate|check-catalogue` (also `python -m jubao_server`).

`serve` is the supervisor (`platform/supervisor.py`): it runs `serve-grpc` (the gRPC server) and, with the
bulk plane enabled, `python -m jubao_server.app.flight_server` (the Arrow Flight server) as child
processes."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

import structlog

from jubao_server.app import load_settings, migrate
from jubao_server.bulk.config import flight_location
from jubao_server.config import Settings, SettingsError
from jubao_server.platform.collector import HeapFreezer
from jubao_server.platform.lifeline import die_with_parent
from jubao_server.platform.supervisor import ChildSpec, Supervisor, python_module
from jubao_server.storage.contract import MigrationError, StorageError
from jubao_server.storage.factory import open_backend
from jubao_server.telemetry import setup_logging
from jubao_server.tenancy.catalogue import CatalogueError, load_catalogue

log = structlog.get_logger("jubao.main")


def supervise(settings: Settings, config: Path | None, banner: Path | None) -> int:
    """Run the servers as child processes until SIGTERM or SIGINT; the exit code."""
    config_args = ["--config", str(config)] if config is not None else []
    specs = [ChildSpec("grpc", python_module("jubao_server", *config_args, "serve-grpc"))]
    if settings.bulk.enabled:
        specs.append(ChildSpec("bulk", python_module("jubao_server.app.flight_server", *config_args)))
    supervisor = Supervisor(specs)

    def started() -> None:
        ports = supervisor.ports
        log.info("jubao started", grpc_port=ports["grpc"], bulk_port=ports.get("bulk"))
        if banner is not None:
            _print_banner(settings, ports, banner)

    return supervisor.run(started)


async def serve(settings: Settings, ready_fd: int | None) -> None:
    from jubao_server.app.grpc_server import Jubao  # noqa: PLC0415 (the supervisor loads no gRPC)

    server = await Jubao.start(settings)
    HeapFreezer().install()
    if ready_fd is not None:
        os.write(ready_fd, f"{server.port}\n".encode())
        os.close(ready_fd)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutdown requested")
    await server.stop()


def _print_banner(settings: Settings, ports: dict[str, int], demo_keys: Path) -> None:
    address = f"{settings.server.host}:{ports['grpc']}"
    lines = [
        "",
        f"jubao is serving on {address} (storage: {settings.storage.backend}, health: SERVING)",
    ]
    if "bulk" in ports:
        tls = settings.server.tls.enabled
        lines.append(
            f"Bulk data (Arrow Flight): {flight_location(settings.bulk.host, ports['bulk'], tls=tls)}"
        )
    if settings.telemetry.prometheus_port:
        lines.append(f"Prometheus metrics: http://127.0.0.1:{settings.telemetry.prometheus_port}/metrics")
    lines.append("Demo tenants and their API keys (for this laptop only):")
    lines += [f"  {line}" for line in demo_keys.read_text().splitlines() if line and not line.startswith("#")]
    lines += [
        "Try it:",
        "  export JUBAO_API_KEY=$(grep ^demo-bank tenants/demo-keys.txt | cut -d' ' -f2)",
        f"  .venv/bin/jubao --endpoint {address} whoami",
        f"  grpcurl -plaintext {address} list",
        "Stop with Ctrl-C.",
        "",
    ]
    print("\n".join(lines), flush=True)


async def migrate_storage(settings: Settings) -> None:
    backend = await open_backend(settings.storage)
    try:
        applied = await migrate(backend)
    finally:
        await backend.close()
    print(
        f"{backend.name}: applied {len(applied)} schema file(s)" + "".join(f"\n  {name}" for name in applied)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="jubao-server", description="The jubao gRPC server.")
    parser.add_argument("--config", type=Path, help="TOML settings file (or JUBAO_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the servers until SIGTERM/SIGINT")
    serve_parser.add_argument("--banner", type=Path, help="print endpoints and the demo keys of this file")
    grpc_parser = commands.add_parser("serve-grpc", help="the gRPC server alone (a child of serve)")
    grpc_parser.add_argument("--ready-fd", type=int, help="write the bound port to this file descriptor")
    grpc_parser.add_argument("--parent-pid", type=int, help="exit when this process (the supervisor) dies")
    commands.add_parser(
        "migrate",
        help="apply pending schema files (the platform's, every product's) to the configured storage",
    )
    commands.add_parser("check-catalogue", help="validate the tenant catalogue files")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        setup_logging(settings.telemetry)
        if args.command == "serve":
            sys.exit(supervise(settings, args.config, args.banner))
        elif args.command == "serve-grpc":
            if args.parent_pid is not None:
                die_with_parent(args.parent_pid)
            asyncio.run(serve(settings, args.ready_fd))
        elif args.command == "migrate":
            asyncio.run(migrate_storage(settings))
        else:
            entries = load_catalogue(settings.tenancy.catalogue_dir)
            print(f"{len(entries)} tenant file(s) valid in {settings.tenancy.catalogue_dir}")
    except (SettingsError, CatalogueError, MigrationError, StorageError) as error:
        print(f"jubao-server: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
