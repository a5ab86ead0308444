"""
The deal lifecycle as a table (the one place that says which state may follow which).

    RECEIVING ─piece stored─► ACTIVATING ─accepted on chain─► ACTIVE ─final settle─► CLOSED
        │                          │                            │                      │
        └────────► FAILED ◄────────┘                      loss declared          data deleted
                                                                ▼                     ▼
                                                              LOST ─final settle─► CLOSED ─► DELETED

- RECEIVING: the proposal passed admission and the client was told yes; we wait for the
  push of exactly its root and size. Nothing is on chain; a restart fails it.
- ACTIVATING: the piece is verified, fsynced and in the blob store; ``accept_deal`` is in
  flight. A restart asks the chain whether the nonce was used (then ACTIVE) or not (FAILED).
- ACTIVE: accepted on chain; proven every period from ``start``.
- LOST: the piece is gone or rotten and the loss was declared; the deal stops next period.
- CLOSED: the final settlement happened on chain; the data may go once the slot is retired.
- DELETED: the data was removed. FAILED: never started (no escrow moved). A deal is failed
  only once the chain shows its nonce unused past the proposal's expiry, so FAILED -> ACTIVE
  (the chain accepted it after all) is a safety net, not a path we expect.

A deal that the chain reports but that we have no row for (the database was lost) enters as
ACTIVE directly (``adopted``) when its piece is on disk, else as LOST.
"""

from __future__ import annotations

import enum
from typing import Final

from prover.errors import IllegalTransition


class DealState(enum.StrEnum):
    RECEIVING = "receiving"
    ACTIVATING = "activating"
    ACTIVE = "active"
    LOST = "lost"
    CLOSED = "closed"
    DELETED = "deleted"
    FAILED = "failed"


DEAL_TRANSITIONS: Final[dict[DealState, frozenset[DealState]]] = {
    DealState.RECEIVING: frozenset({DealState.ACTIVATING, DealState.FAILED}),
    # ACTIVATING -> ACTIVE by our receipt or by the chain's event; a crash in between fails it
    # only after the chain confirms that the nonce is unused.
    DealState.ACTIVATING: frozenset({DealState.ACTIVE, DealState.FAILED}),
    DealState.ACTIVE: frozenset({DealState.LOST, DealState.CLOSED}),
    DealState.LOST: frozenset({DealState.CLOSED}),
    DealState.CLOSED: frozenset({DealState.DELETED}),
    DealState.DELETED: frozenset(),
    # The chain overrules us: an accept whose fate we could not learn, mined after all.
    DealState.FAILED: frozenset({DealState.ACTIVE}),
}

LIVE_STATES: Final = frozenset({DealState.ACTIVE, DealState.LOST})
"""Accepted on chain and not closed yet: these are settled and (ACTIVE) proven."""
HOLDING_STATES: Final = frozenset(
    {DealState.ACTIVATING, DealState.ACTIVE, DealState.LOST, DealState.CLOSED}
)
"""States in which the deal's piece may still be needed on disk."""


def check_transition(old: DealState, new: DealState) -> None:
    """Raise ``IllegalTransition`` unless ``old -> new`` is an edge of the table."""
    if new not in DEAL_TRANSITIONS[old]:
        raise IllegalTransition(f"deal state {old.value} cannot become {new.value}")


class PieceState(enum.StrEnum):
    STORED = "stored"
    """Verified on arrival and on disk."""
    LOST = "lost"
    """Missing or rotten on disk (found by a proof or the scrub)."""
    DELETED = "deleted"
    """Removed after its deals closed."""
