"""AIP-158 paging helpers: bounded page sizes and opaque page tokens bound to one list method."""

from __future__ import annotations

import base64
import binascii

import grpc
from jubao.errors import Reason

from jubao_server import limits
from jubao_server.errors import ApiError, invalid


def page_size(requested: int) -> int:
    if requested < 0:
        raise invalid("page_size", "must not be negative")
    return min(requested or limits.page_size_default, limits.page_size_max)


def encode_token(method: str, after: str | None) -> str:
    if after is None:
        return ""
    return base64.urlsafe_b64encode(f"{method}\n{after}".encode()).decode()


def decode_token(method: str, token: str) -> str | None:
    """The position a token encodes, or None for the first page; INVALID_ARGUMENT for a foreign token."""
    if not token:
        return None
    if len(token) > limits.page_token_length_max:
        raise _bad_token()
    try:
        kind, _, after = base64.urlsafe_b64decode(token.encode()).decode().partition("\n")
    except (binascii.Error, UnicodeDecodeError):
        raise _bad_token() from None
    if kind != method or not after:
        raise _bad_token()
    return after


def _bad_token() -> ApiError:
    return ApiError(
        grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_PAGE_TOKEN, "page_token is not valid for this call"
    )
