"""
What the swarm's cores report: frozen, past-tense events, plus the commands (things the
asyncio adapter must do for the core: dial, send, close).

``link`` is the index of the source in the session's source list: one link per
(peer, piece) pair.
"""

from __future__ import annotations

from dataclasses import dataclass


# -- commands ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dial:
    """Open the stream of ``link`` and call ``link_opened`` (or ``link_failed``)."""

    link: int


@dataclass(frozen=True)
class Send:
    """Send ``msg`` (a ``node.swarm.messages`` message) on the stream of ``link``."""

    link: int
    msg: object


@dataclass(frozen=True)
class Close:
    """Close the stream of ``link`` (the core has already forgotten its requests)."""

    link: int
    reason: str


Command = Dial | Send | Close


# -- events ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinkOpened:
    link: int


@dataclass(frozen=True)
class LinkClosed:
    link: int
    reason: str
    """Why: the peer closed, the dial failed, a stall, a ban, or the session ended."""
    will_retry: bool


@dataclass(frozen=True)
class HaveReceived:
    link: int
    chunks: int
    """How many chunks the peer claims to hold."""


@dataclass(frozen=True)
class LayerVerified:
    share: int
    link: int


@dataclass(frozen=True)
class ChunkVerified:
    """A chunk matched its layer entry: the adapter writes it to the sink."""

    share: int
    index: int
    data: bytes | memoryview
    link: int


@dataclass(frozen=True)
class ChunkRejected:
    """Data from ``link`` failed verification (or was not asked for) and was discarded."""

    share: int
    index: int
    link: int
    reason: str


@dataclass(frozen=True)
class DuplicateDropped:
    """A chunk arrived after another copy had completed its stripe (endgame loser)."""

    link: int
    index: int
    size: int


@dataclass(frozen=True)
class PeerPenalised:
    link: int
    kind: str
    """``corrupt`` (hash mismatch), ``missing`` (lie in the bitfield), ``unsolicited``,
    ``protocol`` (malformed or out-of-state message)."""
    reason: str
    faults: int


@dataclass(frozen=True)
class PeerBanned:
    link: int
    kind: str
    """Kind of the last fault, or ``bad-layer``."""
    reason: str


@dataclass(frozen=True)
class PeerStalled:
    """``link`` delivered nothing for ``stall_timeout`` with requests outstanding."""

    link: int
    stalls: int
    requeued: int
    """Requests handed to other peers."""


@dataclass(frozen=True)
class PeerSlowed:
    """``link`` is far slower than the fastest peer; its pipeline was cut to the minimum."""

    link: int
    rate: float


@dataclass(frozen=True)
class RequestsCancelled:
    """Chunks that arrived from elsewhere were cancelled at ``link`` (endgame losers)."""

    link: int
    indices: tuple[int, ...]


@dataclass(frozen=True)
class EndgameEntered:
    remaining: int
    """Stripes not yet complete."""


@dataclass(frozen=True)
class SessionCompleted:
    elapsed: float
    ttfb: float | None
    """Seconds from start to the first verified chunk (``None`` if all came from disk)."""


@dataclass(frozen=True)
class SessionFailed:
    reason: str


Event = (
    LinkOpened
    | LinkClosed
    | HaveReceived
    | LayerVerified
    | ChunkVerified
    | ChunkRejected
    | DuplicateDropped
    | PeerPenalised
    | PeerBanned
    | PeerStalled
    | PeerSlowed
    | RequestsCancelled
    | EndgameEntered
    | SessionCompleted
    | SessionFailed
)
