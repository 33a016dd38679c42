"""`jubao keys ...`: the API keys of a tenant (TenantAdmin, operators only)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Annotated

import typer

from jubao.admin.v1 import tenant_admin_pb2 as admin_pb2
from jubao.cli.common import (
    PAGE_SIZE,
    Page,
    RequestIdOption,
    collect_pages,
    connect,
    emit,
    enum_label,
    list_table,
    record_table,
    text,
    time_label,
)

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table

    from jubao.client import Client

app = typer.Typer(help="Manage API keys (operator credentials only).", no_args_is_help=True)

TenantArgument = Annotated[str, typer.Argument(metavar="TENANT", help="Tenant id the key belongs to.")]


@app.command()
def issue(
    ctx: typer.Context,
    tenant_id: TenantArgument,
    name: Annotated[str, typer.Option("--name", help="Display name of the key.")] = "",
    request_id: RequestIdOption = "",
) -> None:
    """Issue a new API key; its secret is shown once (a repeated request id answers without it)."""
    request = admin_pb2.IssueApiKeyRequest(tenant_id=tenant_id, display_name=name, request_id=request_id)
    with connect(ctx) as client:
        response = client.admin.IssueApiKey(request)
    emit(ctx, response, lambda: _issued(response))


@app.command()
def revoke(
    ctx: typer.Context,
    tenant_id: TenantArgument,
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="Id of the key to revoke.")],
    request_id: RequestIdOption = "",
) -> None:
    """Revoke an API key: calls with it fail with API_KEY_REVOKED."""
    request = admin_pb2.RevokeApiKeyRequest(tenant_id=tenant_id, key_id=key_id, request_id=request_id)
    with connect(ctx) as client:
        response = client.admin.RevokeApiKey(request)
    emit(ctx, response, lambda: key_record(response.api_key))


@app.command("list")
def list_keys(ctx: typer.Context, tenant_id: TenantArgument) -> None:
    """List the API keys of a tenant (never their secrets)."""
    with connect(ctx) as client:
        keys = collect_pages(functools.partial(_key_page, client, tenant_id))
    emit(ctx, admin_pb2.ListApiKeysResponse(api_keys=keys), lambda: keys_table(keys))


def _key_page(client: Client, tenant_id: str, page_token: str) -> Page[admin_pb2.ApiKey]:
    request = admin_pb2.ListApiKeysRequest(tenant_id=tenant_id, page_size=PAGE_SIZE, page_token=page_token)
    response = client.admin.ListApiKeys(request)
    return response.api_keys, response.next_page_token


def _state(key: admin_pb2.ApiKey) -> str:
    return enum_label(admin_pb2.ApiKeyState.Name(key.state), "API_KEY_STATE_")


def _issued(response: admin_pb2.IssueApiKeyResponse) -> Group:
    from rich.console import Group
    from rich.text import Text

    if not response.secret:
        replayed = "No secret: the key of a repeated request id (its secret was shown once)."
        return Group(key_record(response.api_key), text(replayed))
    warning = Text("Secret (shown once; send as 'authorization: Bearer <secret>'):", style="bold yellow")
    return Group(key_record(response.api_key), warning, text(response.secret))


def keys_table(keys: list[admin_pb2.ApiKey]) -> Table:
    rows = [
        (key.tenant_id, key.key_id, key.display_name, _state(key), time_label(key.create_time))
        for key in keys
    ]
    return list_table(("TENANT", "KEY ID", "NAME", "STATE", "CREATED"), rows, wrap=(2,))


def key_record(key: admin_pb2.ApiKey) -> Table:
    return record_table(
        [
            ("tenant", key.tenant_id),
            ("key id", key.key_id),
            ("name", key.display_name),
            ("state", _state(key)),
            ("created", time_label(key.create_time)),
            ("revoked", time_label(key.revoke_time)),
        ]
    )
