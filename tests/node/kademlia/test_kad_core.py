"""node/kademlia/core.py: the sans-I/O node, driven by an in-memory network (kadnet)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kadnet import T0, MemNet

from node.errors import DecodeError, LocalError
from node.kademlia.config import KademliaConfig
from node.kademlia.core import KademliaNode
from node.kademlia.events import LookupFinished, StoreFinished
from node.kademlia.lookup import LookupKind
from node.kademlia.messages import (
    REPLY_TYPE,
    AddProvider,
    Address,
    Error,
    FindNode,
    GetProviders,
    Nodes,
    Ping,
    Pong,
    Providers,
    PutValue,
    Stored,
    Value,
)
from node.kademlia.records import ASKS_KEY, StakedSigners
from node.kademlia.routing import id_int
from node.wire import decode, encode

CFG = KademliaConfig(k=8, alpha=3, disjoint_paths=2)


def lookup_result(net: MemNet, node: KademliaNode, op: int) -> LookupFinished:
    events = [e for e in net.take(node) if e.op_id == op]
    assert len(events) == 1, events
    assert isinstance(events[0], LookupFinished)
    return events[0]


def store_result(net: MemNet, node: KademliaNode, op: int) -> StoreFinished:
    events = [e for e in net.take(node) if e.op_id == op]
    assert len(events) == 1 and isinstance(events[0], StoreFinished)
    return events[0]


@pytest.fixture
def net() -> MemNet:
    return MemNet(CFG)


def test_join_fills_tables_and_find_node_finds_every_node(net: MemNet) -> None:
    nodes = net.build(40)
    assert all(len(n.table) >= CFG.k for n in nodes)
    for target in nodes[::7]:
        res = lookup_result(net, nodes[5], nodes[5].find_node(target.node_id, net.now))
        assert res.ok
        if target is not nodes[5]:
            assert res.closest[0].node_id == target.node_id
        truth = sorted(
            (n for n in nodes if n is not nodes[5]),
            key=lambda n: id_int(n.node_id) ^ id_int(target.node_id),
        )[: CFG.k]
        assert [p.node_id for p in res.closest] == [n.node_id for n in truth]


def test_provide_then_get_providers_from_elsewhere(net: MemNet) -> None:
    nodes = net.build(40)
    st = store_result(net, nodes[3], nodes[3].provide(ASKS_KEY, b"ask of 3", net.now))
    assert st.stored == st.attempted == CFG.k + 1  # the k closest plus our own store
    store_result(net, nodes[4], nodes[4].provide(ASKS_KEY, b"ask of 4", net.now))
    res = lookup_result(net, nodes[30], nodes[30].get_providers(ASKS_KEY, net.now))
    assert res.ok and res.kind is LookupKind.GET_PROVIDERS
    assert sorted(r.payload for r in res.records) == [b"ask of 3", b"ask of 4"]
    assert res.hops >= 1
    first = lookup_result(net, nodes[31], nodes[31].get_providers(ASKS_KEY, net.now, want=1))
    assert first.ok and len(first.records) >= 1


def test_put_and_get_value(net: MemNet) -> None:
    nodes = net.build(30)
    value = b"a file manifest"
    st = store_result(net, nodes[1], nodes[1].put_value(value, net.now))
    assert st.stored >= CFG.k
    key = hashlib.sha256(value).digest()
    res = lookup_result(net, nodes[20], nodes[20].get_value(key, net.now))
    assert res.ok and res.value == value
    missing = lookup_result(net, nodes[20], nodes[20].get_value(bytes(32), net.now))
    assert not missing.ok and missing.value is None


def test_policy_keeps_unstaked_records_out(net: MemNet) -> None:
    staked = StakedSigners()
    nodes = net.build(20, policy=staked)
    st = store_result(net, nodes[2], nodes[2].provide(ASKS_KEY, b"sybil", net.now))
    assert st.stored == 1  # only our own store: every peer refused
    assert sum(n.stats.dropped.get("RecordError", 0) for n in nodes) >= CFG.k
    staked.add(nodes[2].node_id)
    st = store_result(net, nodes[2], nodes[2].provide(ASKS_KEY, b"staked", net.now))
    assert st.stored == CFG.k + 1


def test_lookups_survive_dead_nodes_and_dead_contacts_are_evicted(net: MemNet) -> None:
    nodes = net.build(40)
    store_result(net, nodes[1], nodes[1].provide(ASKS_KEY, b"ask", net.now))
    dead = {n.node_id for n in nodes[10:20]}
    net.down |= dead
    asker = nodes[30]
    op = asker.get_providers(ASKS_KEY, net.now)
    net.advance(CFG.rpc_timeout + 1)
    res = lookup_result(net, asker, op)
    assert res.ok
    for _ in range(CFG.max_failures + 1):
        for target in nodes[::5]:
            asker.find_node(target.node_id, net.now)
        net.advance(CFG.rpc_timeout + 1)
    assert not any(c.node_id in dead for c in asker.table.closest(0, 1000))
    assert asker.table.removed > 0


def test_forged_records_in_replies_are_dropped_and_the_liar_removed(net: MemNet) -> None:
    nodes = net.build(30)
    store_result(net, nodes[1], nodes[1].provide(ASKS_KEY, b"honest", net.now))
    liar = nodes[2]
    honest_record = next(iter(nodes[1].store.providers[ASKS_KEY].values()))
    forged = dataclasses.replace(honest_record, payload=b"forged ask")

    def lie(node: KademliaNode, req: object, reply: object) -> object:
        if isinstance(req, GetProviders):
            return Providers((forged,), ())
        return reply

    net.tamper[liar.node_id] = lie  # type: ignore[assignment]
    asker = nodes[20]
    asker.add_contacts([net.peer(liar)], net.now)
    res = lookup_result(net, asker, asker.get_providers(ASKS_KEY, net.now))
    assert res.ok
    assert [r.payload for r in res.records] == [b"honest"]
    assert asker.table.find(liar.node_id) is None
    assert asker.stats.dropped.get("BadSignature", 0) >= 1


def test_value_that_does_not_hash_to_its_key_is_ignored(net: MemNet) -> None:
    nodes = net.build(20)
    value = b"manifest"
    key = hashlib.sha256(value).digest()
    for liar in nodes[:10]:
        net.tamper[liar.node_id] = lambda n, req, rep: (  # type: ignore[assignment]
            Value(b"evil", 0, ()) if isinstance(rep, Value) else rep
        )
    res = lookup_result(net, nodes[15], nodes[15].get_value(key, net.now))
    assert not res.ok
    assert nodes[15].stats.dropped.get("value does not hash to its key", 0) >= 1


def test_bad_requests_are_answered_with_errors_never_raised(net: MemNet) -> None:
    a, b = net.build(2)
    assert isinstance(a.handle_request(b.node_id, Pong(), net.now), Error)  # type: ignore[arg-type]
    assert isinstance(a.handle_request(a.node_id, Ping(b.addrs), net.now), Error)
    # A record signed by b but tampered with: refused and counted.
    rec = next(iter(a.store.providers.values()), None)
    assert rec is None
    store_result(net, b, b.provide(ASKS_KEY, b"x", net.now))
    good = b.store.providers[ASKS_KEY][b.node_id]
    bad = dataclasses.replace(good, seq=good.seq + 1)
    reply = a.handle_request(b.node_id, AddProvider(b.addrs, bad), net.now)
    assert reply == Stored(False, "signature does not verify")
    reply = a.handle_request(b.node_id, PutValue(b.addrs, b"v", int(net.now - 1)), net.now)
    assert isinstance(reply, Stored) and not reply.ok
    assert a.stats.dropped["BadSignature"] == 1


def test_wrong_reply_type_fails_the_request(net: MemNet) -> None:
    nodes = net.build(10)
    net.tamper[nodes[0].node_id] = lambda n, req, rep: Pong()  # type: ignore[assignment]
    asker = nodes[5]
    op = asker.find_node(nodes[0].node_id, net.now)
    net.run()
    assert asker.stats.dropped.get("wrong reply type", 0) >= 1
    net.advance(1)
    lookup_result(net, asker, op)


def test_client_mode_node_is_never_added_to_tables(net: MemNet) -> None:
    nodes = net.build(10)
    client = KademliaNode(bytes(31) + b"\x01", (), CFG, net.rng, net.now)
    net.nodes[client.node_id] = client
    net.events[client.node_id] = []
    client.bootstrap([net.peer(nodes[0])], net.now)
    net.run()
    assert len(client.table) > 0
    assert all(n.table.find(client.node_id) is None for n in nodes)
    with pytest.raises(LocalError):
        client.provide(ASKS_KEY, b"", net.now)


def test_own_records_are_republished_with_a_newer_seq(net: MemNet) -> None:
    nodes = net.build(20)
    store_result(net, nodes[1], nodes[1].provide(ASKS_KEY, b"ask", net.now))
    holder = next(n for n in nodes[2:] if ASKS_KEY in n.store.providers)
    seq0 = holder.store.providers[ASKS_KEY][nodes[1].node_id].seq
    net.advance(CFG.republish_interval + CFG.maintenance_interval + 1)
    assert holder.store.providers[ASKS_KEY][nodes[1].node_id].seq > seq0
    nodes[1].stop_providing(ASKS_KEY)
    net.advance(CFG.record_ttl + CFG.maintenance_interval + 1)
    assert not any(ASKS_KEY in n.store.providers for n in nodes)


def test_buckets_are_refreshed_after_an_idle_interval(net: MemNet) -> None:
    nodes = net.build(20)
    before = nodes[3].stats.rpcs_sent
    net.advance(CFG.refresh_interval + CFG.maintenance_interval + 1)
    assert nodes[3].stats.rpcs_sent > before
    assert not nodes[3].table.stale_buckets(net.now, CFG.refresh_interval)


def test_full_bucket_pings_and_replaces_a_dead_head() -> None:
    cfg = KademliaConfig(k=2, ping_grace=0, max_failures=5)
    net = MemNet(cfg)
    hub = net.add()
    others = [net.add() for _ in range(40)]
    for o in others:
        hub.handle_request(o.node_id, FindNode(o.addrs, hub.node_id), net.now)
    biggest = max(hub.table.buckets.values(), key=lambda b: len(b.replacements))
    assert len(biggest.contacts) == 2 and biggest.replacements
    head = biggest.contacts[0]
    net.down.add(head.node_id)
    newcomer = next(
        o
        for o in others
        if o.node_id != head.node_id
        and hub.table.find(o.node_id) is None
        and hub.table.bucket_of(id_int(o.node_id)) == hub.table.bucket_of(id_int(head.node_id))
    )
    net.now += 1
    hub.handle_request(newcomer.node_id, Ping(newcomer.addrs), net.now)
    net.advance(cfg.rpc_timeout + 1)
    assert hub.table.find(head.node_id) is None
    assert len(biggest.contacts) == 2


def test_unknown_rpc_ids_are_ignored(net: MemNet) -> None:
    a = net.add()
    a.handle_reply(12345, Nodes(()), T0)
    a.handle_failure(12345, T0)
    assert a.stats.rpcs_failed == 0


def test_lookup_with_no_contacts_finishes_at_once(net: MemNet) -> None:
    a = net.add()
    res = lookup_result(net, a, a.get_providers(ASKS_KEY, net.now))
    assert not res.ok and res.queried == 0


_FUZZ_NET = MemNet(CFG, seed=9)
_FUZZ_NODES = _FUZZ_NET.build(6)
_FUZZ_SAMPLES = [
    Ping(_FUZZ_NODES[1].addrs),
    FindNode(_FUZZ_NODES[1].addrs, bytes(32)),
    GetProviders(_FUZZ_NODES[1].addrs, ASKS_KEY),
    PutValue(_FUZZ_NODES[1].addrs, b"value", int(T0 + 100)),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_FUZZ_SAMPLES), st.binary(min_size=1, max_size=8), st.integers(0, 200))
def test_fuzzed_requests_are_answered_never_raised(msg: object, junk: bytes, at: int) -> None:
    raw = bytearray(encode(msg))
    pos = at % len(raw)
    raw[pos : pos + len(junk)] = junk
    try:
        decoded = decode(bytes(raw), "kad")
    except DecodeError:
        return
    node = _FUZZ_NODES[0]
    reply = node.handle_request(_FUZZ_NODES[1].node_id, decoded, _FUZZ_NET.now)
    if not isinstance(decoded, tuple(REPLY_TYPE)):  # a reply where a request was expected
        assert isinstance(reply, Error)
    assert type(reply) in (*REPLY_TYPE.values(), Error)


def test_new_node_closest_to_a_key_is_handed_its_records(net: MemNet) -> None:
    nodes = net.build(30)
    store_result(net, nodes[1], nodes[1].provide(ASKS_KEY, b"ask", net.now))
    # A node whose id is next to the key joins (ids are hashes in real life; here we place it).
    near = bytes(ASKS_KEY[:-1]) + bytes([ASKS_KEY[-1] ^ 1])
    newcomer = KademliaNode(near, (Address("10.200.0.1", 4001),), CFG, net.rng, net.now)
    net.nodes[near] = newcomer
    net.events[near] = []
    newcomer.bootstrap([net.peer(nodes[0])], net.now)
    net.run()
    assert nodes[1].node_id in newcomer.store.providers.get(ASKS_KEY, {})
    # Exactly one holder handed it over (the closest one), not all k of them.
    assert newcomer.stats.records_accepted == 1
