"""The swarm's one configuration dataclass: every tunable of downloading and serving."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SwarmConfig:
    """
    Tunables of ``/depot/swarm/1``, for both the downloading and the serving side.

    Times are in seconds, rates in bytes per second, sizes in bytes. The defaults suit
    both loopback and wide-area links; tests shrink the timeouts.
    """

    # -- downloading ---------------------------------------------------------------------
    initial_pipeline: int = 4
    """Requests in flight to a peer before its rate is known."""
    min_pipeline: int = 2
    """Requests always kept in flight to an unchoked, healthy peer."""
    max_pipeline: int = 32
    """Most requests in flight to one peer (bounds what one peer can hold hostage)."""
    request_batch: int = 4
    """A pipeline deeper than ``min_pipeline`` is topped up only when this many requests
    can go out together (fewer small writes)."""
    pipeline_seconds: float = 0.25
    """Pipeline depth is sized to this many seconds of the peer's measured rate, the way
    libtorrent's ``request_queue_time`` sizes its request queue."""
    rate_time_constant: float = 1.0
    """Time constant of the exponentially weighted per-peer rate estimate."""
    stall_timeout: float = 5.0
    """A peer with requests outstanding that delivers nothing for this long is stalled:
    its requests go to other peers and it gets no new ones until it delivers again."""
    max_stalls: int = 3
    """Stalls after which the peer's link is dropped."""
    ban_faults: int = 3
    """Faults (corrupt chunk, unsolicited chunk, lie in the have-bitfield) before a ban.
    A layer that does not match the root bans at once: it cannot be an accident."""
    endgame_copies: int = 2
    """In endgame, each missing chunk of a stripe may be requested from up to this many
    peers at once (BitTorrent's endgame mode); the losers are cancelled."""
    slow_fraction: float = 0.1
    """A peer delivering less than this fraction of the fastest peer's rate is slow: it is
    kept at ``min_pipeline`` so that it cannot hold many chunks back."""
    reconnect_attempts: int = 2
    """How often a link that closed (not banned) is dialled again."""
    reconnect_backoff: float = 0.5
    """Delay before the first redial; doubled at each attempt."""
    state_save_interval: float = 1.0
    """How often a resumable download persists its state (also on completion and close)."""
    reverify_on_resume: bool = True
    """Re-hash chunks recorded as done when a download resumes (guards against a torn
    write or a disk that lost data since)."""

    # -- serving -------------------------------------------------------------------------
    upload_slots: int = 8
    """Peers unchoked at once, the optimistic slot included (BEP 3 uses 4)."""
    optimistic_slots: int = 1
    """Of ``upload_slots``, how many rotate by optimistic unchoke (Cohen 2003, §2.3)."""
    rechoke_interval: float = 10.0
    """Seconds between tit-for-tat rechokes (BEP 3, Cohen 2003)."""
    optimistic_interval: float = 30.0
    """Seconds between optimistic unchoke rotations (BEP 3, Cohen 2003)."""
    peer_upload_rate: float | None = None
    """Upload cap per peer; ``None`` for none."""
    upload_rate: float | None = None
    """Upload cap of the whole node, shared fairly between peers; ``None`` for none."""
    burst_seconds: float = 0.05
    """Token bucket depth, in seconds of the configured rate."""
    max_queued_requests: int = 256
    """Requests a peer may have queued at a server; more is a protocol violation."""
    handshake_timeout: float = 10.0
    """Time for a peer to send its first message on a new stream."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_pipeline <= self.initial_pipeline <= self.max_pipeline:
            raise ValueError("need 1 <= min_pipeline <= initial_pipeline <= max_pipeline")
        if self.endgame_copies < 1 or self.ban_faults < 1 or self.max_stalls < 1:
            raise ValueError("endgame_copies, ban_faults and max_stalls must be positive")
        if not 0 <= self.optimistic_slots < self.upload_slots:
            raise ValueError("need 0 <= optimistic_slots < upload_slots")
        for name in ("peer_upload_rate", "upload_rate"):
            rate = getattr(self, name)
            if rate is not None and rate <= 0:
                raise ValueError(f"{name} must be positive or None")
