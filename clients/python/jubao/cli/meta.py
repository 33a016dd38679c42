"""`jubao ping` and `jubao whoami`: the caller's own session."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from jubao.cli.common import connect, emit, record_table, text
from jubao.meta.v1 import meta_pb2

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer()


@app.command()
def ping(
    ctx: typer.Context,
    payload: Annotated[str, typer.Option(help="Text the service echoes back.")] = "",
) -> None:
    """Call MetaService.Ping: checks the endpoint, the credentials and the quota."""
    with connect(ctx) as client:
        started_s = time.perf_counter()
        response = client.meta.Ping(meta_pb2.PingRequest(payload=payload.encode()))
        elapsed_ms = (time.perf_counter() - started_s) * 1000
    emit(ctx, response, lambda: text(f"pong from {client.config.endpoint} in {elapsed_ms:.1f} ms"))


@app.command()
def whoami(ctx: typer.Context) -> None:
    """Show the tenant the credentials resolve to (MetaService.GetCaller)."""
    with connect(ctx) as client:
        caller = client.meta.GetCaller(meta_pb2.GetCallerRequest())
    emit(ctx, caller, lambda: _caller_table(caller))


def _caller_table(caller: meta_pb2.GetCallerResponse) -> Table:
    return record_table(
        [
            ("tenant", caller.tenant_id),
            ("name", caller.display_name),
            ("kind", caller.kind),
            ("products", ", ".join(caller.products)),
            ("auth", caller.auth_method),
            ("key id", caller.key_id),
        ]
    )
