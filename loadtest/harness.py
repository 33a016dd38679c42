"""A load from start to verdict: the target (a server of its own on SQLite when no endpoint is given, or the
bench's bare echo server), the run's accounts, loads through the engine, and the post-run check of the
tally against the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator
from pathlib import Path
from typing import Final, TypeVar

import grpc
from jubao.client import AsyncClient, ClientConfig
from jubao.meta.v1 import meta_pb2, meta_pb2_grpc

from loadtest.accounts import AccountNames, open_accounts
from loadtest.check import CheckReport, check
from loadtest.engine import Drive, Engine, Segment, Target
from loadtest.profile import Profiles
from loadtest.readback import read_back
from loadtest.scenario import Scenario
from loadtest.server_process import REPO, ServerProcess, free_port, provision_bench_key
from loadtest.tally import Tally

T = TypeVar("T")
CANARY_STOP_TIMEOUT_S: Final = 10.0


class HarnessError(RuntimeError):
    """The load cannot run as asked (no API key for an endpoint, ...)."""


@dataclasses.dataclass(frozen=True)
class Run:
    """A scenario's accounts on a target, and what has been acknowledged on them so far."""

    target: Target
    scenario: Scenario
    names: AccountNames
    run_id: str
    # Where each load's py-spy profile of the server goes (`bench --profile`), or nowhere.
    profiles: Profiles | None = None


def scratch_dir(name: str) -> Path:
    root = REPO / "var" / name
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="jubao-", dir=root))


@contextlib.contextmanager
def serving(endpoint: str | None, api_key: str | None, env: dict[str, str] | None = None) -> Iterator[Target]:
    """The server at `endpoint`, or one started here (SQLite in a scratch folder, `env` added) with a
    tenant of its own."""
    if endpoint:
        key = api_key or os.environ.get("JUBAO_API_KEY")
        if not key:
            raise HarnessError(
                "--endpoint needs an API key of a tenant with payments: --api-key or JUBAO_API_KEY"
            )
        yield Target(endpoint, key)
        return
    scratch = scratch_dir("loadtest")
    settings = {
        "JUBAO_STORAGE__SQLITE__PATH": str(scratch / "server.db"),
        "JUBAO_TELEMETRY__LOG_LEVEL": "warning",
        **(env or {}),
    }
    server = ServerProcess.start(settings, scratch / "server.log")
    try:
        key = provision_bench_key(server.address)
        yield Target(server.address, key, server.serving_pids(), server.member_addresses())
    finally:
        server.terminate()
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def bare_echo(api_key: str) -> Iterator[Target]:
    """A bare echo server of its own (`bare_echo.py`), as a target the clients call with `api_key`."""
    scratch = scratch_dir("bare-echo")
    port = free_port()
    command = [sys.executable, "-m", "loadtest.bare_echo", str(port)]
    server = ServerProcess.spawn(command, {}, port, scratch / "server.log", _answers_ping)
    try:
        yield Target(server.address, api_key, (server.process.pid,))
    finally:
        server.terminate()
        shutil.rmtree(scratch, ignore_errors=True)


@dataclasses.dataclass
class MachineStalls:
    """The canary's longest oversleep (ms) while the `machine_stalls` block ran (0.0 until it ends)."""

    max_ms: float = 0.0


@contextlib.contextmanager
def machine_stalls() -> Iterator[MachineStalls]:
    """Run the canary (`canary.py`) around the block."""
    stalls = MachineStalls()
    canary = subprocess.Popen(
        [sys.executable, "-m", "loadtest.canary"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        yield stalls
    finally:
        canary.terminate()
        output, _ = canary.communicate(timeout=CANARY_STOP_TIMEOUT_S)
        stalls.max_ms = float(output.strip() or 0.0)


def _answers_ping(channel: grpc.Channel) -> bool:
    meta_pb2_grpc.MetaServiceStub(channel).Ping(meta_pb2.PingRequest(), timeout=1)
    return True


def with_client(target: Target, use: Callable[[AsyncClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with AsyncClient(ClientConfig(endpoint=target.dial, api_key=target.api_key)) as client:
            return await use(client)

    return asyncio.run(go())


def prepare(target: Target, scenario: Scenario, profiles: Profiles | None = None) -> tuple[Run, Tally]:
    """Open and fund the scenario's accounts under a fresh prefix; the funding starts the tally."""
    run_id = uuid.uuid4().hex[:8]
    names = AccountNames(f"lt{run_id}-", scenario.accounts)
    tally = with_client(target, lambda client: open_accounts(client, names))
    return Run(target, scenario, names, run_id, profiles), tally


def load(engine: Engine, run: Run, drive: Drive, scenario: Scenario | None = None) -> Segment:
    """One load of `scenario` (by default the run's) on the run's accounts; a variant may use fewer of
    them (one hot merchant, say)."""
    scenario = scenario or run.scenario
    names = AccountNames(run.names.prefix, scenario.accounts)
    return engine.run(run.target, scenario, names, drive, run.run_id)


def verify(target: Target, tally: Tally, accounts: Collection[str]) -> CheckReport:
    readback = with_client(target, lambda client: read_back(client, accounts))
    return check(tally, readback)
