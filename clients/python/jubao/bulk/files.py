"""Where bulk rows come from and go to: a `pyarrow.Table`, an iterator of record batches, or a file
(Parquet, CSV, Arrow IPC: by its suffix). CSV columns are read with the dataset's types, so an amount is
an int64 of minor units, never a float."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, TypeAlias

import pyarrow as pa

# A pyarrow.Table, a RecordBatch, an iterable of RecordBatches, or a file's path (pyarrow is untyped).
Source: TypeAlias = Any
FORMATS: Final = {".parquet": "parquet", ".csv": "csv", ".arrow": "ipc", ".arrows": "ipc", ".ipc": "ipc"}


def file_format(path: Path) -> str:
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise ValueError(f"{path}: unknown format (use {', '.join(sorted(FORMATS))})")
    return found


def batches_of(source: Source, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The source's record batches (files read batch by batch, never whole into memory)."""
    if isinstance(source, pa.Table):
        yield from source.to_batches()
    elif isinstance(source, pa.RecordBatch):
        yield source
    elif isinstance(source, str | Path):
        yield from _read_file(Path(source), schema)
    else:
        yield from source


def _read_file(path: Path, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    kind = file_format(path)
    if kind == "parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415 (only for Parquet files)

        yield from pq.ParquetFile(path).iter_batches()
    elif kind == "csv":
        from pyarrow import csv  # noqa: PLC0415 (only for CSV files)

        types = {field.name: field.type for field in schema}
        yield from csv.open_csv(path, convert_options=csv.ConvertOptions(column_types=types))
    else:
        with pa.OSFile(str(path), "rb") as stream:
            yield from _ipc_batches(stream)


def _ipc_batches(stream: pa.NativeFile) -> Iterator[pa.RecordBatch]:
    """An Arrow IPC stream or file."""
    try:
        reader = pa.ipc.open_file(stream)
    except pa.ArrowInvalid:
        stream.seek(0)
        yield from pa.ipc.open_stream(stream)
        return
    for index in range(reader.num_record_batches):
        yield reader.get_batch(index)


def write_batches(batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: Path) -> int:
    """Write the batches to `path` in the format of its suffix; the rows written."""
    kind = file_format(path)
    rows = 0
    if kind == "parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415

        with pq.ParquetWriter(path, schema) as parquet:
            for batch in batches:
                parquet.write_batch(batch)
                rows += batch.num_rows
    elif kind == "csv":
        from pyarrow import csv  # noqa: PLC0415

        with csv.CSVWriter(path, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
    else:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
    return rows
