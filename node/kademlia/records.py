"""
Provider records: signing, verification and the application's ``RecordPolicy``.

A provider record says "node N provides key K, reach it at these addresses, here is an opaque
payload" and is signed by N's Ed25519 identity key. The signature covers a canonical,
domain-separated encoding (``signing_bytes``), fixed-width where it can be and
length-prefixed elsewhere, so that no two different records sign the same bytes and a
record signature can never be replayed as any other Depot signature (the Noise static-key
signature uses its own prefix).

Checks on receipt (``verify_record``), before a record is stored, returned or acted on:
sizes, ``node_id == sha256(public_key)`` (ids are derived from keys: S/Kademlia section
4.1's "secure node id assignment" without the crypto puzzle, because an id that counts costs
stake instead), expiry in the future and at most ``max_ttl`` ahead, the Ed25519 signature,
and finally the ``RecordPolicy``.

``RecordPolicy`` is a *synchronous* callable, deliberately: the protocol core is sans-I/O
and must decide before it answers. An application whose check needs I/O (the prover and
market ask the chain whether a node id is registered with stake) keeps a cache refreshed in
the background (for instance from the registry's events) and answers from it; a record
refused because the cache had not caught up is accepted at its next republish (hourly).
``StakedSigners`` is such a cache.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable
from typing import Final

from node.errors import BadSignature, LocalError, RemoteError
from node.identity import NodeKey, node_id_of, verify
from node.kademlia.messages import (
    ID_LEN,
    MAX_ADDRS,
    MAX_PAYLOAD,
    PUBLIC_KEY_LEN,
    Address,
    ProviderRecord,
)

DOMAIN: Final = b"depot/kad/provider-record/v1\x00"
ASKS_KEY: Final = hashlib.sha256(b"depot/asks/v1").digest()
"""The well-known key under which providers publish their asks (payload: the market's)."""
MAX_SEQ: Final = 2**64 - 1

RecordPolicy = Callable[[ProviderRecord], bool]
"""Decides whether a verified record's signer may store records here (must not block)."""


class RecordError(RemoteError):
    """A provider record that is malformed, expired, too large or refused by policy."""


def allow_all(record: ProviderRecord) -> bool:
    """The policy that accepts every validly signed record (tests, simulations)."""
    return True


class StakedSigners:
    """
    A ``RecordPolicy`` that accepts the signers in a set the application keeps up to date
    (the node ids registered with stake on chain).
    """

    def __init__(self, node_ids: Iterable[bytes] = ()) -> None:
        self._allowed = set(node_ids)

    def update(self, node_ids: Iterable[bytes]) -> None:
        """Replace the whole set (after a full re-read of the registry)."""
        self._allowed = set(node_ids)

    def add(self, node_id: bytes) -> None:
        self._allowed.add(node_id)

    def discard(self, node_id: bytes) -> None:
        self._allowed.discard(node_id)

    def __call__(self, record: ProviderRecord) -> bool:
        return record.node_id in self._allowed


def key_for_value(value: bytes) -> bytes:
    """The key of a content-addressed value: ``sha256(value)``."""
    return hashlib.sha256(value).digest()


def signing_bytes(
    *,
    key: bytes,
    node_id: bytes,
    public_key: bytes,
    addrs: tuple[Address, ...],
    payload: bytes,
    seq: int,
    expiry: int,
) -> bytes:
    """
    The canonical encoding a provider record's signature covers::

        DOMAIN || key (32) || node_id (32) || public_key (32) || seq (u64) || expiry (u64)
        || n_addrs (u8) || n_addrs * (len (u8) || host (ascii) || port (u16))
        || len(payload) (u16) || payload

    Integers are big-endian. ``LocalError`` for values outside these widths.
    """
    if not (0 <= seq <= MAX_SEQ and 0 <= expiry <= MAX_SEQ):
        raise LocalError("seq and expiry must fit in 64 bits")
    parts = [DOMAIN, key, node_id, public_key, struct.pack(">QQB", seq, expiry, len(addrs))]
    for a in addrs:
        host = a.host.encode("ascii")
        parts.append(struct.pack(">B", len(host)) + host + struct.pack(">H", a.port))
    parts.append(struct.pack(">H", len(payload)))
    parts.append(payload)
    return b"".join(parts)


def sign_record(
    key_pair: NodeKey,
    key: bytes,
    *,
    addrs: tuple[Address, ...],
    payload: bytes,
    seq: int,
    expiry: int,
) -> ProviderRecord:
    """Build and sign our provider record for ``key``."""
    if len(key) != ID_LEN:
        raise LocalError(f"a record key has {ID_LEN} bytes")
    if len(payload) > MAX_PAYLOAD or len(addrs) > MAX_ADDRS:
        raise LocalError(f"payload above {MAX_PAYLOAD} bytes or more than {MAX_ADDRS} addrs")
    data = signing_bytes(
        key=key,
        node_id=key_pair.node_id,
        public_key=key_pair.public_key,
        addrs=addrs,
        payload=payload,
        seq=seq,
        expiry=expiry,
    )
    return ProviderRecord(
        key=key,
        node_id=key_pair.node_id,
        public_key=key_pair.public_key,
        addrs=addrs,
        payload=payload,
        seq=seq,
        expiry=expiry,
        signature=key_pair.sign(data),
    )


def verify_record(record: ProviderRecord, now: float, max_ttl: float, policy: RecordPolicy) -> None:
    """
    Check a record received from the network, cheapest checks first.

    Parameters
    ----------
    record :
        The record, already schema-checked by the wire decoder (field sizes).
    now :
        Current Unix time.
    max_ttl :
        The furthest in the future an expiry may lie, in seconds.
    policy :
        The application's verdict on the signer, asked last (after the signature).

    Raises
    ------
    RecordError
        Bad sizes, expired, too far in the future, or refused by policy.
    BadSignature
        ``node_id`` is not ``sha256(public_key)`` or the signature does not verify.
    """
    if (
        len(record.key) != ID_LEN
        or len(record.public_key) != PUBLIC_KEY_LEN
        or len(record.payload) > MAX_PAYLOAD
        or len(record.addrs) > MAX_ADDRS
    ):
        raise RecordError("record fields out of bounds")
    if not 0 <= record.seq <= MAX_SEQ:
        raise RecordError("seq out of range")
    if record.expiry <= now:
        raise RecordError("record expired")
    if record.expiry > now + max_ttl:
        raise RecordError("record expiry too far in the future")
    if node_id_of(record.public_key) != record.node_id:
        raise BadSignature("record node id is not the hash of its public key")
    data = signing_bytes(
        key=record.key,
        node_id=record.node_id,
        public_key=record.public_key,
        addrs=record.addrs,
        payload=record.payload,
        seq=record.seq,
        expiry=record.expiry,
    )
    verify(record.public_key, record.signature, data)
    if not policy(record):
        raise RecordError("signer refused by policy (no stake?)")
