"""
Our own mirror of the contract's challenge set, and the challenges located in it (sans-I/O).

The contract keeps, per provider and epoch, slots in append order (``proving.vy``): a deal
accepted during period ``q`` appends its piece, challenged from ``q + 1`` on; a retirement
queued during ``q`` takes effect from ``q + 1`` (``retired_from``). The challenged range of
period ``p`` is the leaves of the slots live in ``p``; challenge ``i`` is
``challenge_index(seed, provider, p, i, range)`` (contracts.spec.challenge), located by
walking the slots in order. Slots added during ``p`` sit after every live one, so they never
catch an index of ``p``.

The mirror is filled from the chain's slots at start (``reset``) and kept current from
``DealAccepted`` and ``SlotRetired`` events, so that locating the period's challenges needs
two reads (the seed and the provider's proving state, to cross-check the range) rather than
one per slot. ``live_leaves(p)`` disagreeing with the contract's range means the mirror
missed something: the daemon then re-reads the slots.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, replace
from itertools import accumulate

from contracts.spec import challenge as challenge_spec
from contracts.spec.commitment import leaf_count


@dataclass(frozen=True)
class MirrorSlot:
    """One piece in the provider's challenge set."""

    index: int
    deal_id: int
    piece_root: bytes
    piece_size: int
    live_from: int
    """First period the slot is challenged (its deal's ``start``)."""
    retired_from: int = 0
    """First period it is no longer challenged (0: not retired)."""

    @property
    def leaves(self) -> int:
        return leaf_count(self.piece_size)

    def weight(self, period: int) -> int:
        """Leaves the slot contributes to ``period``'s challenge walk."""
        if period < self.live_from or (self.retired_from and self.retired_from <= period):
            return 0
        return self.leaves


@dataclass(frozen=True)
class LocatedChallenge:
    """Challenge ``i`` of a period: which piece and which leaf of it to answer with."""

    i: int
    index: int
    slot: int
    deal_id: int
    piece_root: bytes
    piece_size: int
    leaf: int


class SlotMirror:
    """The slots of the provider's current epoch, in slot order."""

    def __init__(self, epoch: int = 0, slots: Iterable[MirrorSlot] = ()) -> None:
        self.epoch = epoch
        self.slots: list[MirrorSlot] = []
        self.reset(epoch, slots)

    def reset(self, epoch: int, slots: Iterable[MirrorSlot]) -> None:
        """Replace the whole set (after reading it from the chain)."""
        ordered = sorted(slots, key=lambda s: s.index)
        if [s.index for s in ordered] != list(range(len(ordered))):
            raise ValueError("slots must be numbered 0..n-1 without gaps")
        self.epoch = epoch
        self.slots = ordered

    def add(self, epoch: int, slot: MirrorSlot) -> bool:
        """
        Append a slot from a ``DealAccepted`` event. A new epoch (after a termination)
        starts an empty set. Returns False if the slot does not extend the set in order
        (the mirror is behind or ahead: re-read it).
        """
        if epoch != self.epoch:
            if epoch < self.epoch:
                return True  # an old epoch's slot: never challenged again
            self.epoch, self.slots = epoch, []
        if slot.index < len(self.slots):
            return self.slots[slot.index].deal_id == slot.deal_id  # seen already
        if slot.index != len(self.slots):
            return False
        self.slots.append(slot)
        return True

    def retire(self, epoch: int, index: int, from_period: int) -> bool:
        """Apply a ``SlotRetired`` event; False if the slot is unknown (re-read)."""
        if epoch != self.epoch:
            return True
        if index >= len(self.slots):
            return False
        self.slots[index] = replace(self.slots[index], retired_from=from_period)
        return True

    def live_leaves(self, period: int) -> int:
        """The challenged range of ``period`` (the contract's ``live_leaves``)."""
        return sum(s.weight(period) for s in self.slots)

    def deal_ids(self, period: int) -> set[int]:
        """Deals whose pieces can be challenged in ``period``."""
        return {s.deal_id for s in self.slots if s.weight(period)}

    def locate(self, seed: bytes, provider: str, period: int, count: int) -> list[LocatedChallenge]:
        """
        The ``count`` challenges of ``period`` in proof order.

        Raises
        ------
        contracts.spec.challenge.ChallengeError
            Nothing is challenged in ``period``.
        """
        weights = [s.weight(period) for s in self.slots]
        ends = list(accumulate(weights))
        total = ends[-1] if ends else 0
        out = []
        for i in range(count):
            index = challenge_spec.challenge_index(seed, provider, period, i, total)
            # The first slot whose cumulative end exceeds the index (``locate`` of the spec).
            slot = bisect.bisect_right(ends, index)
            start = ends[slot] - weights[slot]
            s = self.slots[slot]
            out.append(
                LocatedChallenge(
                    i, index, slot, s.deal_id, s.piece_root, s.piece_size, index - start
                )
            )
        return out


def slots_from_chain(
    infos: Iterable[tuple[int, bytes, int, int, int]], current: int, pending_leaves: int
) -> list[MirrorSlot]:
    """
    Mirror slots from the chain's slot records ``(deal_id, root, size, index, retired_from)``
    in slot order. The chain does not keep when a slot became live; the most recent slots
    holding ``pending_leaves`` leaves (the provider's ``pending_leaves``) were added during
    ``current`` and are live from ``current + 1``, the rest already are.
    """
    raw = list(infos)
    live_from = [0] * len(raw)
    remaining = pending_leaves
    for position in range(len(raw) - 1, -1, -1):
        if remaining <= 0:
            break
        live_from[position] = current + 1
        remaining -= leaf_count(raw[position][2])
    return [
        MirrorSlot(index, deal_id, root, size, live_from[position], retired)
        for position, (deal_id, root, size, index, retired) in enumerate(raw)
    ]
