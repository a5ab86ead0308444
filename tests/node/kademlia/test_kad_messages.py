"""node/kademlia/messages.py: round trips, address validation, fuzzed decoding."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import DecodeError
from node.kademlia import messages as m
from node.wire import decode, encode

PEER = m.PeerInfo(bytes(32), (m.Address("192.0.2.1", 4001), m.Address("2001:db8::1", 4001)))
RECORD = m.ProviderRecord(
    key=bytes(32),
    node_id=bytes(32),
    public_key=bytes(32),
    addrs=PEER.addrs,
    payload=b"ask",
    seq=1,
    expiry=2,
    signature=bytes(64),
)
SAMPLES = [
    m.Ping((m.Address("192.0.2.1", 1),)),
    m.FindNode((), bytes(32)),
    m.AddProvider(PEER.addrs, RECORD),
    m.GetProviders(PEER.addrs, bytes(32)),
    m.PutValue(PEER.addrs, b"manifest", 5),
    m.GetValue(PEER.addrs, bytes(32)),
    m.Pong(),
    m.Nodes((PEER,) * 20),
    m.Stored(False, "key full"),
    m.Providers((RECORD,), (PEER,)),
    m.Value(None, 0, (PEER,)),
    m.Value(b"v", 9, ()),
    m.Error("unknown request"),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda x: type(x).__name__)
def test_round_trip(msg: object) -> None:
    assert decode(encode(msg), m.PROTOCOL) == msg


def test_every_request_has_a_reply_type() -> None:
    for req, rep in m.REPLY_TYPE.items():
        assert "sender" in req.__dataclass_fields__
        assert rep in (m.Pong, m.Nodes, m.Stored, m.Providers, m.Value)


@pytest.mark.parametrize("host", ["example.com", "1.2.3", "", "::g"])
def test_host_names_and_garbage_are_not_addresses(host: str) -> None:
    with pytest.raises(ValueError):
        m.Address(host, 1)
    raw = msgpack.packb([1, "kad", 10, [[[host, 1]]]])
    with pytest.raises(DecodeError):
        decode(raw, m.PROTOCOL)


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_ports_out_of_range(port: int) -> None:
    raw = msgpack.packb([1, "kad", 10, [[["192.0.2.1", port]]]])
    with pytest.raises(DecodeError):
        decode(raw, m.PROTOCOL)


def test_too_many_contacts_or_oversized_payload() -> None:
    plain = msgpack.unpackb(encode(m.Nodes((PEER,))), raw=False)
    plain[3][0] = plain[3][0] * 21
    with pytest.raises(DecodeError):
        decode(msgpack.packb(plain, use_bin_type=True), m.PROTOCOL)
    rec = msgpack.unpackb(encode(m.AddProvider((), RECORD)), raw=False)
    rec[3][1][4] = b"x" * (m.MAX_PAYLOAD + 1)
    with pytest.raises(DecodeError):
        decode(msgpack.packb(rec, use_bin_type=True), m.PROTOCOL)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data, m.PROTOCOL)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_messages_only_raise_decode_error(msg: object, data: st.DataObject) -> None:
    raw = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        out = decode(bytes(raw), m.PROTOCOL)
    except DecodeError:
        return
    assert type(out).__module__ == m.__name__
