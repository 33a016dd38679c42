"""`jubao bulk upload|status|results|export|list`: bulk data over Arrow Flight (the bulk server, next to
the gRPC one: `--bulk-endpoint`, default 127.0.0.1:50052), with a progress bar on long transfers.

pyarrow is imported when a Flight command runs, never when the command line is parsed. `list` asks the
gRPC server (BulkService.ListUploads) and loads gRPC's Python package, never pyarrow: no command loads
both (they must not share a process, apache/arrow#13300)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from jubao.cli.common import (
    EXIT_CALL_FAILED,
    EXIT_PARTIAL,
    PAGE_SIZE,
    Page,
    collect_pages,
    connect,
    console,
    emit,
    enum_label,
    list_table,
    parse_time,
    print_error,
    show,
    state,
    time_label,
)

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

    from jubao.bulk.client import BulkClient
    from jubao.bulk.v1 import bulk_pb2
    from jubao.client import Client

app = typer.Typer(
    help="Bulk data over Arrow Flight: upload transfers, follow their apply, download results and statements."
)

DATASETS: Final = ("transfers",)
MB: Final = 1024 * 1024

BatchIdArgument = Annotated[str, typer.Argument(metavar="BATCH_ID", help="The upload's batch id.")]


@contextmanager
def connect_bulk(ctx: typer.Context) -> Iterator[BulkClient]:
    """A client of the bulk server; a failed call exits 1 with the reason, as for gRPC commands."""
    from jubao.bulk.client import BulkClient
    from jubao.errors import JubaoError

    cli = state(ctx)
    try:
        with BulkClient.of(cli.make_config()) as client:
            yield client
    except JubaoError as error:
        print_error(error, as_json=cli.json_output)
        raise typer.Exit(EXIT_CALL_FAILED) from error


@app.command()
def upload(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(metavar="FILE", exists=True, dir_okay=False, help="Parquet, CSV or Arrow IPC file."),
    ],
    batch_id: Annotated[
        str,
        typer.Option(
            "--batch-id", help="The upload's id (yours, unique in your tenant): run again with it to resume."
        ),
    ],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until every row is applied.")] = True,
) -> None:
    """Upload transfers (request_id, payer, payee, amount_minor, currency, memo), resuming the batch if
    part of it is stored already, and wait for the ledger to apply them. Exits 4 when rows were refused
    (`jubao bulk results` says which and why)."""
    with connect_bulk(ctx) as client, progress_bar() as progress:
        task = progress.add_task("upload", total=_row_count(path))

        def advance(rows: int, sent_bytes: int) -> None:
            progress.update(task, completed=rows, mb=sent_bytes / MB)

        receipt = client.upload_transfers(batch_id, path, progress=advance)
        progress.update(task, completed=receipt.rows_received, total=receipt.rows_received)
        progress.stop_task(task)
        final = (
            _follow(client, progress, batch_id, receipt.rows_received)
            if wait
            else client.get_upload(batch_id)
        )
    _show_upload(ctx, final)
    if final.done and (final.rows_failed or final.rows_rejected):
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def status(ctx: typer.Context, batch_id: BatchIdArgument) -> None:
    """Show an upload: its state and how many rows were received, refused and applied."""
    with connect_bulk(ctx) as client:
        found = client.get_upload(batch_id)
    _show_upload(ctx, found)


@app.command("list")
def list_uploads(ctx: typer.Context) -> None:
    """List your uploads, oldest batch id first, with their state and rows applied and refused."""
    from jubao.bulk.v1 import bulk_pb2

    with connect(ctx) as client:
        uploads = collect_pages(functools.partial(_upload_page, client))
    emit(ctx, bulk_pb2.ListUploadsResponse(uploads=uploads), lambda: _uploads_table(uploads))


def _upload_page(client: Client, page_token: str) -> Page[bulk_pb2.Upload]:
    from jubao.bulk.v1 import bulk_pb2

    response = client.bulk.ListUploads(
        bulk_pb2.ListUploadsRequest(page_size=PAGE_SIZE, page_token=page_token)
    )
    return response.uploads, response.next_page_token


def _uploads_table(uploads: list[bulk_pb2.Upload]) -> Table:
    headers = ("BATCH ID", "DATASET", "STATE", "RECEIVED", "APPLIED", "REFUSED", "UPDATED")
    rows = [
        [
            u.batch_id,
            u.dataset,
            enum_label(u.State.Name(u.state), "STATE_"),
            f"{u.rows_received:,}",
            f"{u.rows_applied:,}",
            f"{u.rows_failed:,}",
            time_label(u.update_time),
        ]
        for u in uploads
    ]
    return list_table(headers, rows)


@app.command()
def results(
    ctx: typer.Context,
    batch_id: BatchIdArgument,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write all results to this Parquet, CSV or Arrow file.")
    ] = None,
) -> None:
    """The result of each row applied so far (applied with its transfer id, or refused with code, reason
    and message): the refused rows on screen, every row with --out."""
    from jubao.bulk import schemas
    from jubao.bulk.files import write_batches

    with connect_bulk(ctx) as client:
        reader = client.results(batch_id)
        if out is not None:
            rows = write_batches(reader, schemas.TRANSFER_RESULTS, out)
            show(f"{rows} results written to {out}")
            return
        table = reader.read_all()
    refused = [row for row in table.to_pylist() if row["status"] == schemas.REJECTED]
    show(f"{table.num_rows} results, {len(refused)} refused")
    if refused:
        headers = ("ROW", "REQUEST ID", "CODE", "REASON", "MESSAGE")
        rows_shown = [[str(r["row"]), r["request_id"], r["code"], r["reason"], r["message"]] for r in refused]
        show(list_table(headers, rows_shown, wrap=(4,)))


@app.command()
def export(
    ctx: typer.Context,
    account_ids: Annotated[list[str], typer.Argument(metavar="ACCOUNT...", help="Accounts (at most 1000).")],
    out: Annotated[Path, typer.Option("--out", help="Parquet, CSV or Arrow IPC file to write.")],
    start: Annotated[str, typer.Option("--start", help="ISO time; entries at or after it.")] = "",
    end: Annotated[str, typer.Option("--end", help="ISO time; entries before it.")] = "",
) -> None:
    """Download the journal entries of accounts over a time range (a statement), as Arrow."""
    from jubao.bulk import schemas
    from jubao.bulk.files import write_batches

    start_time = parse_time("--start", start) if start else None
    end_time = parse_time("--end", end) if end else None
    with connect_bulk(ctx) as client, progress_bar() as progress:
        task = progress.add_task("export", total=None)
        reader = client.export_entries(account_ids, start_time=start_time, end_time=end_time)
        rows = write_batches(counted(reader, progress, task), schemas.ENTRIES, out)
    show(f"{rows} entries written to {out}")


@app.command()
def confirmations(
    ctx: typer.Context,
    fund_code: Annotated[str, typer.Argument(metavar="FUND", help="Fund code.")],
    trade_date: Annotated[str, typer.Argument(metavar="DATE", help="A closed trade date, YYYY-MM-DD.")],
    out: Annotated[Path, typer.Option("--out", help="Parquet, CSV or Arrow IPC file to write.")],
    distributor: Annotated[str, typer.Option("--distributor", help="Fund houses: one distributor's.")] = "",
) -> None:
    """Download the confirmations of a fund's closed trade date (fund TA), as Arrow."""
    from jubao.bulk import schemas
    from jubao.bulk.files import write_batches

    with connect_bulk(ctx) as client, progress_bar() as progress:
        task = progress.add_task("confirmations", total=None)
        reader = client.export_confirmations(fund_code, trade_date, distributor)
        rows = write_batches(counted(reader, progress, task), schemas.CONFIRMATIONS, out)
    show(f"{rows} confirmations written to {out}")


def counted(batches: Any, progress: Progress, task: Any) -> Iterator[Any]:
    rows = moved = 0
    for batch in batches:
        rows += batch.num_rows
        moved += batch.nbytes
        progress.update(task, completed=rows, mb=moved / MB)
        yield batch


def _follow(client: BulkClient, progress: Progress, batch_id: str, rows: int) -> bulk_pb2.Upload:
    task = progress.add_task("apply", total=rows)

    def update(found: bulk_pb2.Upload) -> None:
        progress.update(task, completed=found.rows_applied + found.rows_failed)

    return client.wait(batch_id, progress=update)


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A bar per phase: rows, and MB and MB/s while data moves (rows/s while the service applies)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            moved_mb = task.fields.get("mb")
            if moved_mb is not None and task.elapsed:
                return Text(f"{moved_mb:.1f} MB, {moved_mb / task.elapsed:.1f} MB/s")
            return Text(f"{task.speed:,.0f} rows/s" if task.speed else "")

    columns = (TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"))
    with Progress(*columns, SpeedColumn(), TimeElapsedColumn(), console=console()) as progress:
        yield progress


def _row_count(path: Path) -> int | None:
    """The rows of a Parquet or Arrow IPC file from its metadata (None for CSV: unknown until read)."""
    from jubao.bulk.files import file_format

    kind = file_format(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def _show_upload(ctx: typer.Context, found: bulk_pb2.Upload) -> None:
    from jubao.cli.common import record_table

    emit(
        ctx,
        found,
        lambda: record_table(
            [
                ("batch id", found.batch_id),
                ("state", enum_label(found.State.Name(found.state), "STATE_")),
                ("rows received", f"{found.rows_received:,} ({found.bytes_received / MB:.1f} MB)"),
                ("refused at upload", f"{found.rows_rejected:,}"),
                ("applied", f"{found.rows_applied:,}"),
                (
                    "refused by the ledger",
                    f"{found.rows_failed - found.rows_rejected:,}" if found.done else "-",
                ),
                ("updated", time_label(found.update_time)),
            ]
        ),
    )
