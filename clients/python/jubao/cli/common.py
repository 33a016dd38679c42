"""What every command group shares: the connection, output (table or JSON), errors and paging."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final, TypeAlias, TypeVar

import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from jubao.client import Client, ClientConfig, ConfigError, JubaoError

LIST_ITEMS_MAX: Final = 10_000
PAGE_SIZE: Final = 500

ItemT = TypeVar("ItemT")
Page: TypeAlias = tuple[Sequence[ItemT], str]

console: Final = Console(highlight=False)


@dataclasses.dataclass(frozen=True)
class CliState:
    """The global options, kept until a command needs a connection."""

    make_config: Callable[[], ClientConfig]
    json_output: bool


def state(ctx: typer.Context) -> CliState:
    found = ctx.find_object(CliState)
    if found is None:
        raise RuntimeError("the jubao callback did not run")
    return found


@contextmanager
def connect(ctx: typer.Context) -> Iterator[Client]:
    """A client for the command; a failed call exits 1 and a bad configuration exits 2, with the reason."""
    try:
        with Client(state(ctx).make_config()) as client:
            yield client
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from error
    except JubaoError as error:
        print_error(error)
        raise typer.Exit(1) from error


def print_error(error: JubaoError) -> None:
    """`ERROR <CODE> <REASON>: message`, then one line per field violation and the retry delay, on stderr."""
    typer.echo(f"ERROR {error}", err=True)
    for violation in error.field_violations:
        typer.echo(f"  {violation.field}: {violation.description}", err=True)
    if error.retry_delay_ms is not None:
        typer.echo(f"  retry after {error.retry_delay_ms} ms", err=True)


def emit(ctx: typer.Context, message: Message, render: Callable[[], RenderableType]) -> None:
    """Print `message` as proto JSON with --json, else what `render` draws."""
    if state(ctx).json_output:
        typer.echo(json_format.MessageToJson(message))
    else:
        console.print(render())


def collect_pages(fetch: Callable[[str], Page[ItemT]]) -> list[ItemT]:
    """Every item `fetch(page_token)` pages through, stopping (with a warning) after LIST_ITEMS_MAX."""
    items: list[ItemT] = []
    token = ""
    for _ in range(LIST_ITEMS_MAX):
        page, token = fetch(token)
        items.extend(page)
        if not token:
            return items
        if len(items) >= LIST_ITEMS_MAX:
            break
    typer.echo(f"warning: stopped after {LIST_ITEMS_MAX} items; more exist", err=True)
    return items[:LIST_ITEMS_MAX]


def record_table(rows: Sequence[tuple[str, str]]) -> Table:
    """One record as a two-column field/value table; empty values are left out."""
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for field, value in rows:
        if value:
            table.add_row(Text(field), Text(value))
    return table


def list_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(*headers)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def enum_label(name: str, prefix: str) -> str:
    """A proto enum value name as the CLI spells it: TENANT_KIND_FUND_HOUSE -> fund_house."""
    return name.removeprefix(prefix).lower()


def time_label(timestamp: Timestamp) -> str:
    if not timestamp.seconds and not timestamp.nanos:
        return ""
    return timestamp.ToDatetime(tzinfo=datetime.UTC).isoformat()
