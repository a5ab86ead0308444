"""
The iterative node lookup (Maymounkov & Mazières 2002, section 2.3), with the disjoint
paths of S/Kademlia (Baumgart & Mies 2007, section 4.4). Pure state machine: the core feeds
it replies, failures and stalls, and asks it which contacts to query next.

Each path keeps its candidates sorted by XOR distance to the target and keeps up to
``alpha`` requests in flight to the closest candidates it has not queried, instead of the
paper's strict rounds (the same rule, without waiting for the slowest of a round). A request
unanswered after the stall timeout stops counting against ``alpha`` and is "removed from
consideration until and unless [it does] respond" (section 2.3). A path has converged when
the ``k`` closest candidates that did not fail or stall have all answered.

Disjoint paths: the initial contacts are dealt round-robin over ``d`` paths, and a contact
belongs to the first path that learns of it, so no node is queried by two paths. The
lookup only fails if *every* path is led astray, which is what makes an adversary that
controls some of the nodes on the way need to control a node on every path
(S/Kademlia section 4.4).
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from enum import Enum

from node.kademlia.messages import PeerInfo, ProviderRecord
from node.kademlia.routing import id_int


class LookupKind(Enum):
    FIND_NODE = "find_node"
    GET_PROVIDERS = "get_providers"
    GET_VALUE = "get_value"


class CandidateState(Enum):
    NEW = 0
    WAITING = 1
    STALLED = 2
    ANSWERED = 3
    FAILED = 4


@dataclass(slots=True)
class Candidate:
    distance: int
    peer: PeerInfo = field(compare=False)
    depth: int = field(compare=False)
    """Hops from us: 1 for contacts from our own table, n + 1 for contacts learned from a
    candidate at depth n."""
    path: int = field(compare=False)
    state: CandidateState = field(default=CandidateState.NEW, compare=False)

    def __lt__(self, other: Candidate) -> bool:
        return self.distance < other.distance


@dataclass(slots=True)
class _Path:
    candidates: list[Candidate] = field(default_factory=list)
    in_flight: int = 0
    converged: bool = False


class Lookup:
    """One iterative lookup for ``target``, over ``paths`` disjoint paths."""

    def __init__(
        self,
        lookup_id: int,
        kind: LookupKind,
        target: bytes,
        *,
        k: int,
        alpha: int,
        paths: int,
        seeds: list[PeerInfo],
        self_id: bytes,
        started: float,
        want: int | None = None,
        internal: bool = False,
    ) -> None:
        self.lookup_id = lookup_id
        self.kind = kind
        self.target = target
        self.target_n = id_int(target)
        self.k = k
        self.alpha = alpha
        self.started = started
        self.want = want
        """GET_PROVIDERS stops once this many providers are found (``None``: converge)."""
        self.internal = internal
        """A lookup of our own (refresh, store, bootstrap): no event for the application."""
        self.self_id = self_id
        self.paths = [_Path() for _ in range(max(1, min(paths, len(seeds))))]
        self.known: dict[bytes, Candidate] = {}
        self.records: dict[bytes, ProviderRecord] = {}
        self.value: bytes | None = None
        self.value_expiry = 0
        self.found_depth = 0
        """Depth of the first node that returned a record or value (the lookup's hops)."""
        self.queried = 0
        self.failed = 0
        self.done = False
        ordered = sorted(seeds, key=lambda p: id_int(p.node_id) ^ self.target_n)
        for i, peer in enumerate(ordered):
            self._learn(peer, depth=1, path=i % len(self.paths))

    # --- inputs -------------------------------------------------------------------------

    def next_queries(self) -> list[Candidate]:
        """
        Candidates to query now (marked WAITING), and each path's convergence updated in the
        same pass: a path has converged when no candidate among its k closest that did not
        fail or stall is still to be asked or awaited.
        """
        out: list[Candidate] = []
        if self.done:
            return out
        k = self.k
        for path in self.paths:
            if path.converged:
                continue
            budget = self.alpha - path.in_flight
            window = 0
            pending = False
            for c in path.candidates:
                if window >= k:
                    break
                state = c.state
                if state is CandidateState.FAILED or state is CandidateState.STALLED:
                    continue
                window += 1
                if state is CandidateState.NEW:
                    pending = True
                    if budget > 0:
                        c.state = CandidateState.WAITING
                        path.in_flight += 1
                        budget -= 1
                        self.queried += 1
                        out.append(c)
                elif state is CandidateState.WAITING:
                    pending = True
            path.converged = not pending
        return out

    def on_reply(self, c: Candidate, closer: tuple[PeerInfo, ...]) -> None:
        """``c`` answered with these contacts."""
        if c.state is CandidateState.WAITING:
            self.paths[c.path].in_flight -= 1
        c.state = CandidateState.ANSWERED
        known = self.known
        depth = c.depth + 1
        for peer in closer:
            if peer.node_id not in known:
                self._learn(peer, depth, c.path)

    def on_stall(self, c: Candidate) -> None:
        """``c`` has not answered within the stall timeout."""
        if c.state is CandidateState.WAITING:
            self.paths[c.path].in_flight -= 1
            c.state = CandidateState.STALLED

    def on_failure(self, c: Candidate) -> None:
        if c.state is CandidateState.WAITING:
            self.paths[c.path].in_flight -= 1
        if c.state is not CandidateState.ANSWERED:
            c.state = CandidateState.FAILED
            self.failed += 1

    def found_records(self, c: Candidate, records: list[ProviderRecord]) -> None:
        """Verified records returned by ``c``; newest seq per provider is kept."""
        for r in records:
            old = self.records.get(r.node_id)
            if old is None or r.seq > old.seq:
                self.records[r.node_id] = r
        if records and not self.found_depth:
            self.found_depth = c.depth

    def found_value(self, c: Candidate, value: bytes, expiry: int) -> None:
        if self.value is None:
            self.value = value
            self.value_expiry = expiry
            self.found_depth = c.depth

    # --- state --------------------------------------------------------------------------

    def check_done(self) -> bool:
        """
        Whether the lookup is over: its result is in (a value, ``want`` providers) or every
        path converged as of the last ``next_queries``.
        """
        if not self.done:
            self.done = (
                (self.kind is LookupKind.GET_VALUE and self.value is not None)
                or (
                    self.kind is LookupKind.GET_PROVIDERS
                    and self.want is not None
                    and len(self.records) >= self.want
                )
                or all(p.converged for p in self.paths)
            )
        return self.done

    def closest(self) -> list[Candidate]:
        """The ``k`` closest candidates that answered, over all paths, nearest first."""
        answered = [c for c in self.known.values() if c.state is CandidateState.ANSWERED]
        answered.sort()
        return answered[: self.k]

    def hops(self) -> int:
        """Depth of the node that answered (GET_*), or of the closest node found."""
        if self.found_depth:
            return self.found_depth
        best = self.closest()
        return best[0].depth if best else 0

    # --- internals ----------------------------------------------------------------------

    def _learn(self, peer: PeerInfo, depth: int, path: int) -> None:
        node_id = peer.node_id
        if node_id == self.self_id or not peer.addrs:
            return
        if node_id in self.known:
            return  # first path to learn of a node owns it (disjointness)
        c = Candidate(id_int(node_id) ^ self.target_n, peer, depth, path)
        self.known[node_id] = c
        p = self.paths[path]
        insort(p.candidates, c)
        p.converged = False
