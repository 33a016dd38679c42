"""Input the protos do not describe, sent with raw gRPC: bodies that are not protobuf get INVALID_ARGUMENT
(MALFORMED_REQUEST) on every kind of method, and errors about huge values still fit gRPC's metadata
limits (with a BadRequest cut to its bound)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from jubao.errors import FieldViolation, Reason
from jubao.payments.v1 import payments_pb2 as pb
from jubao.payments.v1 import payments_pb2_grpc as pb_grpc
from jubao_server import limits
from jubao_server.errors import ApiError, ErrorCode, invalid_fields

from tests.platform.errors import expect_error
from tests.platform.harness import Running, bearer

NOT_PROTOBUF = b"\xff\xff\xff"
# gRPC's default limit on the metadata a client accepts.
METADATA_MAX_BYTES = 8 * 1024
# What the bounds of limits.py promise, with room to spare.
STATUS_MAX_BYTES = 6 * 1024


async def test_a_body_that_is_not_protobuf_is_invalid_argument(
    running: Running, keys: dict[str, str]
) -> None:
    bank = bearer(keys["demo-bank"])
    for method in ("/jubao.meta.v1.MetaService/Ping", "/jubao.payments.v1.PaymentService/GetAccount"):
        unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = running.channel.unary_unary(method)
        error = await expect_error(
            unary(NOT_PROTOBUF, metadata=bank), grpc.StatusCode.INVALID_ARGUMENT, Reason.MALFORMED_REQUEST
        )
        assert "DecodeError" not in error.message and "class" not in error.message
    stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = running.channel.unary_stream(
        "/jubao.payments.v1.PaymentService/WatchEvents"
    )

    async def watch() -> None:
        async for _ in stream(NOT_PROTOBUF, metadata=bank):
            raise AssertionError("a malformed request streamed a response")

    await expect_error(watch(), grpc.StatusCode.INVALID_ARGUMENT, Reason.MALFORMED_REQUEST)
    admin: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = running.channel.unary_unary(
        "/jubao.admin.v1.TenantAdmin/ListTenants"
    )
    await expect_error(
        admin(NOT_PROTOBUF, metadata=bank), grpc.StatusCode.PERMISSION_DENIED, Reason.OPERATOR_ONLY
    )


async def test_a_huge_bad_value_gets_its_error_whole(running: Running, keys: dict[str, str]) -> None:
    """A 10,000-character currency used to make a 20 KB grpc-message, which clients refuse."""
    payments = pb_grpc.PaymentServiceStub(running.channel)
    account = pb.Account(
        currency_code="€" * 10_000, kind=pb.ACCOUNT_KIND_CUSTOMER, display_name="\x00" * 10_000
    )
    call = payments.OpenAccount(pb.OpenAccountRequest(account=account), metadata=bearer(keys["demo-bank"]))
    error = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, Reason.UNKNOWN_CURRENCY)
    assert {v.field for v in error.field_violations} == {"account.currency_code", "account.display_name"}
    assert len(error.message.encode()) <= limits.error_message_bytes_max
    trailers = tuple(await call.trailing_metadata() or ())
    assert sum(len(k) + len(v) for k, v in trailers) < METADATA_MAX_BYTES


def test_every_status_fits_the_metadata_limits_whatever_it_holds() -> None:
    """The worst a status can hold: the most and longest violations, metadata and message, in characters
    that percent-encoding triples."""
    huge = "账" * 20_000
    violations = tuple(FieldViolation(f"requests[{i}].{huge}", huge) for i in range(5_000))
    error = invalid_fields(violations)
    error.metadata = {f"key{i}": huge for i in range(100)}
    status = error.to_status()
    bad_request = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad_request)
    assert len(bad_request.field_violations) == limits.error_field_violations_max
    assert status.message.startswith("5000 fields are invalid, the first 10: requests[0]")
    message_on_wire = 3 * len(status.message.encode())
    details_on_wire = 4 * (status.ByteSize() + 2) // 3
    assert message_on_wire + details_on_wire < STATUS_MAX_BYTES
    plain = ApiError(ErrorCode.NOT_FOUND, Reason.ACCOUNT_NOT_FOUND, huge).to_status()
    assert len(plain.message.encode()) <= limits.error_message_bytes_max and plain.message.endswith("...")
