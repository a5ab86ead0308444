"""
The life of one placement: a share proposed to one provider, up to an active deal and its end.

A placement is one signed proposal (one nonce). Its state is kept in the database before
each step that the chain or the provider could act on, so that an interrupted put knows,
for every nonce it ever signed, whether it may still be accepted (cancel it or wait for
it), became a deal (keep it), or is dead.

::

    SIGNED --accepted--> ACCEPTED --uploaded--> UPLOADED --activated--> ACTIVE
    SIGNED | ACCEPTED | UPLOADED --failed--> FAILED --cancelled--> CANCELLED
                                                     --expired--> EXPIRED
    any of SIGNED, ACCEPTED, UPLOADED, FAILED --activated--> ACTIVE   (found on chain)
    ACTIVE --ended--> ENDED (ran its course)    ACTIVE --lost--> LOST (terminated, loss)

The table is the whole state machine: any other transition raises ``IllegalTransition``.
"""

from __future__ import annotations

import enum
from typing import Final

from market.errors import LocalError


class IllegalTransition(LocalError):
    """A placement was driven through a transition its table does not allow (a bug)."""


class State(enum.StrEnum):
    SIGNED = "signed"
    """Proposal signed and recorded; maybe sent. The nonce is live on chain."""
    ACCEPTED = "accepted"
    """The provider said yes; the upload may start."""
    UPLOADED = "uploaded"
    """The provider verified and stored the piece; it has yet to accept on chain."""
    ACTIVE = "active"
    """The deal is on chain and checked against the proposal."""
    FAILED = "failed"
    """The provider refused, failed or timed out; the nonce may still be live."""
    CANCELLED = "cancelled"
    """The nonce was cancelled on chain: this proposal can never become a deal."""
    EXPIRED = "expired"
    """The proposal's expiry block passed unaccepted: it can never become a deal."""
    ENDED = "ended"
    """The deal ran to its end."""
    LOST = "lost"
    """The deal stopped early (provider terminated for faults, loss declared)."""


class Trigger(enum.StrEnum):
    ACCEPTED = "accepted"
    UPLOADED = "uploaded"
    ACTIVATED = "activated"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    ENDED = "ended"
    LOST = "lost"


_PENDING: Final = (State.SIGNED, State.ACCEPTED, State.UPLOADED)

TRANSITIONS: Final[dict[tuple[State, Trigger], State]] = {
    (State.SIGNED, Trigger.ACCEPTED): State.ACCEPTED,
    (State.ACCEPTED, Trigger.UPLOADED): State.UPLOADED,
    **{(s, Trigger.ACTIVATED): State.ACTIVE for s in (*_PENDING, State.FAILED)},
    **{(s, Trigger.FAILED): State.FAILED for s in _PENDING},
    (State.FAILED, Trigger.CANCELLED): State.CANCELLED,
    (State.FAILED, Trigger.EXPIRED): State.EXPIRED,
    (State.ACTIVE, Trigger.ENDED): State.ENDED,
    (State.ACTIVE, Trigger.LOST): State.LOST,
}

LIVE_NONCE: Final = frozenset({*_PENDING, State.FAILED})
"""States in which the proposal's nonce may still be accepted on chain."""
IN_FLIGHT: Final = frozenset(_PENDING)
"""States of a placement that is still being worked on."""
DEAD: Final = frozenset({State.CANCELLED, State.EXPIRED})
"""Proposals that never became a deal and never can."""


def advance(state: State, trigger: Trigger) -> State:
    """The state after ``trigger``; ``IllegalTransition`` if the table has no such edge."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise IllegalTransition(f"placement cannot go from {state} on {trigger}") from None
