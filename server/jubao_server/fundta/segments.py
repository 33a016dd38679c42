"""A holder shard's positions as Arrow columns (see ARCHITECTURE.md, "The holder segment").

The positions of a holder shard are `fundta_position_chunks` rows of kind "positions" (keys "0000"...),
each an Arrow IPC stream (compressed whole, LZ4) of the holders whose key (`<distributor>/<trading
account>`) hashes into it (BLAKE2b), sorted by distributor and trading account, with the CRC-32 of its
bytes in `checksum`. A day-close reads every chunk of a shard, computes on whole columns and writes
every chunk back in one conditional batch; a query of one holder reads its one chunk. The chunk rows,
once written, are the shard's positions; before the first day-close of this layout, the positions are
the JSON rows of kind "position" (one per holder) that earlier versions wrote, read as they are and
replaced by the chunks at that day-close.

Columns: the income carried forward is its own column (`income_lot_shares`, the lot dated "", the
oldest), so the carry-forward is column arithmetic; the dated lots are two list columns (dates and shares,
first in first out)."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import zlib
from collections.abc import Sequence
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from jubao_server import limits
from jubao_server.errors import internal
from jubao_server.fundta.model import DividendMethod, IncomeDay, Lot, Position, decode
from jubao_server.invariants import ensure
from jubao_server.storage.contract import (
    Batch,
    Bound,
    Delete,
    PartitionRef,
    Put,
    Row,
    RowQuery,
    StorageBackend,
)

# Row kinds of a holder shard: the chunks of this layout, and the JSON positions of the layout before it.
CHUNK: Final = "positions"
LEGACY_POSITION: Final = "position"
INCOME_LOT: Final = ""
# 万份收益 is in 0.0001 units per 10,000 shares: income (minor) = shares (hundredths) x per_10k / 10^8.
PER_10K_DIVISOR: Final = 100_000_000

SCHEMA: Final = pa.schema(
    [
        ("distributor_id", pa.string()),
        ("trading_account_id", pa.string()),
        ("fund_account_id", pa.string()),
        ("shares", pa.int64()),
        ("income_lot_shares", pa.int64()),
        ("lot_dates", pa.list_(pa.string())),
        ("lot_shares", pa.list_(pa.int64())),
        ("released_shares", pa.int64()),
        ("last_income_minor", pa.int64()),
        ("income_total_minor", pa.int64()),
        ("closed_date", pa.string()),
        ("fast_released_shares", pa.int64()),
        # The method the last dividend method change confirmed; null: the fund's default.
        ("dividend_method", pa.string()),
    ]
)
_SORT: Final = [("distributor_id", "ascending"), ("trading_account_id", "ascending")]
_CODEC: Final = pa.Codec("lz4")
_LENGTH: Final = struct.Struct("<Q")


def chunk_of(holder: str) -> int:
    """The chunk of a holder (`<distributor>/<trading account>`) within its shard: BLAKE2b, not the
    CRC-32 that picks the shard, whose linearity would put a shard's holders in one chunk when their
    keys differ only where their fund accounts do."""
    digest = hashlib.blake2b(holder.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % limits.fundta_position_chunks


def chunk_key(chunk: int) -> tuple[str, str]:
    return (CHUNK, f"{chunk:04d}")


def table_of(positions: Sequence[Position]) -> pa.Table:
    """The columns of `positions`, in their order."""
    dated = [[lot for lot in p.lots if lot.trade_date != INCOME_LOT] for p in positions]
    columns = {
        "distributor_id": [p.distributor_id for p in positions],
        "trading_account_id": [p.trading_account_id for p in positions],
        "fund_account_id": [p.fund_account_id for p in positions],
        "shares": [p.shares for p in positions],
        "income_lot_shares": [
            sum(lot.shares for lot in p.lots if lot.trade_date == INCOME_LOT) for p in positions
        ],
        "lot_dates": [[lot.trade_date for lot in lots] for lots in dated],
        "lot_shares": [[lot.shares for lot in lots] for lots in dated],
        "released_shares": [p.released_shares for p in positions],
        "last_income_minor": [p.last_income_minor for p in positions],
        "income_total_minor": [p.income_total_minor for p in positions],
        "closed_date": [p.closed_date for p in positions],
        "fast_released_shares": [p.fast_released_shares for p in positions],
        "dividend_method": [
            None if p.dividend_method is None else p.dividend_method.value for p in positions
        ],
    }
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def positions_of(table: pa.Table) -> list[Position]:
    """The positions of `table`'s rows, in their order."""
    positions = []
    for row in table.to_pylist():
        income = [Lot(INCOME_LOT, row["income_lot_shares"])] if row["income_lot_shares"] else []
        dated = [Lot(d, s) for d, s in zip(row["lot_dates"], row["lot_shares"], strict=True)]
        positions.append(
            Position(
                row["distributor_id"],
                row["trading_account_id"],
                row["fund_account_id"],
                row["shares"],
                (*income, *dated),
                row["released_shares"],
                row["last_income_minor"],
                row["income_total_minor"],
                row["closed_date"],
                row["fast_released_shares"],
                None if row["dividend_method"] is None else DividendMethod(row["dividend_method"]),
            )
        )
    return positions


def holder_keys(table: pa.Table) -> pa.Array:
    """`<distributor>/<trading account>` of each row."""
    keys = pc.binary_join_element_wise(table["distributor_id"], table["trading_account_id"], "/")
    return keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys


def sorted_holders(table: pa.Table) -> pa.Table:
    return table.sort_by(_SORT)


def encode_chunk(table: pa.Table, chunk: int) -> Put:
    """The row of a chunk: its IPC stream compressed whole (LZ4, after its length: one call, where the
    IPC format's own compression pays a frame per column buffer) and the CRC-32 of those bytes."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_table(table.combine_chunks())
    stream = sink.getvalue()
    data = _LENGTH.pack(stream.size) + _CODEC.compress(stream, asbytes=True)
    ensure(
        len(data) <= limits.fundta_position_chunk_bytes_max,
        "a chunk of positions over fundta_position_chunk_bytes_max: the fund needs more holder shards",
    )
    return Put(chunk_key(chunk), {"record": data, "checksum": zlib.crc32(data), "version": 1})


def decode_chunk(row: Row) -> pa.Table:
    """The positions of a chunk row; a blob whose bytes do not match its checksum (torn, or corrupted) is
    an internal error, never read as positions."""
    data = row["record"]
    if not isinstance(data, bytes) or zlib.crc32(data) != row["checksum"]:
        raise internal(f"a chunk of holder positions ({row.as_text('row_key')}) fails its checksum")
    (size,) = _LENGTH.unpack_from(data)
    stream = _CODEC.decompress(data[_LENGTH.size :], decompressed_size=size)
    with pa.ipc.open_stream(stream) as reader:
        return reader.read_all()


# Income


def income_of(shares: int, per_10k: int) -> int:
    """One holder's income of a date, in minor units, truncated (what `income_column` gives each holder)."""
    return shares * per_10k // PER_10K_DIVISOR


def income_column(shares: pa.Array, per_10k: int) -> pa.Array:
    """Each holder's income of a date, in minor units, truncated: shares x per_10k / 10^8, exactly in int64
    as (shares div 10^8) x per_10k + (shares mod 10^8) x per_10k div 10^8."""
    ensure(0 <= per_10k < 2**63 // PER_10K_DIVISOR, "万份收益 out of range")
    whole = pc.divide(shares, PER_10K_DIVISOR)
    rest = pc.subtract(shares, pc.multiply(whole, PER_10K_DIVISOR))
    return pc.add_checked(
        pc.multiply_checked(whole, per_10k), pc.divide(pc.multiply_checked(rest, per_10k), PER_10K_DIVISOR)
    )


def carry_incomes(table: pa.Table, incomes: Sequence[IncomeDay]) -> pa.Table:
    """Every holder's income of the planned dates, each carried forward into shares (the income lot)."""
    if not incomes or table.num_rows == 0:
        return table
    shares = table["shares"].combine_chunks()
    earned = pa.array([0] * table.num_rows, pa.int64())
    for day in incomes:
        income = income_column(shares, day.per_10k)
        shares = pc.add_checked(shares, income)
        earned = pc.add_checked(earned, income)
    columns = {
        "shares": shares,
        "income_lot_shares": pc.add_checked(table["income_lot_shares"], earned),
        "last_income_minor": earned,
        "income_total_minor": pc.add_checked(table["income_total_minor"], earned),
    }
    for name, column in columns.items():
        table = table.set_column(SCHEMA.get_field_index(name), name, column)
    return table


# Storage


@dataclasses.dataclass(frozen=True)
class ShardPositions:
    """The positions of a holder shard, by chunk, and the JSON rows of the layout before, to delete once
    the chunks are written."""

    chunks: list[pa.Table]
    legacy_keys: list[str]


async def read_shard(backend: StorageBackend, partition: PartitionRef) -> ShardPositions:
    """Every position of a holder shard: its chunks, or (before its first day-close of this layout) its
    JSON rows, routed to the chunks they belong to."""
    rows = await _rows(backend, partition, CHUNK)
    legacy = await _rows(backend, partition, LEGACY_POSITION, any_only=bool(rows))
    if rows:
        ensure(len(rows) == limits.fundta_position_chunks, "a holder shard has every chunk")
        if legacy:
            legacy = await _rows(backend, partition, LEGACY_POSITION)
        return ShardPositions([decode_chunk(row) for row in rows], [row.as_text("row_key") for row in legacy])
    table = table_of([decode(row["record"], Position) for row in legacy])
    return ShardPositions(routed(table), [row.as_text("row_key") for row in legacy])


async def read_position(backend: StorageBackend, partition: PartitionRef, holder: str) -> Position | None:
    """One holder's position: one chunk read (at most `fundta_position_chunk_bytes_max` bytes), or its
    JSON row before the shard's first day-close of this layout."""
    row = await backend.read_row(partition, chunk_key(chunk_of(holder)))
    if row is None:
        legacy = await backend.read_row(partition, (LEGACY_POSITION, holder))
        return decode(legacy["record"], Position) if legacy is not None else None
    table = decode_chunk(row)
    distributor_id, _, trading_account_id = holder.partition("/")
    mask = pc.and_(
        pc.equal(table["distributor_id"], distributor_id),
        pc.equal(table["trading_account_id"], trading_account_id),
    )
    found = positions_of(table.filter(mask))
    return found[0] if found else None


def routed(table: pa.Table) -> list[pa.Table]:
    """The rows of `table` in the chunks they belong to, each sorted by holder."""
    chunks = pa.array([chunk_of(key) for key in holder_keys(table).to_pylist()], pa.int64())
    chunk_count = limits.fundta_position_chunks
    return [sorted_holders(table.filter(pc.equal(chunks, chunk))) for chunk in range(chunk_count)]


async def register(backend: StorageBackend, partition: PartitionRef, table: pa.Table) -> None:
    """Write a shard's positions (every holder of the shard) as a day-close leaves them, in one batch:
    bulk loading (the bench's million holders, tests) takes the day-close's columnar path."""
    await backend.write(Batch(partition, tuple(chunk_puts(routed(table)))))


def chunk_puts(chunks: Sequence[pa.Table]) -> list[Put]:
    """The rows of every chunk of a shard."""
    ensure(len(chunks) == limits.fundta_position_chunks, "every chunk of a shard is written")
    return [encode_chunk(table, chunk) for chunk, table in enumerate(chunks)]


async def delete_legacy(backend: StorageBackend, partition: PartitionRef, keys: Sequence[str]) -> None:
    """Delete the JSON positions the chunks replaced (after the chunks are written: a crash before this
    leaves rows no reader looks at, which the next day-close of the shard deletes)."""
    step = limits.batch_rows_max
    for start in range(0, len(keys), step):
        deletes = tuple(Delete((LEGACY_POSITION, key)) for key in keys[start : start + step])
        await backend.write(Batch(partition, deletes=deletes))


async def _rows(
    backend: StorageBackend, partition: PartitionRef, kind: str, *, any_only: bool = False
) -> list[Row]:
    """Every row of one kind of a shard, page by page (`any_only`: at most one)."""
    limit = 1 if any_only else limits.storage_page_rows_max
    query = RowQuery(partition, Bound((kind,), True), Bound((kind,), True), limit=limit)
    rows: list[Row] = []
    for _ in range(limits.fundta_shard_pages_max):
        page = await backend.read_page(query)
        rows += page.rows
        if page.next_after is None or any_only:
            return rows
        query = query.after(page.next_after)
    raise internal(f"a holder shard of more than {limits.fundta_shard_pages_max} pages")
