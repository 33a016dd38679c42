"""The SDK's keyed tokens of join keys: HMAC-SHA256 under the collaboration's secret, on the member's
machine."""

from __future__ import annotations

import hashlib
import hmac

import pyarrow as pa
import pytest
from jubao.bulk.cocreation import normalize, token, tokenize

SECRET = b"agreed-out-of-band-0123456789abcdef"


def test_a_token_is_hmac_sha256_of_the_normalized_key() -> None:
    expected = hmac.new(SECRET, b"13800138000", hashlib.sha256).hexdigest()
    assert token(SECRET, " 13800138000 ") == expected
    assert token(SECRET, "\uff21\uff22\uff23") == token(SECRET, "abc")  # fullwidth ABC: NFKC
    assert normalize("  Order-7 ") == "order-7"


def test_without_the_secret_the_same_key_gives_an_unrelated_token() -> None:
    assert token(SECRET, "13800138000") != token(SECRET + b"x", "13800138000")
    assert token(SECRET, "13800138000") != hashlib.sha256(b"13800138000").hexdigest()


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        token(b"short", "13800138000")


def test_tokenize_replaces_the_join_columns_only() -> None:
    table = pa.table({"phone": ["138", "139", "138"], "orders": [1, 2, 3]})
    tokens = tokenize(table, ["phone"], SECRET)
    phones = tokens.column("phone").to_pylist()
    assert phones[0] == phones[2] != phones[1]
    assert all(len(t) == 64 for t in phones)
    assert "138" not in phones
    assert tokens.column("orders").to_pylist() == [1, 2, 3]


def test_a_missing_join_key_is_refused() -> None:
    with pytest.raises(ValueError, match="nulls"):
        tokenize(pa.table({"phone": ["138", None]}), ["phone"], SECRET)
