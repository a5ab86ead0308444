"""
Swarm counters in a ``node.metrics.Registry`` (the daemons export it on ``/metrics``).

Named for what an operator asks: how many bytes to and from each peer, how many chunks
failed verification, how many peers were banned or stalled, how long until the first
verified byte, how much was fetched twice.
"""

from __future__ import annotations

from typing import Final

from node.metrics import Registry

TTFB_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class SwarmMetrics:
    def __init__(self, registry: Registry) -> None:
        r = registry
        self.registry = r
        self.received = r.counter(
            "depot_swarm_received_bytes_total", "Chunk bytes received, per peer", ("peer",)
        )
        self.sent = r.counter(
            "depot_swarm_sent_bytes_total", "Chunk bytes sent, per peer", ("peer",)
        )
        self.verified = r.counter(
            "depot_swarm_chunks_verified_total", "Chunks that matched their layer"
        )
        self.verification_failures = r.counter(
            "depot_swarm_verification_failures_total",
            "Chunks or layers that did not match their root, per peer",
            ("peer",),
        )
        self.faults = r.counter(
            "depot_swarm_peer_faults_total", "Faults charged to peers, by kind", ("kind",)
        )
        self.bans = r.counter("depot_swarm_bans_total", "Peers banned from a download")
        self.stalls = r.counter("depot_swarm_stalls_total", "Peers that stalled with requests")
        self.wasted = r.counter(
            "depot_swarm_wasted_bytes_total", "Bytes received but not needed (endgame losers)"
        )
        self.ttfb = r.histogram(
            "depot_swarm_ttfb_seconds",
            "Download start to first verified chunk",
            buckets=TTFB_BUCKETS,
        )
        self.downloads = r.counter(
            "depot_swarm_downloads_total", "Download sessions, by result", ("result",)
        )
        self.pushes = r.counter(
            "depot_swarm_pushes_total", "Pieces pushed or received by push, by result", ("result",)
        )
        self.streams_served = r.counter(
            "depot_swarm_streams_served_total", "Streams served to downloaders"
        )
