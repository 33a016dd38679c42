"""Assertions on rich gRPC errors, decoded the way the SDK decodes them."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from jubao.errors import ERROR_DOMAIN, JubaoError, error_from_rpc


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> JubaoError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = error_from_rpc(caught.value)
    assert error.code.name == code.name, error
    assert error.reason == reason, error
    assert error.domain == ERROR_DOMAIN
    return error
