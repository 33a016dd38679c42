"""Hypothesis strategies for any protobuf request, built from its descriptor: random and adversarial
values of every field (extreme integers, unknown enum values, long and odd strings, out-of-range
timestamps, huge repeated fields), plus raw bodies that are not a message at all.

Most strings are drawn from `Known`, the names a test set up (accounts, currencies, ids, page tokens),
chosen by the field's name (`account_id`, `tenant_id`, ...), so that calls reach past validation into
the ledger and the stores; the others are odd, random or huge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

INT32: Final = (-(2**31), 2**31 - 1)
INT64: Final = (-(2**63), 2**63 - 1)
UINT32: Final = (0, 2**32 - 1)
UINT64: Final = (0, 2**64 - 1)
# Nested messages deeper than this are left unset (the API's requests are shallow).
DEPTH_MAX: Final = 4
# Lengths of the oversized strings and repeated fields sent now and then.
LONG_TEXT_LENGTHS: Final = (65, 257, 1_025, 10_000)
HUGE_LIST_LENGTHS: Final = (17, 501, 1_001, 2_001)
# Bodies stay under the server's message size: gRPC itself refuses larger ones (RESOURCE_EXHAUSTED)
# before any code of the service runs.
BODY_MAX_BYTES: Final = 1024 * 1024
# Out of ten strings, this many come from the known names.
KNOWN_IN_TEN: Final = 6
ODD_TEXTS: Final = ("", " ", "\x00", "\n", "é", "账户", "🀄", "a" * 64, "a" * 65, "../..", "%s%n", "' OR 1=1")

_T = FieldDescriptor
_INTEGER_RANGES: Final = {
    _T.TYPE_INT32: INT32,
    _T.TYPE_SINT32: INT32,
    _T.TYPE_SFIXED32: INT32,
    _T.TYPE_INT64: INT64,
    _T.TYPE_SINT64: INT64,
    _T.TYPE_SFIXED64: INT64,
    _T.TYPE_UINT32: UINT32,
    _T.TYPE_FIXED32: UINT32,
    _T.TYPE_UINT64: UINT64,
    _T.TYPE_FIXED64: UINT64,
}
# Timestamps: now-ish, and every kind of out-of-range value.
_SECONDS: Final = (0, 1, -1, 1_800_000_000, 253_402_300_799, 253_402_300_800, -62_135_596_801, *INT64)
_NANOS: Final = (0, 999_999_999, 1_000_000_000, 2_000_000_000, -1, *INT32)

# Field name (or its ending) -> the strings known for it; "" for any other string field.
Known = Mapping[str, Sequence[str]]


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = (0, 1, -1, 16, 17, 500, 501, 1_000, 1_001, low, high, low + 1, high - 1)
    return st.one_of(st.sampled_from(sorted({v for v in edges if low <= v <= high})), st.integers(low, high))


def texts(known: Sequence[str]) -> st.SearchStrategy[str]:
    long = st.builds(
        lambda n, c: c * n, st.sampled_from(LONG_TEXT_LENGTHS), st.sampled_from(["x", "€", "\u202e"])
    )
    others = (st.sampled_from(ODD_TEXTS), st.text(max_size=40), long)
    return st.integers(0, 9).flatmap(
        lambda pick: st.sampled_from(known) if pick < KNOWN_IN_TEN else others[pick % len(others)]
    )


class Requests:
    """Strategies for the request messages of one API."""

    def __init__(self, known: Known, small: bool = False) -> None:
        self._known = known
        # Small values only (known strings, short lists): the elements of the huge lists.
        self._small = small

    def message(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        cls = GetMessageClass(descriptor)
        if descriptor.full_name == "google.protobuf.Timestamp":
            return st.builds(
                lambda s, n: cls(seconds=s, nanos=n), st.sampled_from(_SECONDS), st.sampled_from(_NANOS)
            )
        fields = {
            field.name: self._field(field, depth)
            for field in descriptor.fields
            if field.type != _T.TYPE_MESSAGE or depth < DEPTH_MAX
        }
        return st.fixed_dictionaries({}, optional=fields).map(lambda values: _build(cls, values))

    def body(self, descriptor: Descriptor) -> st.SearchStrategy[bytes]:
        """Serialized requests, or bytes that are mostly not a message at all."""
        garbage = st.one_of(
            st.binary(max_size=64),
            st.sampled_from([b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x08", b"\x12\x05ab", b"\x0b" * 40]),
        )
        serialized = self.message(descriptor).map(lambda m: m.SerializeToString())
        return st.one_of(serialized.filter(lambda body: len(body) <= BODY_MAX_BYTES), garbage)

    def _field(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        single = self._single(field, depth)
        if not field.is_repeated:
            return single
        if field.type == _T.TYPE_MESSAGE and _message_type(field).GetOptions().map_entry:
            return st.just([])
        if self._small:
            return st.lists(single, max_size=2)
        element = Requests(self._known, small=True)._single(field, depth)
        huge = st.builds(lambda n, v: [v] * n, st.sampled_from(HUGE_LIST_LENGTHS), element)
        return st.one_of(st.lists(single, max_size=4), huge)

    def _single(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        kind = field.type
        if kind in _INTEGER_RANGES:
            return integers(*_INTEGER_RANGES[kind])
        if kind == _T.TYPE_ENUM:
            numbers = [v.number for v in field.enum_type.values] if field.enum_type is not None else [0]
            return st.one_of(st.sampled_from(numbers), integers(*INT32))
        if kind == _T.TYPE_BOOL:
            return st.booleans()
        if kind in (_T.TYPE_DOUBLE, _T.TYPE_FLOAT):
            return st.floats(width=64 if kind == _T.TYPE_DOUBLE else 32)
        if kind == _T.TYPE_STRING:
            known = self._known_for(field.name)
            return st.sampled_from(known) if self._small else texts(known)
        if kind == _T.TYPE_BYTES:
            return st.one_of(st.binary(max_size=64), st.sampled_from([b"\x00" * 1_025, b"\xff" * 4_096]))
        return self.message(_message_type(field), depth + 1)

    def _known_for(self, name: str) -> Sequence[str]:
        ending = max((e for e in self._known if e and name.endswith(e)), key=len, default="")
        return self._known[ending]


def _message_type(field: FieldDescriptor) -> Descriptor:
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def _build(cls: Callable[[], Message], values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            getattr(message, name).extend(value)
        elif field.type == _T.TYPE_MESSAGE:
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message
