"""
Independent proof checking: the contract's proof verification, re-done from the outside.

Sans-I/O and pure: the indexer feeds it the events in chain order (``ProviderBook``: a
provider's data sets, slot by slot, as ``DealAccepted``, ``SlotRetired`` and
``ProviderTerminated`` build them) and, for every proof transaction, the period's seed (the
hash of the seed block, read from the chain, not from the event) and the decoded calldata.
``check_proof`` then re-derives what the contract should have checked:

    live   = leaves of the provider's slots challenged in the period (the slot's deal
             started, i.e. was accepted before the period, and it is not retired)
    index_i = contracts.spec.challenge.challenge_index(seed, provider, period, i, live)
    (slot, leaf) = contracts.spec.challenge.locate(index_i, slot weights)
    ok_i   = contracts.spec.commitment.verify_leaf(root, size, leaf, leaf_i, path_i)

(computed with the equivalent fast variants of ``fastverify`` and ``SlotIndex.locate``)

and the verdict is valid only if every ``ok_i`` holds. The contract's own verdict (an
accepted proof emits ``ProofSubmitted``; a rejected one reverts) is never an input: the
indexer compares the two afterwards and raises an alarm when they differ.

``SlotIndex.locate`` is ``challenge.locate`` with a binary search over prefix sums (a
provider may hold thousands of slots); tests/auditor/test_checker.py holds it to the spec.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.spec import challenge as challenge_spec
from contracts.spec import commitment
from market.auditor import fastverify
from market.auditor.calldata import ProofCall


@dataclass
class Slot:
    """One piece in a provider's data set (one deal)."""

    deal_id: int
    piece_root: bytes
    piece_size: int
    start: int
    """First period the slot is challenged (the deal's start)."""
    retired_from: int = 0
    """First period it is no longer challenged; 0 while it is."""
    leaves: int = field(init=False)
    """The piece's leaf count (``commitment.leaf_count``)."""

    def __post_init__(self) -> None:
        self.leaves = commitment.leaf_count(self.piece_size)

    def weight(self, period: int) -> int:
        """Its leaves in ``period``'s challenge walk (0 before its start or once retired)."""
        if period < self.start or (self.retired_from and self.retired_from <= period):
            return 0
        return self.leaves


@dataclass
class ProviderBook:
    """A provider's data sets (one per epoch) rebuilt from the ledger's events."""

    epoch: int = 0
    """The current epoch: the number of terminations so far."""
    slots: dict[int, list[Slot]] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)
    """First period no longer challenged, per terminated epoch."""

    def add_slot(self, epoch: int, index: int, slot: Slot) -> None:
        """A ``DealAccepted``: slots are appended in order; a gap means we missed events."""
        slots = self.slots.setdefault(epoch, [])
        if index != len(slots):
            raise ValueError(f"slot {index} of epoch {epoch} after {len(slots)} slots")
        slots.append(slot)

    def retire(self, epoch: int, index: int, from_period: int) -> None:
        """A ``SlotRetired``."""
        self.slots[epoch][index].retired_from = from_period

    def terminate(self, epoch: int, end_period: int) -> None:
        """A ``ProviderTerminated`` of ``epoch``: the next data set starts empty."""
        self.ends[epoch] = end_period
        self.epoch = max(self.epoch, epoch + 1)

    def slot_index(self, epoch: int, period: int) -> SlotIndex:
        """The challenge walk of ``period`` over the data set of ``epoch``."""
        return SlotIndex.of(self.slots.get(epoch, []), period)

    def live_leaves(self, period: int) -> int:
        """Leaves challenged in ``period`` (over every epoch not terminated by then)."""
        return sum(
            s.weight(period)
            for epoch, slots in self.slots.items()
            if epoch not in self.ends or period < self.ends[epoch]
            for s in slots
        )


@dataclass(frozen=True)
class SlotIndex:
    """Prefix sums of the slot weights of one period, for ``locate`` in O(log n)."""

    slots: Sequence[Slot]
    ends: Sequence[int]
    """``ends[j]``: leaves in slots ``0..j`` (inclusive)."""

    @classmethod
    def of(cls, slots: Sequence[Slot], period: int) -> SlotIndex:
        return cls(slots, list(itertools.accumulate(s.weight(period) for s in slots)))

    @property
    def total(self) -> int:
        return self.ends[-1] if self.ends else 0

    def locate(self, index: int) -> tuple[int, int]:
        """``challenge.locate(index, weights)``: (slot, leaf within the slot)."""
        if not 0 <= index < self.total:
            raise challenge_spec.ChallengeError("index beyond the last live leaf")
        slot = bisect.bisect_right(self.ends, index)
        return slot, index - (self.ends[slot - 1] if slot else 0)


@dataclass(frozen=True)
class Verdict:
    """The auditor's own judgement of one proof transaction."""

    valid: bool
    reason: str
    """Empty when valid; else the first thing that failed."""
    live_leaves: int
    """The challenge range the auditor derived."""
    failed: tuple[int, ...] = ()
    """Challenge numbers whose leaf or path did not verify."""
    checked: bool = True
    """False when the proof could not be judged from the transaction (a call made through
    another contract: the proof is not in the transaction's calldata)."""


def check_proof(
    *,
    seed: bytes,
    provider: str,
    period: int,
    index: SlotIndex,
    challenges: int,
    call: ProofCall,
) -> Verdict:
    """
    Re-verify one proof as the contract's ``submit_proof`` must.

    Parameters
    ----------
    seed :
        The period's seed: the hash of its seed block, as read from the chain.
    provider :
        The prover's address.
    period :
        The period of the block the proof was mined in.
    index :
        The provider's challenge walk of ``period`` (``ProviderBook.slot_index``).
    challenges :
        The market's challenges per period.
    call :
        The decoded ``submit_proof`` arguments.
    """
    live = index.total
    if live == 0:
        return Verdict(False, "nothing to prove: no live leaves", live)
    if len(call.leaves) != challenges:
        return Verdict(False, f"{len(call.leaves)} proofs for {challenges} challenges", live)
    failed = []
    draws = fastverify.challenge_indices(seed, provider, period, challenges, live)
    for i, at in enumerate(draws):
        slot_no, leaf = index.locate(at)
        slot = index.slots[slot_no]
        if not fastverify.verify_leaf(
            slot.piece_root, slot.leaves, leaf, call.leaves[i], call.paths[i]
        ):
            failed.append(i)
    if failed:
        return Verdict(False, f"challenge {failed[0]} does not verify", live, tuple(failed))
    return Verdict(True, "", live)
