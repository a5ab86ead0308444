"""Tests of node.wire: schema checks, limits, and fuzzing (only DecodeError may escape)."""

import contextlib
from dataclasses import dataclass
from typing import Annotated

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import DecodeError, LocalError
from node.wire import MAX_MESSAGE, WIRE_VERSION, ExactLen, MaxLen, decode, encode, message


@message(protocol="test-wire", tag=1)
@dataclass(frozen=True)
class Inner:
    key: Annotated[bytes, ExactLen(4)]
    weight: float


@message(protocol="test-wire", tag=2)
@dataclass(frozen=True)
class Outer:
    name: Annotated[str, MaxLen(16)]
    count: int
    flag: bool
    blob: Annotated[bytes, MaxLen(32)]
    note: str | None
    inners: Annotated[tuple[Inner, ...], MaxLen(3)]
    ids: tuple[int, ...]


@message(protocol="test-wire", tag=3)
@dataclass(frozen=True)
class Positive:
    value: int

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ValueError("value must be positive")


@message(protocol="test-wire-other", tag=1)
@dataclass(frozen=True)
class Other:
    x: int


SAMPLE = Outer(
    name="depot",
    count=-7,
    flag=True,
    blob=b"\x00\x01",
    note=None,
    inners=(Inner(b"abcd", 0.5), Inner(b"efgh", 2)),
    ids=(1, 2, 3),
)


def raw(*items):
    return msgpack.packb(list(items), use_bin_type=True)


def test_roundtrip():
    assert decode(encode(SAMPLE)) == SAMPLE
    assert decode(encode(SAMPLE), "test-wire") == SAMPLE
    assert decode(encode(Positive(3))) == Positive(3)


def test_protocol_filter():
    with pytest.raises(DecodeError, match="expected a 'test-wire' message"):
        decode(encode(Other(1)), "test-wire")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        raw(WIRE_VERSION, "test-wire", 2),  # three items
        raw(2, "test-wire", 3, [1]),  # version
        raw(True, "test-wire", 3, [1]),  # a bool is not version 1
        raw(WIRE_VERSION, "test-wire", 99, [1]),  # unknown tag
        raw(WIRE_VERSION, 5, 3, [1]),  # protocol not a string
        raw(WIRE_VERSION, "test-wire", True, [1]),  # tag is a bool
        raw(WIRE_VERSION, "test-wire", 3, [1, 2]),  # field count
        raw(WIRE_VERSION, "test-wire", 3, ["1"]),  # field type
        raw(WIRE_VERSION, "test-wire", 3, [True]),  # bool is not int
        raw(WIRE_VERSION, "test-wire", 3, [0]),  # __post_init__ refuses
        raw(WIRE_VERSION, "test-wire", 1, [b"abc", 1.0]),  # ExactLen
        raw(WIRE_VERSION, "test-wire", 1, [b"abcd", "x"]),  # float expected
        raw(WIRE_VERSION, "test-wire", 2, ["x" * 17, 0, True, b"", None, [], []]),  # MaxLen str
        raw(WIRE_VERSION, "test-wire", 2, ["x", 0, True, bytes(33), None, [], []]),  # MaxLen bytes
        raw(WIRE_VERSION, "test-wire", 2, ["x", 0, 1, b"", None, [], []]),  # int is not bool
        raw(WIRE_VERSION, "test-wire", 2, ["x", 0, True, b"", 5, [], []]),  # optional str
        raw(WIRE_VERSION, "test-wire", 2, ["x", 0, True, b"", None, [[b"abcd", 1.0]] * 4, []]),
        raw(WIRE_VERSION, "test-wire", 2, ["x", 0, True, b"", None, [[b"abcd"]], []]),  # nested
        raw(WIRE_VERSION, "test-wire", 2, ["x", 0, True, b"", None, "notalist", []]),
        raw(WIRE_VERSION, "test-wire", 3, [1]) + b"\x00",  # trailing bytes
        msgpack.packb({"a": 1}),
    ],
)
def test_malformed_is_decode_error(data):
    with pytest.raises(DecodeError):
        decode(data)


def test_size_limit():
    with pytest.raises(DecodeError, match="exceeds"):
        decode(bytes(MAX_MESSAGE + 1))
    with pytest.raises(LocalError):
        encode(Outer("x", 0, True, b"", "y" * MAX_MESSAGE, (), ()))


def test_registration_errors():
    with pytest.raises(LocalError, match="taken"):

        @message(protocol="test-wire", tag=1)
        @dataclass(frozen=True)
        class Clash:
            x: int

    with pytest.raises(LocalError, match="unsupported"):

        @message(protocol="test-wire", tag=50)
        @dataclass(frozen=True)
        class WithDict:
            x: dict[str, int]

    with pytest.raises(LocalError, match="dataclass"):
        message(protocol="test-wire", tag=51)(int)
    with pytest.raises(LocalError, match="not a registered"):
        encode(object())


# -- fuzz ----------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    with contextlib.suppress(DecodeError):
        decode(data)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.binary(min_size=1, max_size=4))
def test_fuzz_mutated_encoding(pos, junk):
    data = bytearray(encode(SAMPLE))
    pos %= len(data)
    data[pos : pos + len(junk)] = junk
    try:
        decoded = decode(bytes(data))
    except DecodeError:
        return
    assert isinstance(decoded, Outer | Inner | Positive | Other)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack can carry
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([1, 2, 3]), msgpack_values)
def test_fuzz_structured_fields(tag, fields):
    data = raw(WIRE_VERSION, "test-wire", tag, fields)
    try:
        decoded = decode(data)
    except DecodeError:
        return
    assert type(decoded) in (Inner, Outer, Positive)
