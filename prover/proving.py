"""
One proving round per period, as a state machine table (sans-I/O).

    IDLE ──WindowOpened──► WINDOW_OPEN ──ProvingStarted──► PROVING ──ProofSent──► SUBMITTED
                               ▲                              │                      │
                               └──────── AttemptFailed ◄──────┴──────────────────────┤
                                                              │                      │
                                             PiecesLost ──────┤          ProofConfirmed
                                                              ▼                      ▼
                               WindowClosed (not SUBMITTED) ► MISSED              CONFIRMED
                               FoundProven (from any state) ─────────────────────► CONFIRMED

The schedule (contracts.spec.schedule): the seed of period ``p`` is the hash of its first
block; a proof is accepted from the block after it to the period's last block
(``deadline_block``). So once the head is the seed block the window is open (a transaction
sent now lands after it), and once the head is the deadline block it is closed (a
transaction sent now lands in ``p + 1``). ``next_step`` is the whole policy: open, prove as
soon as the window is open, retry after a failed attempt while the window lasts, give up
when it closes. The chain is the truth: ``FoundProven`` (``is_proven`` or a
``ProofSubmitted`` event) confirms a round from any state, so a restart never proves a
period twice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from contracts.spec.schedule import Schedule
from prover.errors import IllegalTransition


class RoundState(enum.StrEnum):
    IDLE = "idle"
    WINDOW_OPEN = "window_open"
    PROVING = "proving"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    MISSED = "missed"


@dataclass(frozen=True)
class WindowOpened:
    """The period's seed block was mined: challenges are known, a proof can land."""

    period: int
    head: int


@dataclass(frozen=True)
class ProvingStarted:
    """We began locating the challenges and reading the leaves."""

    period: int


@dataclass(frozen=True)
class ProofSent:
    """The proof transaction was handed to the node."""

    period: int
    build_seconds: float
    """From the start of proving to the proof being ready (seed read, challenges located,
    leaves read, hashed and checked)."""


@dataclass(frozen=True)
class ProofConfirmed:
    """Our proof transaction was mined and succeeded."""

    period: int
    tx_hash: str
    block: int


@dataclass(frozen=True)
class FoundProven:
    """The chain says the period is proven (restart, lost receipt, or a racing attempt)."""

    period: int
    tx_hash: str | None = None
    block: int | None = None


@dataclass(frozen=True)
class AttemptFailed:
    """An attempt failed in a way worth retrying (RPC down, revert, stuck transaction)."""

    period: int
    reason: str


@dataclass(frozen=True)
class PiecesLost:
    """A challenged piece is missing or rotten: the period cannot be proven."""

    period: int
    roots: tuple[bytes, ...]
    reason: str


@dataclass(frozen=True)
class WindowClosed:
    """The head reached the window's last block; a proof sent now would be too late."""

    period: int


RoundEvent = (
    WindowOpened
    | ProvingStarted
    | ProofSent
    | ProofConfirmed
    | FoundProven
    | AttemptFailed
    | PiecesLost
    | WindowClosed
)

S = RoundState
TRANSITIONS: Final[dict[tuple[RoundState, type], RoundState]] = {
    (S.IDLE, WindowOpened): S.WINDOW_OPEN,
    (S.IDLE, WindowClosed): S.MISSED,
    (S.WINDOW_OPEN, ProvingStarted): S.PROVING,
    (S.WINDOW_OPEN, WindowClosed): S.MISSED,
    (S.PROVING, ProofSent): S.SUBMITTED,
    (S.PROVING, AttemptFailed): S.WINDOW_OPEN,
    (S.PROVING, PiecesLost): S.MISSED,
    (S.PROVING, WindowClosed): S.MISSED,
    (S.SUBMITTED, ProofConfirmed): S.CONFIRMED,
    (S.SUBMITTED, AttemptFailed): S.WINDOW_OPEN,
    # A sent transaction may still be mined in the window's last block: wait for its fate.
    (S.SUBMITTED, WindowClosed): S.SUBMITTED,
    (S.CONFIRMED, WindowClosed): S.CONFIRMED,
    (S.MISSED, WindowClosed): S.MISSED,
    **{(state, FoundProven): S.CONFIRMED for state in RoundState},
}


class Step(enum.Enum):
    """What the adapter should do next for a round (``next_step``)."""

    WAIT = "wait"
    OPEN = "open"
    PROVE = "prove"
    CLOSE = "close"
    DONE = "done"


@dataclass
class ProvingRound:
    """The proving of one period."""

    period: int
    seed_block: int
    deadline_block: int
    """Last block in which the proof is accepted."""
    state: RoundState = RoundState.IDLE
    attempts: int = 0
    build_seconds: float | None = None
    tx_hash: str | None = None
    block: int | None = None
    reason: str | None = None
    history: list[RoundEvent] = field(default_factory=list)

    @classmethod
    def for_period(cls, schedule: Schedule, period: int) -> ProvingRound:
        window = schedule.window(period)
        return cls(period, schedule.seed_block(period), window.stop - 1)

    @property
    def window_blocks(self) -> int:
        """Blocks in which the proof may land."""
        return self.deadline_block - self.seed_block

    @property
    def margin_blocks(self) -> int | None:
        """Blocks of the window left after the proof was mined (None until then)."""
        return None if self.block is None else self.deadline_block - self.block

    @property
    def done(self) -> bool:
        return self.state in (RoundState.CONFIRMED, RoundState.MISSED)

    def apply(self, event: RoundEvent) -> RoundState:
        """Take one event through the table; ``IllegalTransition`` if it has no edge."""
        if event.period != self.period:
            raise IllegalTransition(f"event of period {event.period} fed to round {self.period}")
        new = TRANSITIONS.get((self.state, type(event)))
        if new is None:
            raise IllegalTransition(
                f"round {self.period}: {type(event).__name__} in state {self.state.value}"
            )
        if isinstance(event, ProvingStarted):
            self.attempts += 1
        elif isinstance(event, ProofSent):
            self.build_seconds = event.build_seconds
        elif isinstance(event, ProofConfirmed | FoundProven):
            self.tx_hash = event.tx_hash or self.tx_hash
            self.block = event.block if event.block is not None else self.block
            self.reason = None
        elif isinstance(event, AttemptFailed | PiecesLost):
            self.reason = event.reason
        elif isinstance(event, WindowClosed) and new is RoundState.MISSED and self.reason is None:
            self.reason = "window closed before a proof was mined"
        self.state = new
        self.history.append(event)
        return new


def next_step(round_: ProvingRound, head: int) -> Step:
    """
    The policy: what to do for ``round_`` now that the chain's head is ``head``.

    - a finished round needs nothing;
    - once the head is at or past the deadline block, a proof sent now lands too late:
      close the window (a SUBMITTED round keeps waiting for its receipt);
    - once the head is at or past the seed block, the window is open: prove at once (the
      earlier the proof lands, the larger the margin), and again after a failed attempt.
    """
    if round_.done:
        return Step.DONE
    if head >= round_.deadline_block:
        return Step.WAIT if round_.state is RoundState.SUBMITTED else Step.CLOSE
    if round_.state is RoundState.IDLE:
        return Step.OPEN if head >= round_.seed_block else Step.WAIT
    if round_.state is RoundState.WINDOW_OPEN:
        return Step.PROVE
    return Step.WAIT
