"""
Choking: which interested peers a serving node uploads to, sans-I/O.

The algorithm of BitTorrent (BEP 3; B. Cohen, "Incentives Build Robustness in
BitTorrent", 2003, §3 "Choking Algorithms"):

- At most ``upload_slots`` peers are unchoked at once. Every ``rechoke_interval`` the
  regular slots go to the interested peers that uploaded the most *to us* during the last
  interval (tit-for-tat: peers that trade with us are served first). Peers that upload
  nothing to us (plain downloaders: a client fetching a file, a provider repairing) are
  ranked by how little we sent them during the interval, so the upload rotates between
  them round-robin, like libtorrent's round-robin seed choker, and one greedy peer cannot
  keep a slot at the others' expense.
- ``optimistic_slots`` more rotate every ``optimistic_interval`` to a random choked,
  interested peer (Cohen §3.2 "Optimistic Unchoking"): how a newcomer with nothing to
  trade gets its first data and how a better trading partner is discovered. Newcomers get
  three times the weight of other candidates, as in the mainline client.
- When fewer peers are interested than there are slots, every interested peer is unchoked
  at once rather than at the next rechoke.

Per-peer and node-wide rate caps are separate (``node.swarm.ratelimit``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")

NEWCOMER_WEIGHT = 3
"""Weight of a newly connected peer in the optimistic draw (mainline BitTorrent)."""
NEWCOMER_ROUNDS = 3
"""A peer is a newcomer for this many rechoke intervals after it connects."""


@dataclass(eq=False)
class _Peer:
    joined: float
    interested: bool = False
    unchoked: bool = False
    optimistic: bool = False
    received: int = 0
    """Bytes this peer uploaded to us since the last rechoke."""
    sent: int = 0
    """Bytes we uploaded to this peer since the last rechoke."""


@dataclass
class Choker(Generic[P]):
    """Tit-for-tat choker with optimistic unchoke; feed it events, apply what it returns."""

    upload_slots: int
    optimistic_slots: int
    rechoke_interval: float
    optimistic_interval: float
    rng: random.Random
    now: float
    _peers: dict[P, _Peer] = field(default_factory=dict)
    _next_rechoke: float = 0.0
    _next_optimistic: float = 0.0

    def __post_init__(self) -> None:
        self._next_rechoke = self.now + self.rechoke_interval
        self._next_optimistic = self.now + self.optimistic_interval

    # -- inputs ----------------------------------------------------------------------------
    def add(self, peer: P, now: float) -> None:
        """A peer connected (choked and not interested, BEP 3)."""
        self._peers.setdefault(peer, _Peer(joined=now))

    def remove(self, peer: P, now: float) -> list[tuple[P, bool]]:
        """A peer left; its slot goes to a waiting peer at once."""
        self._peers.pop(peer, None)
        return self._fill_free_slots(now)

    def set_interested(self, peer: P, interested: bool, now: float) -> list[tuple[P, bool]]:
        """The peer declared (or withdrew) interest; returns choke changes."""
        state = self._peers[peer]
        state.interested = interested
        changes: list[tuple[P, bool]] = []
        if not interested and state.unchoked:
            state.unchoked = state.optimistic = False
            changes.append((peer, False))
        return changes + self._fill_free_slots(now)

    def record(self, peer: P, *, received: int = 0, sent: int = 0) -> None:
        """Count bytes the peer uploaded to us and bytes we uploaded to it."""
        state = self._peers.get(peer)
        if state is not None:
            state.received += received
            state.sent += sent

    def is_unchoked(self, peer: P) -> bool:
        state = self._peers.get(peer)
        return state is not None and state.unchoked

    def unchoked(self) -> list[P]:
        return [p for p, s in self._peers.items() if s.unchoked]

    # -- timers ----------------------------------------------------------------------------
    def get_timer(self) -> float:
        return min(self._next_rechoke, self._next_optimistic)

    def handle_timer(self, now: float) -> list[tuple[P, bool]]:
        """Rechoke if due; returns ``(peer, unchoked)`` for every peer whose state changed."""
        if now < self.get_timer():
            return []
        rotate = now >= self._next_optimistic
        if rotate:
            self._next_optimistic = now + self.optimistic_interval
        self._next_rechoke = now + self.rechoke_interval
        return self._rechoke(now, rotate)

    # -- internals -------------------------------------------------------------------------
    def _rank_key(self, item: tuple[P, _Peer]) -> tuple[int, int, float]:
        _, s = item
        # Tit-for-tat first (most received), then round-robin among non-traders (least sent),
        # then seniority.
        return (-s.received, s.sent, s.joined)

    def _rechoke(self, now: float, rotate: bool) -> list[tuple[P, bool]]:
        before = {p: s.unchoked for p, s in self._peers.items()}
        interested = sorted(
            ((p, s) for p, s in self._peers.items() if s.interested), key=self._rank_key
        )
        regular = self.upload_slots - self.optimistic_slots
        chosen = {p for p, _ in interested[:regular]}
        kept_optimistic = [
            p for p, s in interested if s.optimistic and p not in chosen and not rotate
        ]
        optimistic = set(kept_optimistic[: self.optimistic_slots])
        candidates = [(p, s) for p, s in interested if p not in chosen and p not in optimistic]
        while len(optimistic) < self.optimistic_slots and candidates:
            young = now - self.rechoke_interval * NEWCOMER_ROUNDS
            weights = [NEWCOMER_WEIGHT if s.joined >= young else 1 for _, s in candidates]
            pick = self.rng.choices(range(len(candidates)), weights=weights)[0]
            optimistic.add(candidates.pop(pick)[0])
        for p, s in self._peers.items():
            s.unchoked = p in chosen or p in optimistic
            s.optimistic = p in optimistic
            s.received = s.sent = 0
        changes = [(p, s.unchoked) for p, s in self._peers.items() if before[p] != s.unchoked]
        return changes + self._fill_free_slots(now)

    def _fill_free_slots(self, now: float) -> list[tuple[P, bool]]:
        free = self.upload_slots - sum(1 for s in self._peers.values() if s.unchoked)
        if free <= 0:
            return []
        waiting = sorted(
            ((p, s) for p, s in self._peers.items() if s.interested and not s.unchoked),
            key=self._rank_key,
        )
        changes = []
        for p, s in waiting[:free]:
            s.unchoked = True
            changes.append((p, True))
        return changes
