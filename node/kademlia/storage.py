"""
What a node stores for others: provider records and content-addressed values, with limits.

Pure data structure (time passed in). Records arrive here already verified
(``records.verify_record``); values are checked against their key here. Limits, so that no
peer can fill a node's memory: records per key, records per signer, records in all, values
in all, and bytes in all. A full store refuses new entries (it does not evict older ones:
eviction would let a flood push out honest records); entries leave when they expire.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from node.kademlia.config import KademliaConfig
from node.kademlia.messages import ProviderRecord
from node.kademlia.records import key_for_value

RECORD_OVERHEAD = 200
"""Bytes charged per record on top of its payload and addresses (ids, key, signature)."""
VALUE_OVERHEAD = 64


class StoreOutcome(Enum):
    """Result of offering a record or value to the store."""

    STORED = "stored"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"
    """The same record or value was already stored (a republish)."""
    STALE = "stale"
    """An older or equal seq from the same signer: kept the newer one."""
    KEY_FULL = "key full"
    SIGNER_FULL = "signer full"
    STORE_FULL = "store full"
    BAD_VALUE = "value does not hash to its key"

    @property
    def ok(self) -> bool:
        return self in (StoreOutcome.STORED, StoreOutcome.REPLACED, StoreOutcome.UNCHANGED)


@dataclass(slots=True)
class StoredValue:
    value: bytes
    expiry: float
    republish_at: float


def _record_cost(record: ProviderRecord) -> int:
    return RECORD_OVERHEAD + len(record.payload) + sum(len(a.host) + 2 for a in record.addrs)


class RecordStore:
    """Provider records by key and signer, and values by key."""

    def __init__(self, config: KademliaConfig) -> None:
        self.config = config
        self.providers: dict[bytes, dict[bytes, ProviderRecord]] = {}
        self.values: dict[bytes, StoredValue] = {}
        self._per_signer: dict[bytes, int] = {}
        self._records = 0
        self.bytes = 0

    @property
    def record_count(self) -> int:
        return self._records

    # --- provider records ---------------------------------------------------------------

    def put_record(self, record: ProviderRecord) -> StoreOutcome:
        """Store a verified record; only a higher seq from the same signer replaces one."""
        cfg = self.config
        by_signer = self.providers.get(record.key)
        old = by_signer.get(record.node_id) if by_signer is not None else None
        cost = _record_cost(record)
        if old is not None:
            if record.seq < old.seq or (record.seq == old.seq and record != old):
                return StoreOutcome.STALE
            if record == old:
                return StoreOutcome.UNCHANGED
            delta = cost - _record_cost(old)
            if self.bytes + delta > cfg.max_store_bytes:
                return StoreOutcome.STORE_FULL
            assert by_signer is not None
            by_signer[record.node_id] = record
            self.bytes += delta
            return StoreOutcome.REPLACED
        if by_signer is not None and len(by_signer) >= cfg.max_records_per_key:
            return StoreOutcome.KEY_FULL
        if self._per_signer.get(record.node_id, 0) >= cfg.max_records_per_signer:
            return StoreOutcome.SIGNER_FULL
        if self._records >= cfg.max_records or self.bytes + cost > cfg.max_store_bytes:
            return StoreOutcome.STORE_FULL
        if by_signer is None:
            by_signer = self.providers[record.key] = {}
        by_signer[record.node_id] = record
        self._per_signer[record.node_id] = self._per_signer.get(record.node_id, 0) + 1
        self._records += 1
        self.bytes += cost
        return StoreOutcome.STORED

    def get_records(
        self, key: bytes, now: float, limit: int, rng: random.Random
    ) -> list[ProviderRecord]:
        """Unexpired records under ``key``: all of them, or a random sample of ``limit``."""
        by_signer = self.providers.get(key)
        if not by_signer:
            return []
        live = [r for r in by_signer.values() if r.expiry > now]
        if len(live) > limit:
            live = rng.sample(live, limit)
        return live

    def remove_record(self, key: bytes, node_id: bytes) -> None:
        by_signer = self.providers.get(key)
        if by_signer is None or node_id not in by_signer:
            return
        record = by_signer.pop(node_id)
        if not by_signer:
            del self.providers[key]
        n = self._per_signer[node_id] - 1
        if n:
            self._per_signer[node_id] = n
        else:
            del self._per_signer[node_id]
        self._records -= 1
        self.bytes -= _record_cost(record)

    # --- values -------------------------------------------------------------------------

    def put_value(self, key: bytes, value: bytes, expiry: float, now: float) -> StoreOutcome:
        """Store a content-addressed value (its key is checked here)."""
        if key_for_value(value) != key:
            return StoreOutcome.BAD_VALUE
        cfg = self.config
        old = self.values.get(key)
        republish_at = now + cfg.value_republish_interval
        if old is not None:
            # Someone stored it here: they stored it at the other k - 1 nodes too, so we
            # need not republish it for an interval (section 2.5's optimisation).
            old.republish_at = republish_at
            if expiry > old.expiry:
                old.expiry = expiry
                return StoreOutcome.REPLACED
            return StoreOutcome.UNCHANGED
        cost = VALUE_OVERHEAD + len(value)
        if len(self.values) >= cfg.max_values or self.bytes + cost > cfg.max_store_bytes:
            return StoreOutcome.STORE_FULL
        self.values[key] = StoredValue(value, expiry, republish_at)
        self.bytes += cost
        return StoreOutcome.STORED

    def get_value(self, key: bytes, now: float) -> StoredValue | None:
        stored = self.values.get(key)
        if stored is None or stored.expiry <= now:
            return None
        return stored

    def values_to_republish(self, now: float) -> list[tuple[bytes, StoredValue]]:
        """Values whose republish time has come; their next one is set an interval later."""
        due = [(k, v) for k, v in self.values.items() if v.republish_at <= now]
        for _, v in due:
            v.republish_at = now + self.config.value_republish_interval
        return due

    # --- expiry -------------------------------------------------------------------------

    def expire(self, now: float) -> int:
        """Drop every expired record and value. Returns how many were dropped."""
        dead = [
            (key, node_id)
            for key, by_signer in self.providers.items()
            for node_id, r in by_signer.items()
            if r.expiry <= now
        ]
        for key, node_id in dead:
            self.remove_record(key, node_id)
        dead_values = [k for k, v in self.values.items() if v.expiry <= now]
        for k in dead_values:
            self.bytes -= VALUE_OVERHEAD + len(self.values.pop(k).value)
        return len(dead) + len(dead_values)
