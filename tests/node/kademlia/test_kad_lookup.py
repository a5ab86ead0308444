"""node/kademlia/lookup.py: the iterative lookup state machine on its own."""

from __future__ import annotations

import hashlib

from node.kademlia.lookup import CandidateState, Lookup, LookupKind
from node.kademlia.messages import Address, PeerInfo

ADDR = (Address("192.0.2.1", 1),)


def peers(n: int, tag: bytes = b"p") -> list[PeerInfo]:
    return [PeerInfo(hashlib.sha256(tag + b"%d" % i).digest(), ADDR) for i in range(n)]


def make(seeds: list[PeerInfo], paths: int = 1, k: int = 4, alpha: int = 2) -> Lookup:
    return Lookup(
        1,
        LookupKind.FIND_NODE,
        bytes(32),
        k=k,
        alpha=alpha,
        paths=paths,
        seeds=seeds,
        self_id=b"\xff" * 32,
        started=0.0,
    )


def test_keeps_alpha_requests_in_flight_per_path() -> None:
    lk = make(peers(10), paths=1, alpha=2)
    first = lk.next_queries()
    assert len(first) == 2
    assert lk.next_queries() == []  # budget used
    lk.on_reply(first[0], ())
    assert len(lk.next_queries()) == 1


def test_stalled_request_frees_its_slot_and_a_late_reply_still_counts() -> None:
    lk = make(peers(10), alpha=1)
    [c] = lk.next_queries()
    lk.on_stall(c)
    assert c.state is CandidateState.STALLED
    [d] = lk.next_queries()
    assert d is not c
    lk.on_reply(c, tuple(peers(3, b"late")))
    assert c.state is CandidateState.ANSWERED
    assert any(x.peer.node_id == peers(1, b"late")[0].node_id for x in lk.known.values())


def test_converges_when_k_closest_answered() -> None:
    lk = make(peers(6), k=4, alpha=3)
    while True:
        batch = lk.next_queries()
        if not batch:
            break
        for c in batch:
            lk.on_reply(c, ())
    assert lk.check_done()
    assert len(lk.closest()) == 4
    # only the 4 closest of 6 (plus whatever was in flight) were needed
    assert lk.queried <= 6


def test_failures_are_skipped_and_counted() -> None:
    lk = make(peers(5), k=3, alpha=5)
    batch = lk.next_queries()
    assert len(batch) == 3  # only the k closest are asked at first
    for c in batch[:2]:
        lk.on_failure(c)
    lk.on_reply(batch[2], ())
    rest = lk.next_queries()  # the failed ones' places go to the next closest
    assert len(rest) == 2
    assert not lk.check_done()
    for c in rest:
        lk.on_reply(c, ())
    assert lk.next_queries() == []
    assert lk.check_done()
    assert lk.failed == 2 and len(lk.closest()) == 3


def test_disjoint_paths_never_share_a_node() -> None:
    seeds = peers(9)
    lk = make(seeds, paths=3, k=3, alpha=1)
    assert len(lk.paths) == 3
    shared = tuple(peers(5, b"shared"))
    asked: list[bytes] = []
    while True:
        batch = lk.next_queries()
        if not batch:
            break
        for c in batch:
            asked.append(c.peer.node_id)
            lk.on_reply(c, shared)  # every node returns the same contacts
    assert lk.check_done()
    assert len(asked) == len(set(asked)), "a node was queried twice"
    owners = {lk.known[p.node_id].path for p in shared}
    assert len(owners) == 1  # each shared contact belongs to exactly one path


def test_depth_counts_hops() -> None:
    lk = make(peers(1), k=1, alpha=1)
    [c] = lk.next_queries()
    far = peers(1, b"next")
    lk.on_reply(c, tuple(far))
    assert lk.known[far[0].node_id].depth == 2


def test_ignores_self_and_addressless_contacts() -> None:
    lk = make(peers(1))
    [c] = lk.next_queries()
    lk.on_reply(c, (PeerInfo(b"\xff" * 32, ADDR), PeerInfo(bytes(32), ())))
    assert len(lk.known) == 1
