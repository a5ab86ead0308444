"""Counters and histograms of one Kademlia node, plain data for the daemons' exporters."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

LATENCY_BOUNDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.2, 1.6, 2.4, 3.2, 6.4, 12.8, math.inf)
"""Seconds (upper bounds, Prometheus ``le`` style)."""
HOPS_BOUNDS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, math.inf)


@dataclass(slots=True)
class Histogram:
    """Cumulative-free bucket counts with a sum, like a Prometheus histogram."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.total += value
        self.count += 1


@dataclass(slots=True)
class KademliaStats:
    """How many, how fast, how late: what an operator asks of a DHT node."""

    lookups: dict[str, int] = field(default_factory=dict)
    """Application lookups finished, by kind."""
    lookups_ok: dict[str, int] = field(default_factory=dict)
    lookup_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BOUNDS))
    lookup_hops: Histogram = field(default_factory=lambda: Histogram(HOPS_BOUNDS))
    rpcs_sent: int = 0
    rpcs_failed: int = 0
    requests_served: int = 0
    records_accepted: int = 0
    values_accepted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    """Bad input from peers, by reason (garbage, bad signature, expired record, ...)."""

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
