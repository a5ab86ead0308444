"""
How a file is doing: each deal's condition from the chain, and the file's health from its
shares' deals. Sans-I/O: the chain reads are made elsewhere (``market.status``) and passed
in; ``market repair`` acts on the same classification.

A deal is, in this order of precedence:

- ``closed``      settled to the end on chain;
- ``lost``        it stops before its end because the provider declared the piece lost;
- ``terminated``  it stops before its end because the provider was terminated for faults;
- ``ended``       it reached its last period;
- ``unproven``    the provider proved none of the last ``miss_threshold`` periods the deal
                  was challenged in (it may be gone: the share counts as missing);
- ``expiring``    it ends within ``renew_before`` periods;
- ``active``      none of the above.

A share is *alive* while one of its deals is ``active`` or ``expiring``. The file is
``healthy`` with all ``n`` shares alive, ``degraded`` with at least ``k``, ``lost`` below.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from contracts.chain import DealInfo


class DealCondition(enum.StrEnum):
    ACTIVE = "active"
    EXPIRING = "expiring"
    UNPROVEN = "unproven"
    ENDED = "ended"
    TERMINATED = "terminated"
    LOST = "lost"
    CLOSED = "closed"


ALIVE = frozenset({DealCondition.ACTIVE, DealCondition.EXPIRING})
GONE = frozenset(
    {DealCondition.ENDED, DealCondition.TERMINATED, DealCondition.LOST, DealCondition.CLOSED}
)
"""The deal will never be proven again: its row can be closed."""


def classify(
    deal: DealInfo,
    current_period: int,
    proven: Iterable[int],
    miss_threshold: int,
    renew_before: int,
) -> DealCondition:
    """The condition of ``deal`` in ``current_period`` (module docstring)."""
    if deal.closed:
        return DealCondition.CLOSED
    if deal.stop < deal.end:
        return DealCondition.LOST if deal.loss_end else DealCondition.TERMINATED
    if deal.stop <= current_period:
        return DealCondition.ENDED
    proven_set = set(proven)
    # Periods whose proof window is over: before the current one, not before the start.
    checked = [p for p in range(current_period - miss_threshold, current_period) if p >= deal.start]
    if len(checked) == miss_threshold and not proven_set.intersection(checked):
        return DealCondition.UNPROVEN
    if deal.end - current_period <= renew_before:
        return DealCondition.EXPIRING
    return DealCondition.ACTIVE


def proven_in(deal: DealInfo, current_period: int, proven: Iterable[int]) -> int:
    """Periods of the deal proven so far (challenged periods are [start, stop))."""
    last = min(deal.stop, current_period + 1)
    return sum(1 for p in set(proven) if deal.start <= p < last)


class FileHealth(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    LOST = "lost"


@dataclass(frozen=True)
class Health:
    state: FileHealth
    alive: int
    """Shares with a live deal."""
    needed: int
    """k: shares that rebuild the file."""
    total: int
    """n: shares made."""
    missing: tuple[int, ...]
    """Share indices without a live deal (to repair)."""
    expiring: tuple[int, ...]
    """Alive shares whose every live deal is expiring (to renew)."""


def file_health(k: int, n: int, conditions: Mapping[int, Iterable[DealCondition]]) -> Health:
    """The file's health from the conditions of each share's deals (share index -> list)."""
    missing, expiring = [], []
    alive = 0
    for index in range(n):
        conds = set(conditions.get(index, ()))
        if conds & ALIVE:
            alive += 1
            if DealCondition.ACTIVE not in conds:
                expiring.append(index)
        else:
            missing.append(index)
    if alive == n:
        state = FileHealth.HEALTHY
    elif alive >= k:
        state = FileHealth.DEGRADED
    else:
        state = FileHealth.LOST
    return Health(state, alive, k, n, tuple(missing), tuple(expiring))
