"""`jubao-server serve|migrate|check-catalogue` (also `python -m jubao_server`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import structlog

from jubao_server.app import load_settings, migrate
from jubao_server.app.grpc_server import Jubao
from jubao_server.config import Settings, SettingsError
from jubao_server.storage.contract import MigrationError, StorageError
from jubao_server.storage.factory import open_backend
from jubao_server.telemetry import setup_logging
from jubao_server.tenancy.catalogue import CatalogueError, load_catalogue

log = structlog.get_logger("jubao.main")


async def serve(settings: Settings, banner: Path | None) -> None:
    server = await Jubao.start(settings)
    if banner is not None:
        _print_banner(server, banner)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutdown requested")
    await server.stop()


def _print_banner(server: Jubao, demo_keys: Path) -> None:
    address = f"{server.settings.server.host}:{server.port}"
    lines = [
        "",
        f"jubao is serving on {address} (storage: {server.backend.name}, health: SERVING)",
        f"Prometheus metrics: http://127.0.0.1:{server.telemetry.prometheus_port}/metrics",
        "Demo tenants and their API keys (for this laptop only):",
    ]
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
    serve_parser = commands.add_parser("serve", help="run the server until SIGTERM/SIGINT")
    serve_parser.add_argument("--banner", type=Path, help="print endpoint and the demo keys of this file")
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
            asyncio.run(serve(settings, args.banner))
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
