"""`google.protobuf.Timestamp` fields to and from milliseconds since the epoch.

Every field of a request that takes a Timestamp goes through `time_ms`: a Timestamp whose nanos are
outside 0..999,999,999 or whose seconds are outside 0001-01-01..9999-12-31 UTC (the range of the type)
is a field violation naming the field, never an exception from the protobuf runtime.
"""

from __future__ import annotations

from typing import Final

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from jubao.reasons import FieldViolation

# 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range of google.protobuf.Timestamp.
SECONDS_MIN: Final = -62_135_596_800
SECONDS_MAX: Final = 253_402_300_799
NANOS_MAX: Final = 999_999_999


def timestamp(ms: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


def time_ms(
    message: Message, field: str, violations: list[FieldViolation], *, required: str = ""
) -> int | None:
    """The Timestamp `field` of `message` in milliseconds since the epoch, or None: when it is unset
    (a violation with the description `required`, when given) or out of range (a violation)."""
    if not message.HasField(field):
        if required:
            violations.append(FieldViolation(field, required))
        return None
    stamp: Timestamp = getattr(message, field)
    if not (SECONDS_MIN <= stamp.seconds <= SECONDS_MAX and 0 <= stamp.nanos <= NANOS_MAX):
        violations.append(
            FieldViolation(field, "a valid time: 0001-01-01 to 9999-12-31 UTC, nanos 0 to 999999999")
        )
        return None
    return stamp.seconds * 1000 + stamp.nanos // 1_000_000
