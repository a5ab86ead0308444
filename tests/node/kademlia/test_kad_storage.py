"""node/kademlia/storage.py: replacement by seq, limits, expiry, value checks."""

from __future__ import annotations

import hashlib
import random

from node.identity import NodeKey
from node.kademlia.config import KademliaConfig
from node.kademlia.messages import Address, ProviderRecord
from node.kademlia.records import sign_record
from node.kademlia.storage import RecordStore, StoreOutcome

NOW = 1_800_000_000.0
KEYS = [NodeKey.from_seed(bytes([i]) * 32) for i in range(1, 6)]
ADDRS = (Address("192.0.2.1", 4001),)


def rec(
    signer: int,
    key: bytes = bytes(32),
    seq: int = 1,
    payload: bytes = b"p",
    expiry: float = NOW + 60,
) -> ProviderRecord:
    return sign_record(KEYS[signer], key, addrs=ADDRS, payload=payload, seq=seq, expiry=int(expiry))


def test_newer_seq_replaces_older_and_stale_is_kept_out() -> None:
    s = RecordStore(KademliaConfig())
    assert s.put_record(rec(0, seq=5)) is StoreOutcome.STORED
    assert s.put_record(rec(0, seq=5)) is StoreOutcome.UNCHANGED
    assert s.put_record(rec(0, seq=4, payload=b"old")) is StoreOutcome.STALE
    assert s.put_record(rec(0, seq=5, payload=b"same seq, other bytes")) is StoreOutcome.STALE
    assert s.put_record(rec(0, seq=6, payload=b"new")) is StoreOutcome.REPLACED
    [r] = s.get_records(bytes(32), NOW, 10, random.Random())
    assert r.payload == b"new" and s.record_count == 1


def test_limits_per_key_per_signer_and_total() -> None:
    s = RecordStore(KademliaConfig(max_records_per_key=2, max_records_per_signer=2, max_records=3))
    assert s.put_record(rec(0)).ok and s.put_record(rec(1)).ok
    assert s.put_record(rec(2)) is StoreOutcome.KEY_FULL
    k2, k3 = b"\x02" * 32, b"\x03" * 32
    assert s.put_record(rec(0, key=k2)).ok
    assert s.put_record(rec(0, key=k3)) is StoreOutcome.SIGNER_FULL
    assert s.put_record(rec(3, key=k3)) is StoreOutcome.STORE_FULL
    assert s.record_count == 3


def test_byte_limit() -> None:
    s = RecordStore(KademliaConfig(max_store_bytes=2500))
    assert s.put_record(rec(0, payload=b"x" * 2000)).ok
    assert s.put_record(rec(1, payload=b"x" * 2000)) is StoreOutcome.STORE_FULL


def test_expiry_drops_records_and_values_and_frees_bytes() -> None:
    s = RecordStore(KademliaConfig())
    s.put_record(rec(0, expiry=NOW + 10))
    s.put_record(rec(1, expiry=NOW + 100))
    v = b"manifest"
    s.put_value(hashlib.sha256(v).digest(), v, NOW + 10, NOW)
    assert len(s.get_records(bytes(32), NOW + 20, 10, random.Random())) == 1  # filtered
    assert s.expire(NOW + 20) == 2
    assert s.record_count == 1 and not s.values
    s.expire(NOW + 200)
    assert s.bytes == 0


def test_sample_when_many_records() -> None:
    s = RecordStore(KademliaConfig())
    for i in range(5):
        s.put_record(rec(i))
    got = s.get_records(bytes(32), NOW, 3, random.Random(1))
    assert len(got) == 3 and len({r.node_id for r in got}) == 3


def test_values_are_checked_against_their_key() -> None:
    s = RecordStore(KademliaConfig())
    assert s.put_value(bytes(32), b"not the preimage", NOW + 10, NOW) is StoreOutcome.BAD_VALUE
    v = b"manifest"
    k = hashlib.sha256(v).digest()
    assert s.put_value(k, v, NOW + 10, NOW) is StoreOutcome.STORED
    assert s.put_value(k, v, NOW + 50, NOW) is StoreOutcome.REPLACED  # later expiry
    stored = s.get_value(k, NOW)
    assert stored is not None and stored.expiry == NOW + 50


def test_value_republish_is_postponed_by_a_store() -> None:
    cfg = KademliaConfig()
    s = RecordStore(cfg)
    v = b"manifest"
    k = hashlib.sha256(v).digest()
    s.put_value(k, v, NOW + 10_000, NOW)
    assert s.values_to_republish(NOW + cfg.value_republish_interval - 1) == []
    s.put_value(k, v, NOW + 10_000, NOW + 1000)  # someone stored it again
    assert s.values_to_republish(NOW + cfg.value_republish_interval) == []
    assert len(s.values_to_republish(NOW + 1000 + cfg.value_republish_interval)) == 1
