"""node/kademlia/records.py: signing, verification, policy; fuzzed verification."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import BadSignature, LocalError, RemoteError
from node.identity import NodeKey
from node.kademlia.messages import Address, ProviderRecord
from node.kademlia.records import (
    ASKS_KEY,
    RecordError,
    StakedSigners,
    allow_all,
    sign_record,
    signing_bytes,
    verify_record,
)

NOW = 1_800_000_000.0
TTL = 48 * 3600.0
KEY = NodeKey.from_seed(bytes(range(32)))
OTHER = NodeKey.from_seed(bytes(range(1, 33)))
ADDRS = (Address("192.0.2.1", 4001),)


def record(**kw: object) -> ProviderRecord:
    args: dict[str, object] = {
        "addrs": ADDRS,
        "payload": b"ask",
        "seq": 7,
        "expiry": int(NOW + 3600),
    }
    args.update(kw)
    return sign_record(KEY, ASKS_KEY, **args)  # type: ignore[arg-type]


def test_asks_key_is_the_well_known_hash() -> None:
    assert hashlib.sha256(b"depot/asks/v1").digest() == ASKS_KEY


def test_valid_record_verifies() -> None:
    verify_record(record(), NOW, TTL, allow_all)


def test_signing_bytes_are_domain_separated_and_unambiguous() -> None:
    base = {
        "key": ASKS_KEY,
        "node_id": KEY.node_id,
        "public_key": KEY.public_key,
        "seq": 1,
        "expiry": 2,
    }
    a = signing_bytes(addrs=(Address("1.2.3.4", 5),), payload=b"", **base)  # type: ignore[arg-type]
    b = signing_bytes(addrs=(), payload=b"\x07" + b"1.2.3.4" + b"\x00\x05", **base)  # type: ignore[arg-type]
    assert a != b
    assert a.startswith(b"depot/kad/provider-record/v1\x00")


@pytest.mark.parametrize(
    "change",
    [
        {"payload": b"cheaper ask"},
        {"seq": 8},
        {"expiry": int(NOW + 7200)},
        {"addrs": (Address("198.51.100.1", 4001),)},
        {"key": bytes(32)},
    ],
)
def test_any_change_breaks_the_signature(change: dict[str, object]) -> None:
    forged = dataclasses.replace(record(), **change)  # type: ignore[arg-type]
    with pytest.raises(BadSignature):
        verify_record(forged, NOW, TTL, allow_all)


def test_record_for_someone_elses_key_is_refused() -> None:
    # Claims OTHER's node id but carries (and is signed by) KEY's public key.
    forged = dataclasses.replace(record(), node_id=OTHER.node_id)
    with pytest.raises(BadSignature, match="hash of its public key"):
        verify_record(forged, NOW, TTL, allow_all)
    # OTHER's public key and node id, signature by KEY.
    swapped = dataclasses.replace(record(), node_id=OTHER.node_id, public_key=OTHER.public_key)
    with pytest.raises(BadSignature):
        verify_record(swapped, NOW, TTL, allow_all)


def test_expired_and_far_future_records_are_refused() -> None:
    with pytest.raises(RecordError, match="expired"):
        verify_record(record(expiry=int(NOW)), NOW, TTL, allow_all)
    with pytest.raises(RecordError, match="too far"):
        verify_record(record(expiry=int(NOW + TTL + 10)), NOW, TTL, allow_all)


def test_policy_decides_last() -> None:
    staked = StakedSigners([OTHER.node_id])
    with pytest.raises(RecordError, match="policy"):
        verify_record(record(), NOW, TTL, staked)
    staked.add(KEY.node_id)
    verify_record(record(), NOW, TTL, staked)
    staked.update([])
    with pytest.raises(RecordError):
        verify_record(record(), NOW, TTL, staked)


def test_sign_record_rejects_bad_local_input() -> None:
    with pytest.raises(LocalError):
        sign_record(KEY, b"short", addrs=ADDRS, payload=b"", seq=1, expiry=2)
    with pytest.raises(LocalError):
        sign_record(KEY, ASKS_KEY, addrs=ADDRS, payload=b"x" * 2049, seq=1, expiry=2)
    with pytest.raises(LocalError):
        sign_record(KEY, ASKS_KEY, addrs=ADDRS, payload=b"", seq=-1, expiry=2)


FIELDS = ["key", "node_id", "public_key", "payload", "signature"]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(FIELDS),
    st.binary(max_size=80),
    st.integers(-(2**70), 2**70),
    st.integers(-(2**70), 2**70),
)
def test_fuzzed_records_only_raise_remote_errors(
    field: str, junk: bytes, seq: int, expiry: int
) -> None:
    good = record()
    mutated = dataclasses.replace(good, **{field: junk}, seq=seq, expiry=expiry)  # type: ignore[arg-type]
    try:
        verify_record(mutated, NOW, TTL, allow_all)
    except RemoteError:
        return
    # Only the untouched record may pass.
    assert mutated == good or (getattr(mutated, field) == getattr(good, field))
