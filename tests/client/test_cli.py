"""The `jubao` command through Typer's CliRunner, against a real in-process gRPC server."""

from __future__ import annotations

import json

import grpc
import pytest
from jubao.cli.common import LIST_ITEMS_MAX, PAGE_SIZE, Page, collect_pages
from jubao.cli.main import app
from jubao.client import Reason
from typer.testing import CliRunner, Result

from .conftest import API_KEY, TENANT_IDS
from .fakes import FakeServer, rich_status, sample_tenant, serve

CLEAN_ENV: dict[str, str | None] = {
    name: None
    for name in (
        "JUBAO_ENDPOINT",
        "JUBAO_API_KEY",
        "JUBAO_TLS_CA",
        "JUBAO_TLS_CERT",
        "JUBAO_TLS_KEY",
        "JUBAO_TIMEOUT_MS",
    )
}


def run(server: FakeServer, *args: str) -> Result:
    options = ["--endpoint", server.endpoint, "--api-key", API_KEY, "--timeout-ms", "3000"]
    return CliRunner().invoke(app, [*options, *args], env=CLEAN_ENV)


def assert_no_api_key(result: Result) -> None:
    assert API_KEY not in result.stdout
    assert API_KEY not in result.stderr


def test_ping(server: FakeServer) -> None:
    result = run(server, "ping")
    assert result.exit_code == 0, result.output
    assert f"pong from {server.endpoint}" in result.stdout
    assert server.script.calls[0].metadata["authorization"] == f"Bearer {API_KEY}"
    assert_no_api_key(result)


def test_whoami_as_table_and_json(server: FakeServer) -> None:
    table = run(server, "whoami")
    assert table.exit_code == 0, table.output
    assert "acme-bank" in table.stdout
    assert "api_key" in table.stdout
    machine = run(server, "--json", "whoami")
    assert json.loads(machine.stdout)["tenantId"] == "acme-bank"


def test_tenants_list_pages_through_everything(server: FakeServer) -> None:
    result = run(server, "--json", "tenants", "list")
    assert result.exit_code == 0, result.output
    assert [tenant["tenantId"] for tenant in json.loads(result.stdout)["tenants"]] == list(TENANT_IDS)
    assert server.script.methods() == ["ListTenants"] * 3


def test_tenants_list_table(server: FakeServer) -> None:
    result = run(server, "tenants", "list")
    assert result.exit_code == 0, result.output
    assert all(tenant_id in result.stdout for tenant_id in TENANT_IDS)


def test_tenants_create_sends_kind_products_quota_and_request_id(server: FakeServer) -> None:
    args = ["tenants", "create", "fund-one", "--name", "Fund One", "--kind", "fund_house"]
    args += [
        "--product",
        "fund_ta",
        "--product",
        "cocreation",
        "--rate",
        "50",
        "--burst",
        "80",
        "--concurrency",
        "5",
    ]
    result = run(server, "--json", *args)
    assert result.exit_code == 0, result.output
    tenant = json.loads(result.stdout)["tenant"]
    assert (tenant["kind"], tenant["products"]) == (
        "TENANT_KIND_FUND_HOUSE",
        ["PRODUCT_FUND_TA", "PRODUCT_COCREATION"],
    )
    assert tenant["quota"] == {"requestsPerS": 50, "burstRequests": 80, "concurrentCallsMax": 5}
    assert server.script.calls[0].request_id


def test_tenants_disable_and_set_quota(server: FakeServer) -> None:
    disabled = run(server, "tenants", "disable", "alpha", "--reason", "unpaid invoices")
    assert disabled.exit_code == 0, disabled.output
    assert "unpaid invoices" in disabled.stdout
    quota = run(
        server, "--json", "tenants", "set-quota", "bravo", "--rate", "7", "--burst", "9", "--concurrency", "2"
    )
    assert json.loads(quota.stdout)["tenant"]["quota"]["requestsPerS"] == 7


def test_keys_issue_and_list(server: FakeServer) -> None:
    issued = run(server, "keys", "issue", "alpha", "--name", "ci")
    assert issued.exit_code == 0, issued.output
    assert "jb_secret_shown_once" in issued.stdout
    listed = run(server, "--json", "keys", "list", "alpha")
    assert json.loads(listed.stdout)["apiKeys"][0]["keyId"] == "key-1"


def test_error_exits_1_with_code_and_reason(server: FakeServer) -> None:
    result = run(server, "tenants", "get", "nobody")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["ERROR NOT_FOUND TENANT_NOT_FOUND: no tenant nobody"]
    assert_no_api_key(result)


def test_error_prints_field_violations_and_retry_delay_as_text_or_json(server: FakeServer) -> None:
    status = rich_status(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "too many tenants",
        Reason.TENANT_LIMIT,
        violations=[("tenant.tenant_id", "limit reached")],
        retry_delay_ms=1500,
        metadata={"tenants_max": "5"},
    )
    server.script.fail_next(status, times=2)
    create = ["tenants", "create", "late", "--name", "Late", "--kind", "bank"]
    result = run(server, *create)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "ERROR RESOURCE_EXHAUSTED TENANT_LIMIT: too many tenants",
        "  tenant.tenant_id: limit reached",
        "  retry after 1500 ms",
    ]
    machine = run(server, "--json", *create)
    assert (machine.exit_code, machine.stdout) == (1, "")
    assert json.loads(machine.stderr) == {
        "error": {
            "code": 8,
            "status": "RESOURCE_EXHAUSTED",
            "message": "too many tenants",
            "reason": "TENANT_LIMIT",
            "domain": "jubao.cloud",
            "metadata": {"tenants_max": "5"},
            "fieldViolations": [{"field": "tenant.tenant_id", "description": "limit reached"}],
            "retryDelayMs": 1500,
        }
    }


def test_bad_configuration_is_a_usage_error(server: FakeServer) -> None:
    result = run(server, "--tls-cert", "/nonexistent/client.pem", "ping")
    assert result.exit_code == 2
    assert "a client certificate needs its key" in result.output
    assert_no_api_key(result)


def test_help_never_shows_api_key_from_env() -> None:
    result = CliRunner().invoke(app, ["--help"], env={**CLEAN_ENV, "JUBAO_API_KEY": API_KEY})
    assert result.exit_code == 0
    assert "--api-key" in result.stdout
    assert_no_api_key(result)


def test_paging_stops_at_the_item_bound(capsys: pytest.CaptureFixture[str]) -> None:
    tokens: list[str] = []

    def endless(page_token: str) -> Page[int]:
        tokens.append(page_token)
        return range(PAGE_SIZE), f"page-{len(tokens)}"

    items = collect_pages(endless)
    assert len(items) == LIST_ITEMS_MAX
    assert len(tokens) == LIST_ITEMS_MAX // PAGE_SIZE
    assert tokens[:2] == ["", "page-1"]
    assert "stopped after 10000 items" in capsys.readouterr().err


def test_tenants_enable_and_keys_revoke(server: FakeServer) -> None:
    enabled = run(server, "--json", "tenants", "enable", "alpha")
    assert json.loads(enabled.stdout)["tenant"]["state"] == "TENANT_STATE_ACTIVE"
    revoked = run(server, "keys", "revoke", "alpha", "key-9")
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in revoked.stdout
    assert [call.method for call in server.script.calls] == ["EnableTenant", "RevokeApiKey"]
    assert all(call.request_id for call in server.script.calls)


def test_every_mutating_admin_command_sends_the_given_request_id(server: FakeServer) -> None:
    commands = [
        ["tenants", "create", "new-bank", "--name", "New", "--kind", "bank"],
        ["tenants", "disable", "alpha", "--reason", "audit"],
        ["tenants", "enable", "alpha"],
        ["tenants", "set-quota", "alpha", "--rate", "1", "--burst", "2", "--concurrency", "3"],
        ["keys", "issue", "alpha"],
        ["keys", "revoke", "alpha", "key-1"],
    ]
    for number, command in enumerate(commands):
        result = run(server, *command, "--request-id", f"req-{number}")
        assert result.exit_code == 0, result.output
    assert [call.request_id for call in server.script.calls] == [f"req-{n}" for n in range(len(commands))]


def test_tables_never_cut_ids_on_a_narrow_terminal() -> None:
    long_id = "demo-bank-of-the-long-river-delta-0123456789"
    with serve([sample_tenant(long_id)]) as narrow:
        options = ["--endpoint", narrow.endpoint, "--api-key", API_KEY]
        result = CliRunner().invoke(app, [*options, "tenants", "list"], env={**CLEAN_ENV, "COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    assert long_id in result.stdout
    assert "…" not in result.stdout


def test_help_names_the_exit_codes() -> None:
    result = CliRunner().invoke(app, ["--help"], env={**CLEAN_ENV, "COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Exit codes: 0 done; 1 a call failed" in result.stdout
