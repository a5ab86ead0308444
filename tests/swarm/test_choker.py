"""Tit-for-tat choking with optimistic unchoke (BEP 3, Cohen 2003)."""

from __future__ import annotations

import random

from node.swarm.choker import Choker


def make(slots: int = 3, optimistic: int = 1, seed: int = 1) -> Choker[str]:
    return Choker(slots, optimistic, 10.0, 30.0, random.Random(seed), 0.0)


def test_interested_peers_are_unchoked_at_once_while_slots_are_free() -> None:
    c = make()
    for p in "ab":
        c.add(p, 0.0)
    assert c.set_interested("a", True, 0.0) == [("a", True)]
    assert c.set_interested("b", True, 0.0) == [("b", True)]
    assert c.set_interested("a", False, 0.0) == [("a", False)]
    assert c.unchoked() == ["b"]


def test_tit_for_tat_prefers_peers_that_upload_to_us() -> None:
    c = make(slots=3, optimistic=1)
    for p in "abcdef":
        c.add(p, 0.0)
        c.set_interested(p, True, 0.0)
    c.record("e", received=5000)
    c.record("f", received=9000)
    c.handle_timer(10.0)
    unchoked = set(c.unchoked())
    assert {"e", "f"} <= unchoked  # the two regular slots go to the traders
    assert len(unchoked) == 3  # plus one optimistic unchoke


def test_non_traders_rotate_round_robin() -> None:
    c = make(slots=2, optimistic=0)
    for p in "abcd":
        c.add(p, 0.0)
        c.set_interested(p, True, 0.0)
    seen: set[str] = set()
    now = 0.0
    for _ in range(4):
        now += 10.0
        for p in c.unchoked():
            c.record(p, sent=1000)  # we upload to whoever is unchoked
        c.handle_timer(now)
        seen.update(c.unchoked())
    assert seen == set("abcd")  # nobody keeps a slot at the others' expense


def test_optimistic_unchoke_rotates_every_interval() -> None:
    c = make(slots=2, optimistic=1, seed=3)
    for p in "abcdefgh":
        c.add(p, 0.0)
        c.set_interested(p, True, 0.0)
    c.record("a", received=10**6)
    picks = set()
    now = 0.0
    for _ in range(12):
        now += 30.0
        c.record("a", received=10**6)
        c.handle_timer(now)
        unchoked = c.unchoked()
        assert "a" in unchoked and len(unchoked) == 2
        picks.update(set(unchoked) - {"a"})
    assert len(picks) >= 3


def test_leaving_peer_frees_its_slot_for_a_waiting_one() -> None:
    c = make(slots=1, optimistic=0)
    for p in "ab":
        c.add(p, 0.0)
        c.set_interested(p, True, 0.0)
    assert c.unchoked() == ["a"]
    assert c.remove("a", 1.0) == [("b", True)]
    assert c.get_timer() == 10.0
    assert c.handle_timer(5.0) == []
