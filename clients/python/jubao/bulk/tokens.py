"""Keyed tokens of join keys (see `jubao.bulk.cocreation`), apart from the Flight client: the gRPC server
seeds its demo with them, and must not load Arrow Flight (apache/arrow#13300)."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Iterable, Sequence

import pyarrow as pa

# The shortest collaboration secret accepted: 128 bits.
SECRET_BYTES_MIN = 16


def normalize(value: str) -> str:
    """A join key as every member keys it: NFKC, stripped, lowercase."""
    return unicodedata.normalize("NFKC", value).strip().lower()


def token(secret: bytes, value: str) -> str:
    """The keyed token of one join key value: HMAC-SHA256 over its normalized UTF-8, lowercase hex."""
    if len(secret) < SECRET_BYTES_MIN:
        raise ValueError(f"a collaboration secret has at least {SECRET_BYTES_MIN} bytes")
    return hmac.new(secret, normalize(value).encode(), hashlib.sha256).hexdigest()


def tokenize(table: pa.Table, columns: Sequence[str], secret: bytes) -> pa.Table:
    """`table` with each of `columns` replaced by the tokens of its values (as strings; nulls refused)."""
    for name in columns:
        column = table.column(name)
        if column.null_count:
            raise ValueError(f"column {name} has nulls: every row needs its join key")
        values: Iterable[object] = column.to_pylist()
        tokens = pa.array([token(secret, str(value)) for value in values], pa.string())
        table = table.set_column(
            table.schema.get_field_index(name), pa.field(name, pa.string(), nullable=False), tokens
        )
    return table
