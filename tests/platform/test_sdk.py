"""The Python SDK and the `jubao` CLI against the real server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from jubao.cli.main import app
from jubao.client import AsyncClient, ClientConfig, Unauthenticated
from jubao.errors import Reason
from jubao.meta.v1 import meta_pb2
from typer.testing import CliRunner

from tests.platform.harness import Running


async def test_async_client_resolves_its_tenant_and_types_errors(
    running: Running, keys: dict[str, str]
) -> None:
    async with AsyncClient(ClientConfig(endpoint=running.address, api_key=keys["demo-fund"])) as client:
        caller = await client.meta.GetCaller(meta_pb2.GetCallerRequest())
        assert caller.tenant_id == "demo-fund"
    async with AsyncClient(ClientConfig(endpoint=running.address)) as anonymous:
        with pytest.raises(Unauthenticated) as caught:
            await anonymous.meta.Ping(meta_pb2.PingRequest())
        assert caught.value.reason == Reason.API_KEY_MISSING


async def test_cli_creates_a_tenant_with_default_quota_and_lists_it(
    running: Running, keys: dict[str, str]
) -> None:
    base = ["--endpoint", running.address, "--api-key", keys["demo-operator"], "--json"]
    runner = CliRunner()
    create = [
        *base,
        "tenants",
        "create",
        "cli-bank",
        "--name",
        "CLI Bank",
        "--kind",
        "bank",
        "--product",
        "payments",
    ]
    created = await asyncio.to_thread(runner.invoke, app, create)
    assert created.exit_code == 0, created.output
    assert '"requestsPerS": 100' in created.output
    listed = await asyncio.to_thread(runner.invoke, app, [*base, "tenants", "list"])
    assert listed.exit_code == 0 and "cli-bank" in listed.output
    denied = await asyncio.to_thread(runner.invoke, app, [*base[:3], keys["demo-bank"], "tenants", "list"])
    assert denied.exit_code == 1 and "OPERATOR_ONLY" in denied.output


async def test_cli_key_issued_again_by_request_id_is_the_same_key_without_its_secret(
    running: Running, keys: dict[str, str]
) -> None:
    issue = ["--endpoint", running.address, "--api-key", keys["demo-operator"], "keys", "issue", "demo-fund"]
    first = await asyncio.to_thread(CliRunner().invoke, app, [*issue, "--request-id", "key-1"])
    again = await asyncio.to_thread(CliRunner().invoke, app, [*issue, "--request-id", "key-1"])
    assert (first.exit_code, again.exit_code) == (0, 0), first.output + again.output
    secret = next(line for line in first.stdout.splitlines() if line.startswith("jbk.demo-fund."))
    assert secret not in again.stdout and "No secret" in again.stdout
    key_id = secret.split(".")[2]
    assert key_id in first.stdout and key_id in again.stdout


def test_cli_migrate_applies_the_schema_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUBAO_STORAGE__SQLITE__PATH", str(tmp_path / "migrated.db"))
    runner = CliRunner()
    first = runner.invoke(app, ["migrate"])
    assert first.exit_code == 0 and "0001_platform.sql" in first.output, first.output
    assert "0002_payments.sql" in first.output
    second = runner.invoke(app, ["migrate"])
    assert second.exit_code == 0 and "applied 0 schema file(s)" in second.output
