"""`jubao-server serve|migrate|check-catalogue` (also `python -m jubao_server`).

`serve` is the supervisor (`platform/supervisor.py`): it runs `serve-grpc` (the gRPC server) and, with the
bulk plane enabled, `python -m jubao_server.app.flight_server` (the Arrow Flight server) as child
processes."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
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
    servers = grpc_specs(settings, config_args)
    specs = list(servers)
    if settings.bulk.enabled:
        specs.append(ChildSpec("bulk", python_module("jubao_server.app.flight_server", *config_args)))
    supervisor = Supervisor(specs)

    def started() -> None:
        ports = supervisor.ports
        log.info("jubao started", grpc_port=ports[GRPC], bulk_port=ports.get("bulk"), processes=len(servers))
        if banner is not None:
            _print_banner(settings, ports, banner)

    return supervisor.run(started)


def grpc_specs(settings: Settings, config_args: list[str]) -> list[ChildSpec]:
    """The gRPC server processes: `server.processes` (0: one per core). Several share one port (gRPC
    listens with SO_REUSEPORT, so the kernel spreads connections over them), and each listens on a port
    of its own too, where the others forward calls for the shards it holds; each knows every one's own
    address (`--members`), which shares each scope's shards out between them (`Node.home`). The first
    serves its metrics on `telemetry.prometheus_port`, the others on a port the system picks."""
    server = settings.server
    count = server.processes or os.cpu_count() or 1
    command = python_module("jubao_server", *config_args, "serve-grpc")
    if count == 1:
        return [ChildSpec(GRPC, command)]
    port = server.port or _free_port(server.host)
    own_ports = [_free_port(server.host) for _ in range(count)]
    host = server.advertise_host or server.host
    members = ",".join(f"{host}:{own}" for own in own_ports)
    specs = []
    for index, own in enumerate(own_ports):
        arguments = ["--port", str(port), "--own-port", str(own), "--members", members]
        if index and settings.telemetry.prometheus_port is not None:
            arguments += ["--prometheus-port", "0"]
        specs.append(ChildSpec(GRPC if index == 0 else f"{GRPC}-{index}", [*command, *arguments]))
    return specs


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


GRPC = "grpc"


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
    address = f"{settings.server.host}:{ports[GRPC]}"
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
    listed = "".join(f"\n  {name}" for name in applied)
    print(f"{backend.name}: applied {len(applied)} schema file(s) and data migration(s){listed}")


def _as_member(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings of one of several gRPC processes of `serve` (its port, own port and members)."""
    if args.members is None:
        return settings
    server = settings.server.model_copy(
        update={"port": args.port, "own_port": args.own_port, "members": tuple(args.members.split(","))}
    )
    telemetry = settings.telemetry
    if args.prometheus_port is not None:
        telemetry = telemetry.model_copy(update={"prometheus_port": args.prometheus_port})
    return settings.model_copy(update={"server": server, "telemetry": telemetry})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="jubao-server", description="The jubao gRPC server.")
    parser.add_argument("--config", type=Path, help="TOML settings file (or JUBAO_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the servers until SIGTERM/SIGINT")
    serve_parser.add_argument("--banner", type=Path, help="print endpoints and the demo keys of this file")
    grpc_parser = commands.add_parser("serve-grpc", help="the gRPC server alone (a child of serve)")
    grpc_parser.add_argument("--ready-fd", type=int, help="write the bound port to this file descriptor")
    grpc_parser.add_argument("--parent-pid", type=int, help="exit when this process (the supervisor) dies")
    grpc_parser.add_argument("--port", type=int, help="the port shared with the machine's other processes")
    grpc_parser.add_argument("--own-port", type=int, help="this process's own port (forwarded calls)")
    grpc_parser.add_argument("--members", help="every process's own address, comma-separated")
    grpc_parser.add_argument("--prometheus-port", type=int, help="this process's metrics port (0: any)")
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
            asyncio.run(serve(_as_member(settings, args), args.ready_fd))
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
