"""What every command group shares: the connection, output (table or JSON), errors, exit codes, request
ids and paging.

Exit codes: 0 the command did everything it was asked; 1 a call failed (the error on stderr, as JSON with
--json); 2 bad usage or configuration; 3 `reconcile` found a discrepancy; 4 part of the work failed (items
of `payments batch`).

gRPC, protobuf's JSON and rich are imported when a command needs them, not when the command line is
parsed, so `jubao --help` and usage errors stay quick.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Final, Protocol, TypeAlias, TypeVar

import typer

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from google.protobuf.timestamp_pb2 import Timestamp
    from rich.console import Console, RenderableType
    from rich.table import Table

    from jubao.client import Client, ClientConfig, JubaoError

LIST_ITEMS_MAX: Final = 10_000
# The narrowest a free-text column of a table gets on a narrow terminal.
WRAPPED_WIDTH_MIN: Final = 10
OUTPUT_WIDTH_MAX: Final = 1_000
PAGE_SIZE: Final = 500

EXIT_CALL_FAILED: Final = 1
EXIT_DISCREPANCY: Final = 3
EXIT_PARTIAL: Final = 4

ItemT = TypeVar("ItemT")
Page: TypeAlias = tuple[Sequence[ItemT], str]
RequestT = TypeVar("RequestT", bound="Message")


class Listed(Protocol):
    """A List call's response (AIP-158)."""

    @property
    def next_page_token(self) -> str: ...


ResponseT = TypeVar("ResponseT", bound=Listed)

RequestIdOption = Annotated[
    str,
    typer.Option(
        "--request-id",
        help="Idempotency key (AIP-155): repeating the command with the same id and arguments applies it "
        "once and answers as the first time; the same id with other arguments is REQUEST_ID_REUSED. "
        "Default: a fresh id.",
    ),
]


@dataclasses.dataclass(frozen=True)
class CliState:
    """The global options, kept until a command needs a connection."""

    make_config: Callable[[], ClientConfig]
    json_output: bool
    # host:port of the bulk (Arrow Flight) server.
    bulk_endpoint: str


def state(ctx: typer.Context) -> CliState:
    found = ctx.find_object(CliState)
    if found is None:
        raise RuntimeError("the jubao callback did not run")
    return found


@functools.cache
def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


@contextmanager
def connect(ctx: typer.Context) -> Iterator[Client]:
    """A client for the command; a failed call exits 1 and a bad configuration exits 2, with the reason."""
    from jubao.client import Client, ConfigError, JubaoError

    try:
        with Client(state(ctx).make_config()) as client:
            yield client
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from error
    except JubaoError as error:
        print_error(error, as_json=state(ctx).json_output)
        raise typer.Exit(EXIT_CALL_FAILED) from error


def print_error(error: JubaoError, *, as_json: bool = False) -> None:
    """On stderr: `ERROR <CODE> <REASON>: message`, then one line per field violation and the retry delay;
    with `as_json`, one JSON object {"error": {...}} (see `error_json`)."""
    if as_json:
        typer.echo(json.dumps({"error": error_json(error)}, indent=2), err=True)
        return
    typer.echo(f"ERROR {error}", err=True)
    for violation in error.field_violations:
        typer.echo(f"  {violation.field}: {violation.description}", err=True)
    if error.retry_delay_ms is not None:
        typer.echo(f"  retry after {error.retry_delay_ms} ms", err=True)


def error_json(error: JubaoError) -> dict[str, Any]:
    """A failed call as JSON: the gRPC status (number and name), message, and the ErrorInfo's reason,
    domain and metadata; field violations and the retry delay when there are some."""
    document: dict[str, Any] = {
        "code": int(error.code),
        "status": error.code.name,
        "message": error.message,
        "reason": error.reason,
        "domain": error.domain,
        "metadata": error.metadata,
    }
    if error.field_violations:
        document["fieldViolations"] = [
            {"field": violation.field, "description": violation.description}
            for violation in error.field_violations
        ]
    if error.retry_delay_ms is not None:
        document["retryDelayMs"] = error.retry_delay_ms
    return document


def emit(ctx: typer.Context, message: Message, render: Callable[[], RenderableType]) -> None:
    """Print `message` as proto JSON with --json, else what `render` draws."""
    if state(ctx).json_output:
        from google.protobuf import json_format

        typer.echo(json_format.MessageToJson(message))
    else:
        show(render())


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


def list_all(
    call: Callable[[RequestT], ResponseT], query: RequestT, items: Callable[[ResponseT], Sequence[ItemT]]
) -> list[ItemT]:
    """Every item a List call answers to `query`, page by page (`collect_pages`): `items` picks a
    response's items."""

    def fetch(page_token: str) -> Page[ItemT]:
        request = type(query)()
        request.CopyFrom(query)
        request.MergeFrom(type(query)(page_token=page_token))
        response = call(request)
        return items(response), response.next_page_token

    return collect_pages(fetch)


def record_table(rows: Sequence[tuple[str, str]]) -> Table:
    """One record as a two-column field/value table; empty values are left out. Values wrap, never cut."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for field, value in rows:
        if value:
            table.add_row(Text(field), Text(value))
    return table


def list_table(headers: Sequence[str], rows: Sequence[Sequence[str]], wrap: Sequence[int] = ()) -> Table:
    """A table with a header. Only the columns `wrap` (free text: names, times, messages) wrap on a narrow
    terminal; ids, amounts and states are printed whole (`show` widens the output when they need it)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for index, header in enumerate(headers):
        if index in wrap:
            table.add_column(header, overflow="fold", min_width=WRAPPED_WIDTH_MIN)
        else:
            widest = max((len(row[index]) for row in rows), default=0)
            table.add_column(header, no_wrap=True, min_width=max(widest, len(header)))
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def text(line: str) -> RenderableType:
    """Plain text for `emit` and `show`: no markup, no highlighting."""
    from rich.text import Text

    return Text(line)


def show(renderable: RenderableType) -> None:
    """Print `renderable`, wider than the terminal if a cell that must not be cut needs it (the terminal
    then wraps the long lines: nothing is lost)."""
    from rich.console import Console
    from rich.measure import Measurement

    out = console()
    needed = Measurement.get(out, out.options.update_width(OUTPUT_WIDTH_MAX), renderable).minimum
    if needed > out.width:
        out = Console(highlight=False, width=needed)
    out.print(renderable)


def enum_label(name: str, prefix: str) -> str:
    """A proto enum value name as the CLI spells it: TENANT_KIND_FUND_HOUSE -> fund_house."""
    return name.removeprefix(prefix).lower()


def parse_time(option: str, text: str) -> datetime.datetime:
    """An ISO 8601 time given on the command line; without an offset it is UTC."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=option) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def time_label(timestamp: Timestamp) -> str:
    """RFC 3339 in UTC, as in the JSON output: 2026-11-11T00:00:00.123Z."""
    if not timestamp.seconds and not timestamp.nanos:
        return ""
    return str(timestamp.ToJsonString())
