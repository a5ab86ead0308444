"""The challenge mirror (sans-I/O) against the reference walk of contracts.spec.challenge."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.spec import challenge as spec
from contracts.spec.commitment import leaf_count
from prover.challenges import MirrorSlot, SlotMirror, slots_from_chain

PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
SEED = hashlib.sha256(b"seed").digest()


def slot(index: int, size: int, live_from: int = 0, retired_from: int = 0) -> MirrorSlot:
    root = hashlib.sha256(index.to_bytes(4, "big")).digest()
    return MirrorSlot(index, 100 + index, root, size, live_from, retired_from)


def reference(slots: list[MirrorSlot], period: int, count: int) -> list[tuple[int, int]]:
    """The contract's walk per the spec: weights are leaves, zero once retired."""
    weights = [
        0 if (s.retired_from and s.retired_from <= period) else leaf_count(s.piece_size)
        for s in slots
    ]
    live = sum(s.weight(period) for s in slots)
    out = []
    for i in range(count):
        index = spec.challenge_index(SEED, PROVIDER, period, i, live)
        out.append(spec.locate(index, weights))
    return out


def test_live_leaves_follow_additions_and_retirements() -> None:
    m = SlotMirror(0, [slot(0, 4096), slot(1, 1500, live_from=5)])
    assert m.live_leaves(4) == 4  # slot 1 is pending during period 4
    assert m.live_leaves(5) == 4 + 2
    assert m.retire(0, 0, from_period=7)
    assert m.live_leaves(6) == 6 and m.live_leaves(7) == 2
    assert m.deal_ids(7) == {101}


def test_add_extends_in_order_and_flags_gaps() -> None:
    m = SlotMirror()
    assert m.add(0, slot(0, 1024))
    assert m.add(0, slot(0, 1024))  # the same event again
    assert not m.add(0, slot(2, 1024))  # slot 1 missed: re-read
    assert not m.retire(0, 5, 3)
    assert m.add(1, slot(0, 2048))  # a new epoch after a termination starts empty
    assert m.epoch == 1 and len(m.slots) == 1
    assert m.add(0, slot(1, 1024))  # a late event of the old epoch changes nothing
    assert m.epoch == 1 and len(m.slots) == 1


def test_reset_requires_contiguous_slots() -> None:
    with pytest.raises(ValueError):
        SlotMirror(0, [slot(0, 1), slot(2, 1)])


def test_locate_answers_in_proof_order_with_piece_and_leaf() -> None:
    slots = [slot(0, 10 * 1024), slot(1, 3 * 1024 + 1), slot(2, 1024, retired_from=2)]
    m = SlotMirror(0, slots)
    located = m.locate(SEED, PROVIDER, 3, 20)
    assert [c.i for c in located] == list(range(20))
    assert [(c.slot, c.leaf) for c in located] == reference(slots, 3, 20)
    for c in located:
        assert c.deal_id == 100 + c.slot and c.piece_root == slots[c.slot].piece_root
        assert 0 <= c.leaf < leaf_count(c.piece_size)
        assert c.slot != 2  # retired from period 2


def test_locate_with_nothing_live_raises() -> None:
    with pytest.raises(spec.ChallengeError):
        SlotMirror(0, [slot(0, 1024, retired_from=1)]).locate(SEED, PROVIDER, 2, 1)


SLOTS = st.lists(
    st.tuples(
        st.integers(1, 300_000),  # size
        st.integers(0, 6),  # live_from
        st.sampled_from([0, 0, 2, 4, 6, 8]),  # retired_from
    ),
    min_size=1,
    max_size=25,
)


@given(SLOTS, st.integers(1, 8))
def test_the_mirror_walks_like_the_spec(raw: list[tuple[int, int, int]], period: int) -> None:
    slots = [slot(i, size, live_from, retired) for i, (size, live_from, retired) in enumerate(raw)]
    # The contract's order: slots added later come later, so pending ones are at the end.
    slots.sort(key=lambda s: s.live_from)
    slots = [
        MirrorSlot(i, s.deal_id, s.piece_root, s.piece_size, s.live_from, s.retired_from)
        for i, s in enumerate(slots)
    ]
    m = SlotMirror(0, slots)
    if m.live_leaves(period) == 0:
        return
    located = m.locate(SEED, PROVIDER, period, 8)
    assert [(c.slot, c.leaf) for c in located] == reference(slots, period, 8)


def test_slots_from_chain_marks_the_pending_tail() -> None:
    infos = [
        (1, b"a" * 32, 4096, 0, 0),
        (2, b"b" * 32, 2048, 1, 0),
        (3, b"c" * 32, 1024, 2, 0),
        (4, b"d" * 32, 1024, 3, 0),
    ]
    slots = slots_from_chain(infos, current=9, pending_leaves=2)
    assert [s.live_from for s in slots] == [0, 0, 10, 10]
    assert SlotMirror(0, slots).live_leaves(9) == 6
    assert [s.live_from for s in slots_from_chain(infos, 9, 0)] == [0, 0, 0, 0]
