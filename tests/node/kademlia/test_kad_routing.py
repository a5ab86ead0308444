"""node/kademlia/routing.py: k-buckets, eviction by ping, replacement cache, prefix limits."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from node.kademlia.config import KademliaConfig
from node.kademlia.messages import Address, PeerInfo
from node.kademlia.routing import RoutingTable, Seen, bucket_index, id_int

SELF = bytes(32)


def contact(i: int, ip: str | None = None) -> PeerInfo:
    node_id = hashlib.sha256(b"%d" % i).digest()
    return PeerInfo(node_id, (Address(ip or f"10.{i // 250}.{i % 250}.1", 4001),))


def in_bucket(index: int, i: int, ip: str | None = None) -> PeerInfo:
    """A contact whose id lands in bucket ``index`` of a table with id 0."""
    rnd = random.Random(i)
    d = (1 << index) | rnd.getrandbits(index) if index else 1
    return PeerInfo(d.to_bytes(32, "big"), (Address(ip or f"10.{i // 250}.{i % 250}.1", 4001),))


def table(**kw: object) -> RoutingTable:
    return RoutingTable(SELF, KademliaConfig(**kw))  # type: ignore[arg-type]


def test_bucket_index_is_floor_log2_of_distance() -> None:
    assert bucket_index(1) == 0
    assert bucket_index(2) == 1
    assert bucket_index(3) == 1
    assert bucket_index(1 << 255) == 255


def test_refuses_self_and_addressless_contacts() -> None:
    t = table()
    assert t.seen(PeerInfo(SELF, (Address("10.0.0.1", 1),)), 0).outcome is Seen.REFUSED
    assert t.seen(PeerInfo(contact(1).node_id, ()), 0).outcome is Seen.REFUSED
    assert len(t) == 0


def test_seen_moves_contact_to_tail() -> None:
    t = table()
    a, b = in_bucket(200, 1), in_bucket(200, 2)
    t.seen(a, 0)
    t.seen(b, 1)
    assert t.buckets[200].contacts == [a, b]
    assert t.seen(a, 2).outcome is Seen.UPDATED
    assert t.buckets[200].contacts == [b, a]


def test_full_bucket_pings_least_recently_seen_and_keeps_it_if_alive() -> None:
    t = table(k=3, ping_grace=10)
    olds = [in_bucket(100, i) for i in range(3)]
    for c in olds:
        t.seen(c, 0)
    newcomer = in_bucket(100, 50)
    result = t.seen(newcomer, 100)
    assert result.outcome is Seen.CACHED
    assert result.ping == olds[0]
    # A second newcomer while the ping is out does not ping again.
    assert t.seen(in_bucket(100, 51), 100).ping is None
    # The old contact answers: it stays (moved to the tail), the newcomer does not get in.
    t.seen(olds[0], 101)
    t.ping_answered(olds[0].node_id)
    assert t.buckets[100].contacts == [olds[1], olds[2], olds[0]]
    assert t.find(newcomer.node_id) is None


def test_failed_ping_evicts_and_promotes_the_freshest_replacement() -> None:
    t = table(k=3, ping_grace=10)
    olds = [in_bucket(100, i) for i in range(3)]
    for c in olds:
        t.seen(c, 0)
    first, second = in_bucket(100, 50), in_bucket(100, 51)
    ping = t.seen(first, 100).ping
    t.seen(second, 101)
    assert ping is not None
    assert t.failed(ping.node_id, 105) is True
    assert t.find(ping.node_id) is None
    assert t.find(second.node_id) is not None  # most recently seen replacement first
    assert t.removed == 1


def test_no_ping_while_bucket_was_heard_from_recently() -> None:
    t = table(k=2, ping_grace=600)
    for i in range(2):
        t.seen(in_bucket(50, i), 0)
    assert t.seen(in_bucket(50, 9), 10).ping is None


def test_failure_without_replacement_only_marks_until_max_failures() -> None:
    t = table(max_failures=3)
    c = in_bucket(10, 1)
    t.seen(c, 0)
    assert t.failed(c.node_id, 1) is False
    assert t.closest(id_int(c.node_id), 5) == []  # questionable: not handed out
    assert t.closest(id_int(c.node_id), 5, questionable=True) == [c]
    assert t.failed(c.node_id, 2) is False
    assert t.failed(c.node_id, 3) is True
    assert len(t) == 0


def test_message_from_failed_contact_clears_its_failures() -> None:
    t = table()
    c = in_bucket(10, 1)
    t.seen(c, 0)
    t.failed(c.node_id, 1)
    t.seen(c, 2)
    assert t.closest(id_int(c.node_id), 5) == [c]


def test_questionable_contact_is_replaced_by_newcomer_without_ping() -> None:
    t = table(k=2)
    a, b = in_bucket(30, 1), in_bucket(30, 2)
    t.seen(a, 0)
    t.seen(b, 0)
    t.failed(a.node_id, 1)
    newcomer = in_bucket(30, 3)
    result = t.seen(newcomer, 2)
    assert result.outcome is Seen.ADDED and result.ping is None
    assert t.find(a.node_id) is None


def test_prefix_limit_per_bucket() -> None:
    t = table(max_per_prefix_bucket=2)
    same = [in_bucket(120, i, ip=f"192.0.2.{i + 1}") for i in range(3)]
    assert [t.seen(c, 0).outcome for c in same] == [Seen.ADDED, Seen.ADDED, Seen.REFUSED]
    assert t.seen(in_bucket(120, 9, ip="198.51.100.1"), 0).outcome is Seen.ADDED


def test_prefix_limit_per_table() -> None:
    t = table(max_per_prefix_bucket=2, max_per_prefix_table=3)
    outcomes = [t.seen(in_bucket(200 + i, i, ip=f"192.0.2.{i + 1}"), 0).outcome for i in range(5)]
    assert outcomes.count(Seen.ADDED) == 3
    assert outcomes[3:] == [Seen.REFUSED, Seen.REFUSED]


def test_ipv6_prefix_is_48_bits() -> None:
    t = table(max_per_prefix_bucket=1)
    a = in_bucket(120, 1, ip="2001:db8:1:1::1")
    b = in_bucket(120, 2, ip="2001:db8:1:2::1")  # same /48
    c = in_bucket(120, 3, ip="2001:db8:2::1")
    assert [t.seen(x, 0).outcome for x in (a, b, c)] == [Seen.ADDED, Seen.REFUSED, Seen.ADDED]


def test_loopback_is_limited_unless_exempted() -> None:
    strict = table(max_per_prefix_bucket=1)
    assert strict.seen(in_bucket(120, 1, ip="127.0.0.1"), 0).outcome is Seen.ADDED
    assert strict.seen(in_bucket(120, 2, ip="127.0.0.1"), 0).outcome is Seen.REFUSED
    lax = table(max_per_prefix_bucket=1, exempt_loopback=True)
    assert lax.seen(in_bucket(120, 1, ip="127.0.0.1"), 0).outcome is Seen.ADDED
    assert lax.seen(in_bucket(120, 2, ip="127.0.0.1"), 0).outcome is Seen.ADDED


def test_promotion_respects_prefix_limits() -> None:
    t = table(k=2, max_per_prefix_bucket=1, ping_grace=0)
    a = in_bucket(120, 1, ip="192.0.2.1")
    b = in_bucket(120, 2, ip="198.51.100.1")
    t.seen(a, 0)
    t.seen(b, 0)
    same_as_b = in_bucket(120, 3, ip="198.51.100.7")
    t.seen(same_as_b, 1)  # cached
    t.failed(a.node_id, 2)  # a leaves; the replacement shares b's /24: not promoted
    assert t.find(same_as_b.node_id) is None
    assert len(t) == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 10_000), min_size=1, max_size=120, unique=True),
    st.integers(0, 2**256 - 1),
    st.integers(1, 30),
)
def test_closest_matches_brute_force(ids: list[int], target: int, count: int) -> None:
    t = RoutingTable(hashlib.sha256(b"me").digest(), KademliaConfig(exempt_loopback=True))
    peers = []
    for i in ids:
        p = PeerInfo(hashlib.sha256(b"%d" % i).digest(), (Address("127.0.0.1", 1),))
        if t.seen(p, 0).outcome is Seen.ADDED:
            peers.append(p)
    want = sorted(peers, key=lambda p: id_int(p.node_id) ^ target)[:count]
    assert t.closest(target, count) == want


def test_random_id_in_bucket_lands_there() -> None:
    t = table()
    rng = random.Random(4)
    for index in (0, 1, 7, 100, 255):
        assert t.bucket_of(id_int(t.random_id_in(index, rng))) == index


def test_stale_buckets_and_touch() -> None:
    t = table()
    t.seen(in_bucket(40, 1), 0)
    t.seen(in_bucket(41, 2), 0)
    assert sorted(t.stale_buckets(3600, 3600)) == [40, 41]
    t.touch(40, 3000)
    assert t.stale_buckets(3600, 3600) == [41]


def test_address_change_updates_contact() -> None:
    t = table()
    c = in_bucket(60, 1)
    t.seen(c, 0)
    moved = PeerInfo(c.node_id, (Address("203.0.113.9", 5000),))
    t.seen(moved, 1)
    assert t.find(c.node_id) == moved
    assert len(t) == 1
