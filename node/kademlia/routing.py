"""
The routing table: k-buckets over the XOR metric (Maymounkov & Mazières 2002, section 2.2).

Bucket ``i`` holds contacts at distance ``[2**i, 2**(i+1))`` from us (the "flat" layout of
256 buckets; only non-empty buckets exist in memory). Within a bucket, contacts are ordered
from least- to most-recently seen. The rules:

- Any message from a contact moves it to the tail (section 2.2).
- A new contact joins a bucket with room. If the bucket is full, the newcomer waits in the
  bucket's replacement cache (section 4.1) and the least-recently seen contact is pinged; it
  is evicted only if it fails (section 2.2: long-lived nodes are preferred, they are the
  likeliest to stay). A contact that already failed a request is replaced at once. The
  ping is skipped while even the least-recently seen contact was heard from within
  ``ping_grace`` seconds: a contact that recent is alive with high probability, and one
  ping per newcomer (often a fresh Noise handshake) would cost more than the lookups
  themselves; section 4.1 makes the same argument for delaying probes.
- A failed request marks the contact *questionable*: it is no longer handed out to others or
  used first in our lookups; it is replaced by the freshest cached contact if there is one,
  and removed after ``max_failures`` consecutive failures even if there is none (section
  4.1, which keeps contacts when nothing better is known so that a node whose own link
  went down does not flush its table).
- Eclipse defence: at most ``max_per_prefix_bucket`` contacts per IP prefix (/24, /48) in a
  bucket and ``max_per_prefix_table`` in the table, so one network cannot fill a table.
"""

from __future__ import annotations

import ipaddress
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from operator import itemgetter

from node.kademlia.config import KademliaConfig
from node.kademlia.messages import ID_LEN, PeerInfo

ID_BITS = ID_LEN * 8


def id_int(node_id: bytes) -> int:
    """A 256-bit id as an integer, for XOR distances (section 2.1)."""
    return int.from_bytes(node_id, "big")


def bucket_index(distance: int) -> int:
    """The bucket of a contact at ``distance`` (> 0): ``floor(log2(distance))``."""
    return distance.bit_length() - 1


@lru_cache(maxsize=1 << 16)
def ip_prefix(host: str, ipv4_bits: int, ipv6_bits: int, exempt_loopback: bool) -> str | None:
    """The network prefix a host counts against, or ``None`` if it is exempt."""
    ip = ipaddress.ip_address(host)
    if exempt_loopback and ip.is_loopback:
        return None
    bits = ipv4_bits if ip.version == 4 else ipv6_bits
    return str(ipaddress.ip_network(f"{host}/{bits}", strict=False))


class Seen(Enum):
    """What ``RoutingTable.seen`` did with a contact."""

    UPDATED = "updated"
    ADDED = "added"
    CACHED = "cached"
    """The bucket is full: the contact waits in the replacement cache."""
    REFUSED = "refused"
    """Ourselves, a contact with no address, or over an IP-prefix limit."""


_first = itemgetter(0)


@dataclass(slots=True)
class Bucket:
    contacts: list[PeerInfo] = field(default_factory=list)
    """Least-recently seen first."""
    nums: list[int] = field(default_factory=list)
    """The contacts' ids as integers (parallel to ``contacts``): membership tests and
    distance sorts run in C."""
    questionable: int = 0
    """How many of the contacts have failed requests (are in ``RoutingTable.failures``)."""
    seen_at: array[float] = field(default_factory=lambda: array("d"))
    """When each contact was last heard from (parallel to ``contacts``)."""
    replacements: list[PeerInfo] = field(default_factory=list)
    """Most-recently seen last."""
    last_active: float = 0.0


@dataclass(frozen=True, slots=True)
class SeenResult:
    outcome: Seen
    ping: PeerInfo | None = None
    """The least-recently seen contact of a full bucket, to ping (section 2.2)."""


_UPDATED = SeenResult(Seen.UPDATED)
_ADDED = SeenResult(Seen.ADDED)
_CACHED = SeenResult(Seen.CACHED)
_REFUSED = SeenResult(Seen.REFUSED)


class RoutingTable:
    """The k-buckets of one node. Pure data structure: no I/O, time passed in."""

    def __init__(self, node_id: bytes, config: KademliaConfig) -> None:
        self.node_id = node_id
        self.n = id_int(node_id)
        self.config = config
        self.buckets: dict[int, Bucket] = {}
        self.failures: dict[bytes, int] = {}
        self.pinging: set[bytes] = set()
        self._prefix_count: dict[str, int] = {}
        self._size = 0
        self.added = 0
        """Contacts ever added (joins seen by this table)."""
        self.removed = 0
        """Contacts ever evicted (leaves seen by this table)."""

    def __len__(self) -> int:
        return self._size

    def contacts(self) -> Iterator[PeerInfo]:
        """All contacts, bucket by bucket (nearest bucket first), least-recently seen first."""
        for i in sorted(self.buckets):
            yield from self.buckets[i].contacts

    def find(self, node_id: bytes) -> PeerInfo | None:
        """The contact with this id, if the table holds it."""
        n = id_int(node_id)
        bucket = self.buckets.get(bucket_index(self.n ^ n))
        if bucket is not None and n in bucket.nums:
            return bucket.contacts[bucket.nums.index(n)]
        return None

    # --- updates ------------------------------------------------------------------------

    def seen(self, peer: PeerInfo, now: float) -> SeenResult:
        """
        We heard from ``peer`` directly (a request from it or its reply to us).

        Contacts are only ever added on direct contact, never from another node's reply, so
        a liar can only point us at nodes that must then answer for themselves.
        """
        n = id_int(peer.node_id)
        d = self.n ^ n
        if d == 0 or not peer.addrs:
            return _REFUSED
        i = bucket_index(d)
        bucket = self.buckets.get(i)
        if bucket is None:
            bucket = self.buckets[i] = Bucket(last_active=now)
        contacts = bucket.contacts
        nums = bucket.nums
        if n in nums:
            pos = nums.index(n)
            current = contacts[pos]
            if bucket.questionable and self.failures.pop(peer.node_id, None) is not None:
                bucket.questionable -= 1
            if current.addrs != peer.addrs and self._admits(peer, bucket, replacing=current):
                self._count(current, -1)
                self._count(peer, +1)
                current = peer
            del contacts[pos], nums[pos], bucket.seen_at[pos]
            contacts.append(current)
            nums.append(n)
            bucket.seen_at.append(now)
            bucket.last_active = now
            return _UPDATED
        if len(contacts) < self.config.k:
            if not self._admits(peer, bucket, replacing=None):
                return _REFUSED
            self._insert(bucket, peer, now)
            return _ADDED
        if bucket.questionable:
            failures = self.failures
            for pos, c in enumerate(contacts):
                if c.node_id in failures and self._admits(peer, bucket, replacing=c):
                    # Already failed a request: replace it without a ping.
                    self._evict(bucket, pos)
                    self._insert(bucket, peer, now)
                    return _ADDED
        self._cache(bucket, peer)  # admitted (prefix limits) only when promoted
        head = contacts[0]
        if now - bucket.seen_at[0] < self.config.ping_grace or head.node_id in self.pinging:
            return _CACHED
        self.pinging.add(head.node_id)
        return SeenResult(Seen.CACHED, ping=head)

    def failed(self, node_id: bytes, now: float) -> bool:
        """
        A request to ``node_id`` failed. Returns ``True`` if the contact was evicted.

        Also the outcome of an eviction ping that went unanswered (section 2.2).
        """
        self.pinging.discard(node_id)
        n = id_int(node_id)
        bucket = self.buckets.get(bucket_index(self.n ^ n))
        if bucket is None:
            return False
        if n in bucket.nums:
            failures = self.failures.get(node_id, 0) + 1
            if bucket.replacements or failures >= self.config.max_failures:
                self._evict(bucket, bucket.nums.index(n))
                self._promote(bucket, now)
                return True
            if failures == 1:
                bucket.questionable += 1
            self.failures[node_id] = failures
            return False
        # Not in the table: forget it from the replacement cache too.
        bucket.replacements = [c for c in bucket.replacements if c.node_id != node_id]
        return False

    def ping_answered(self, node_id: bytes) -> None:
        """The eviction ping was answered: the old contact stays (its reply moved it)."""
        self.pinging.discard(node_id)

    def remove(self, node_id: bytes, now: float) -> bool:
        """Drop a contact (a peer that misbehaved). Returns ``True`` if it was there."""
        bucket = self.buckets.get(bucket_index(self.n ^ id_int(node_id)))
        if bucket is None:
            return False
        n = id_int(node_id)
        if n in bucket.nums:
            self._evict(bucket, bucket.nums.index(n))
            self._promote(bucket, now)
            return True
        return False

    # --- queries ------------------------------------------------------------------------

    def closest(
        self, target: int, count: int, *, questionable: bool = False, exclude: bytes = b""
    ) -> list[PeerInfo]:
        """
        The ``count`` contacts closest to ``target`` (an id as an integer), nearest first.

        With ``target`` in bucket ``b``: every contact of bucket ``b`` is nearer to the
        target than ``2**b``, every contact of a lower bucket is in ``[2**b, 2**(b+1))``,
        and every contact of a higher bucket ``j`` is at least ``2**j`` away; so buckets
        are visited in that order (the lower buckets together) and sorting stays small.
        """
        d = self.n ^ target
        b = bucket_index(d) if d else -1
        buckets = self.buckets
        groups: list[list[int]] = [[b]] if b in buckets else []
        lower = [i for i in buckets if i < b]
        if lower:
            groups.append(lower)
        groups += [[i] for i in sorted(i for i in buckets if i > b)]
        failures = self.failures if not questionable else {}
        skip = id_int(exclude) if exclude else -1
        distance = target.__xor__
        out: list[PeerInfo] = []
        for group in groups:
            pairs: list[tuple[int, PeerInfo]] = []
            for i in group:
                bucket = buckets[i]
                pairs += zip(map(distance, bucket.nums), bucket.contacts, strict=True)
            pairs.sort(key=_first)
            for dist, c in pairs:
                if (dist ^ target) == skip or (failures and c.node_id in failures):
                    continue
                out.append(c)
                if len(out) >= count:
                    return out
        return out

    def bucket_of(self, target: int) -> int:
        """Index of the bucket ``target`` falls in (-1 for our own id)."""
        d = self.n ^ target
        return bucket_index(d) if d else -1

    def touch(self, index: int, now: float) -> None:
        """A lookup for an id in bucket ``index`` was made: it needs no refresh for now.
        (A message from one of its contacts does the same, see ``seen``.)"""
        bucket = self.buckets.get(index)
        if bucket is not None:
            bucket.last_active = now

    def stale_buckets(self, now: float, interval: float) -> list[int]:
        """
        Buckets with neither a lookup nor a message from one of their contacts in
        ``interval`` seconds, to refresh. Section 2.3 refreshes buckets without a lookup and
        notes that buckets are "generally kept fresh by the traffic of requests traveling
        through nodes"; we count that traffic too (as bmuller/kademlia does), so a busy
        node refreshes only the buckets nobody talks to it from.
        """
        return [i for i, b in self.buckets.items() if now - b.last_active >= interval]

    def random_id_in(self, index: int, rng: random.Random) -> bytes:
        """A random id at distance ``[2**index, 2**(index+1))`` from us, to refresh a bucket."""
        d = (1 << index) | rng.getrandbits(index) if index > 0 else 1
        return (self.n ^ d).to_bytes(ID_LEN, "big")

    def fill(self) -> dict[int, int]:
        """Contacts per bucket index (routing-table fill, for metrics)."""
        return {i: len(b.contacts) for i, b in sorted(self.buckets.items()) if b.contacts}

    # --- internals ----------------------------------------------------------------------

    def _prefixes(self, peer: PeerInfo) -> tuple[str, ...]:
        cfg = self.config
        out: tuple[str, ...] = ()
        for a in peer.addrs:
            p = ip_prefix(a.host, cfg.ipv4_prefix, cfg.ipv6_prefix, cfg.exempt_loopback)
            if p is not None and p not in out:
                out += (p,)
        return out

    def _admits(self, peer: PeerInfo, bucket: Bucket, replacing: PeerInfo | None) -> bool:
        cfg = self.config
        counts = self._prefix_count
        old = self._prefixes(replacing) if replacing is not None else ()
        for p in self._prefixes(peer):
            in_table = counts.get(p, 0) - (p in old)
            if in_table <= 0:
                continue  # nobody else from this network anywhere in the table
            if in_table >= cfg.max_per_prefix_table:
                return False
            in_bucket = sum(
                1 for c in bucket.contacts if c is not replacing and p in self._prefixes(c)
            )
            if in_bucket >= cfg.max_per_prefix_bucket:
                return False
        return True

    def _count(self, peer: PeerInfo, delta: int) -> None:
        for p in self._prefixes(peer):
            n = self._prefix_count.get(p, 0) + delta
            if n:
                self._prefix_count[p] = n
            else:
                self._prefix_count.pop(p, None)

    def _insert(self, bucket: Bucket, peer: PeerInfo, now: float) -> None:
        bucket.contacts.append(peer)
        bucket.nums.append(id_int(peer.node_id))
        bucket.seen_at.append(now)
        bucket.last_active = now
        bucket.replacements = [c for c in bucket.replacements if c.node_id != peer.node_id]
        self._count(peer, +1)
        self._size += 1
        self.added += 1

    def _evict(self, bucket: Bucket, pos: int) -> None:
        c = bucket.contacts.pop(pos)
        del bucket.nums[pos], bucket.seen_at[pos]
        if self.failures.pop(c.node_id, None) is not None:
            bucket.questionable -= 1
        self.pinging.discard(c.node_id)
        self._count(c, -1)
        self._size -= 1
        self.removed += 1

    def _cache(self, bucket: Bucket, peer: PeerInfo) -> None:
        reps = [c for c in bucket.replacements if c.node_id != peer.node_id]
        reps.append(peer)
        if len(reps) > self.config.replacement_cache:
            del reps[0]
        bucket.replacements = reps

    def _promote(self, bucket: Bucket, now: float) -> None:
        while bucket.replacements and len(bucket.contacts) < self.config.k:
            peer = bucket.replacements.pop()
            if self._admits(peer, bucket, replacing=None):
                # Its last-seen time is not kept in the cache: count it as seen at its
                # promotion, which puts it at the tail like the paper's insertion.
                self._insert(bucket, peer, now)
                return
