"""The proof checker as a pure function: slot walks, verdicts on real and forged proofs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.spec import challenge
from market.auditor.calldata import ProofCall
from market.auditor.checker import ProviderBook, Slot, SlotIndex, check_proof
from tests.auditor.helpers import Piece

PROVIDER = "0x" + "ab" * 20
SEED = bytes(range(32))


@given(st.lists(st.integers(0, 50), min_size=1, max_size=30), st.data())
@settings(max_examples=200, deadline=None)
def test_locate_matches_the_spec(weights: list[int], data: st.DataObject) -> None:
    slots = [Slot(i, bytes(32), w * 1024, start=0) for i, w in enumerate(weights)]
    index = SlotIndex.of(slots, period=5)
    assert index.total == sum(weights)
    if index.total == 0:
        with pytest.raises(challenge.ChallengeError):
            index.locate(0)
        return
    at = data.draw(st.integers(0, index.total - 1))
    assert index.locate(at) == challenge.locate(at, weights)
    with pytest.raises(challenge.ChallengeError):
        index.locate(index.total)


def test_the_book_follows_starts_retirements_and_terminations() -> None:
    book = ProviderBook()
    book.add_slot(0, 0, Slot(1, bytes(32), 4096, start=3))
    book.add_slot(0, 1, Slot(2, bytes(32), 1024, start=4))
    with pytest.raises(ValueError, match="slot 5"):
        book.add_slot(0, 5, Slot(3, bytes(32), 1024, start=4))
    assert [book.live_leaves(p) for p in (2, 3, 4)] == [0, 4, 5]
    book.retire(0, 0, from_period=6)
    assert [book.live_leaves(p) for p in (5, 6)] == [5, 1]
    book.terminate(0, end_period=8)
    book.add_slot(1, 0, Slot(4, bytes(32), 2048, start=9))
    assert book.epoch == 1
    assert [book.live_leaves(p) for p in (7, 8, 9)] == [1, 0, 2]
    assert book.slot_index(0, 7).total == 1


def proof_for(pieces: list[Piece], period: int, count: int) -> tuple[SlotIndex, ProofCall]:
    slots = [Slot(i, p.root, p.size, start=0) for i, p in enumerate(pieces)]
    index = SlotIndex.of(slots, period)
    leaves, paths = [], []
    for i in range(count):
        slot, leaf = index.locate(challenge.challenge_index(SEED, PROVIDER, period, i, index.total))
        answer = pieces[slot].answer(leaf)
        leaves.append(answer[0])
        paths.append(tuple(answer[1]))
    return index, ProofCall(tuple(leaves), tuple(paths))


def test_verdicts() -> None:
    rng = random.Random(1)
    pieces = [Piece(rng.randbytes(n)) for n in (5000, 1024, 70 * 1024 + 3)]
    index, call = proof_for(pieces, period=9, count=46)
    ok = check_proof(seed=SEED, provider=PROVIDER, period=9, index=index, challenges=46, call=call)
    assert ok.valid and ok.live_leaves == 5 + 1 + 71 and ok.failed == ()

    # Another period's seed draws other leaves: most answers no longer verify.
    stale = check_proof(
        seed=SEED, provider=PROVIDER, period=10, index=index, challenges=46, call=call
    )
    assert not stale.valid and len(stale.failed) > 10

    bad_leaf = call.leaves[7][:100] + bytes([call.leaves[7][100] ^ 0x80]) + call.leaves[7][101:]
    forged = ProofCall((*call.leaves[:7], bad_leaf, *call.leaves[8:]), call.paths)
    verdict = check_proof(
        seed=SEED, provider=PROVIDER, period=9, index=index, challenges=46, call=forged
    )
    assert not verdict.valid and verdict.failed == (7,) and "challenge 7" in verdict.reason

    short = ProofCall(call.leaves[:45], call.paths[:45])
    assert (
        "45 proofs"
        in check_proof(
            seed=SEED, provider=PROVIDER, period=9, index=index, challenges=46, call=short
        ).reason
    )

    empty = SlotIndex.of([], 9)
    assert not check_proof(
        seed=SEED, provider=PROVIDER, period=9, index=empty, challenges=46, call=call
    ).valid

    # A path of another leaf, or one too long for the contract, fails.
    other = next(i for i in range(1, 46) if call.paths[i] != call.paths[0])
    swapped = ProofCall(call.leaves, (call.paths[other], *call.paths[1:]))
    assert (
        0
        in check_proof(
            seed=SEED, provider=PROVIDER, period=9, index=index, challenges=46, call=swapped
        ).failed
    )
    long_path = ProofCall(call.leaves, ((bytes(32),) * 41, *call.paths[1:]))
    assert (
        0
        in check_proof(
            seed=SEED, provider=PROVIDER, period=9, index=index, challenges=46, call=long_path
        ).failed
    )
