"""The run's setup (opening and funding its accounts) on a server that stops answering for a while: a call
whose outcome is unknown (its deadline passed) is sent again with its request id until it is known, so
the setup finishes with every account opened once and funded once, as the check then confirms. (Found by
the chaos run: on a loaded cluster one OpenAccount past its deadline ended the whole run.)"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from jubao.client import AsyncClient, ClientConfig
from jubao.meta.v1 import meta_pb2

from loadtest.accounts import AccountNames, open_accounts
from loadtest.check import check
from loadtest.readback import read_back
from loadtest.scenario import Accounts
from loadtest.server_process import ServerProcess, provision_bench_key

PAUSE_S = 1.5
DEADLINE_MS = 300


async def test_the_setup_sends_calls_of_unknown_outcome_again_until_they_are_known(tmp_path: Path) -> None:
    env = {
        "JUBAO_STORAGE__SQLITE__PATH": str(tmp_path / "server.db"),
        "JUBAO_BULK__ENABLED": "false",
        "JUBAO_TELEMETRY__LOG_LEVEL": "warning",
    }
    server = await asyncio.to_thread(ServerProcess.start, env, tmp_path / "server.log")
    try:
        key = await asyncio.to_thread(provision_bench_key, server.address)
        names = AccountNames("setup-", Accounts(customers=20, merchants=3, hot_merchants=1))
        config = ClientConfig(endpoint=server.address, api_key=key, default_timeout_ms=DEADLINE_MS)
        async with AsyncClient(config) as client:
            await client.meta.Ping(meta_pb2.PingRequest())
            for pid in server.serving_pids():
                os.kill(pid, signal.SIGSTOP)
            setup = asyncio.create_task(open_accounts(client, names))
            await asyncio.sleep(PAUSE_S)
            for pid in server.serving_pids():
                os.kill(pid, signal.SIGCONT)
            tally = await setup
            report = check(tally, await read_back(client, names.every()))
        assert report.passed, report.summary()
        assert report.accounts_checked == len(names.every())
    finally:
        for pid in server.serving_pids():
            os.kill(pid, signal.SIGCONT)
        await asyncio.to_thread(server.terminate)
