"""
The prover's metrics, in the node's ``node.metrics.Registry`` so that one ``/metrics``
scrape shows the prover, the DHT, the swarm and the transport together.

Named for what an operator asks: how many proofs went through or were missed, how close to
the deadline they landed, how long they took to build, how many deals are in each state,
how full the disk is, whether the chain is reachable.
"""

from __future__ import annotations

from node.metrics import Registry

MARGIN_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)
BUILD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ProverMetrics:
    """Counters, gauges and histograms of one prover."""

    def __init__(self, registry: Registry) -> None:
        self.proofs = registry.counter(
            "depot_prover_proofs_total",
            "Proving rounds by outcome (confirmed, missed)",
            ("result",),
        )
        self.proof_attempts_failed = registry.counter(
            "depot_prover_proof_attempts_failed_total",
            "Proof attempts that failed and were retried, by reason",
            ("reason",),
        )
        self.margin = registry.histogram(
            "depot_prover_proof_margin_blocks",
            "Blocks left in the proving window when the proof was mined",
            buckets=MARGIN_BUCKETS,
        )
        self.last_margin = registry.gauge(
            "depot_prover_last_proof_margin_blocks", "Margin of the latest confirmed proof"
        )
        self.late = registry.counter(
            "depot_prover_proofs_late_total",
            "Proofs mined inside the safety margin before the deadline",
        )
        self.build_seconds = registry.histogram(
            "depot_prover_proof_build_seconds",
            "Seed read to proof ready: challenges located, leaves read and checked",
            buckets=BUILD_BUCKETS,
        )
        self.deals = registry.gauge("depot_prover_deals", "Deals by state", ("state",))
        self.proposals = registry.counter(
            "depot_prover_proposals_total", "Deal proposals by outcome", ("result",)
        )
        self.losses = registry.counter(
            "depot_prover_losses_declared_total", "Deals whose piece was declared lost"
        )
        self.bytes_stored = registry.gauge("depot_prover_stored_bytes", "Bytes of pieces held")
        self.bytes_free = registry.gauge(
            "depot_prover_free_bytes", "Bytes a new piece may still take"
        )
        self.capacity = registry.gauge("depot_prover_capacity_bytes", "Configured capacity")
        self.pieces = registry.gauge("depot_prover_pieces", "Pieces held")
        self.ingest_bytes = registry.counter(
            "depot_prover_ingested_bytes_total", "Bytes of pieces received and verified"
        )
        self.earned = registry.counter(
            "depot_prover_earned_tokens_total", "Tokens paid to the provider by settlements"
        )
        self.chain_up = registry.gauge(
            "depot_prover_chain_up", "1 while the RPC endpoint answers, 0 during an outage"
        )
        self.chain_head = registry.gauge("depot_prover_chain_head_block", "Latest block seen")
        self.chain_errors = registry.counter(
            "depot_prover_chain_errors_total", "Failed RPC calls (outages, timeouts)"
        )
        self.period = registry.gauge("depot_prover_period", "Current proving period")
        self.scrubbed = registry.counter(
            "depot_prover_scrubbed_bytes_total", "Bytes re-hashed by the background scrub"
        )
        self.manifests = registry.gauge("depot_prover_manifests", "Manifests stored")
        self.loop_lag = registry.histogram(
            "depot_prover_event_loop_lag_seconds",
            "How late the event loop woke up (a blocked loop delays proofs)",
            buckets=LAG_BUCKETS,
        )
