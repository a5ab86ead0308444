"""
The DHT lookup experiment behind ``scripts/bench_dht.py``.

1. Start: ``nodes`` nodes, either with oracle-filled tables (``SimNetwork.fill_tables``) or
   by joining one after the other through the protocol (``start="join"``).
2. ``providers`` of them hold real Ed25519 keys and each provides one key (a signed record
   stored at the k closest nodes, republished hourly by the core). When a provider leaves,
   the node that replaces it provides a fresh key ``provide_delay`` after joining.
3. Churn runs for ``warmup`` seconds, so that tables hold what churn leaves in them (dead
   contacts, replacements, newcomers) before anything is measured.
4. Over the next ``measure`` seconds, ``lookups`` lookups start at uniformly random times
   from random ready nodes: half GET_PROVIDERS (``want=1``, over disjoint paths) for the key
   of a live provider, a success if that provider's record comes back; half FIND_NODE for
   the id of a live node, a success if that node is among the closest returned. A lookup
   whose own node leaves before it ends is *abandoned* and counted apart.
"""

from __future__ import annotations

import gc
import hashlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Literal

from node.kademlia.config import KademliaConfig
from node.kademlia.events import Event, LookupFinished, StoreFinished
from node.kademlia.lookup import LookupKind
from node.sim.network import NetworkConfig, SimNetwork, SimNode


@dataclass(frozen=True, slots=True)
class ExperimentConfig:
    nodes: int = 10_000
    providers: int = 200
    lookups: int = 10_000
    warmup: float = 1800.0
    measure: float = 1800.0
    start: Literal["oracle", "join"] = "oracle"
    join_spacing: float = 0.2
    """Seconds between joins when ``start == "join"``."""
    provide_delay: float = 10.0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    kad: KademliaConfig = field(default_factory=KademliaConfig)


@dataclass(frozen=True, slots=True)
class LookupSample:
    kind: LookupKind
    ok: bool
    hops: int
    latency: float
    queried: int
    failed: int


@dataclass(slots=True)
class ExperimentReport:
    config: ExperimentConfig
    samples: list[LookupSample] = field(default_factory=list)
    abandoned: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    """Process CPU time: the figure to compare on a shared machine."""
    sim_events: int = 0
    messages: int = 0
    joins_per_minute: float = 0.0
    leaves_per_minute: float = 0.0
    mean_table_size: float = 0.0
    records_stored: int = 0
    rpcs_failed: int = 0

    def kind(self, kind: LookupKind) -> list[LookupSample]:
        return [s for s in self.samples if s.kind is kind]

    def summary(self, kind: LookupKind) -> dict[str, float]:
        """Success rate, hops and latency percentiles (ms) of one kind of lookup."""
        samples = self.kind(kind)
        if not samples:
            return {"count": 0}
        ok = [s for s in samples if s.ok]
        lat = sorted(s.latency for s in ok) or [0.0]
        hops = [s.hops for s in ok] or [0]
        return {
            "count": len(samples),
            "success": len(ok) / len(samples),
            "hops_p50": statistics.median(hops),
            "hops_max": max(hops),
            "p50_ms": 1000 * _percentile(lat, 0.50),
            "p90_ms": 1000 * _percentile(lat, 0.90),
            "p99_ms": 1000 * _percentile(lat, 0.99),
            "queried_mean": statistics.fmean(s.queried for s in samples),
        }


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    i = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[i]


class Experiment:
    """Runs one ``ExperimentConfig`` and collects an ``ExperimentReport``."""

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.net = SimNetwork(config.network, config.kad, on_event=self._on_event)
        self.net.on_leave = self._on_leave
        self.net.on_join = self._on_join
        self.report = ExperimentReport(config)
        self._key_seq = 0
        self.live_keys: dict[bytes, SimNode] = {}
        """Published keys whose provider is online."""
        self._provider_key: dict[bytes, bytes] = {}
        self._pending: dict[tuple[bytes, int], tuple[LookupKind, bytes]] = {}
        self._measuring = False

    def run(self) -> ExperimentReport:
        cfg = self.config
        net = self.net
        wall, cpu = time.perf_counter(), time.process_time()
        nodes = [net.new_node(signing=i < cfg.providers) for i in range(cfg.nodes)]
        if cfg.start == "oracle":
            net.fill_tables(nodes)
            for node in nodes:
                net.add(node)
                if node.core.key is not None:
                    self._provide(node)
        else:
            for i, node in enumerate(nodes):
                net.queue.at(net.now + i * cfg.join_spacing, net.join, node)
        # The simulator makes no reference cycles: keep the cyclic collector from rescanning
        # the millions of objects built so far at every full collection (17% of the CPU
        # time at 10,000 nodes, more at 100,000).
        gc.collect()
        gc.freeze()
        t0 = net.now + (cfg.nodes * cfg.join_spacing if cfg.start == "join" else 0.0)
        measure_start = t0 + cfg.warmup
        for _ in range(cfg.lookups):
            net.queue.at(measure_start + net.rng.uniform(0, cfg.measure), self._lookup)
        net.queue.run_until(measure_start)
        joins, leaves = net.joins, net.leaves
        self._measuring = True
        net.queue.run_until(measure_start + cfg.measure)
        self._measuring = False
        # Let lookups started at the very end finish (no new ones are started).
        net.queue.run_until(net.now + 2 * cfg.kad.rpc_timeout + 5)
        rep = self.report
        rep.wall_seconds = time.perf_counter() - wall
        rep.cpu_seconds = time.process_time() - cpu
        rep.sim_events = net.queue.processed
        rep.messages = net.messages
        minutes = cfg.measure / 60
        rep.joins_per_minute = (net.joins - joins) / minutes
        rep.leaves_per_minute = (net.leaves - leaves) / minutes
        rep.mean_table_size = statistics.fmean(len(n.core.table) for n in net.live)
        rep.records_stored = sum(n.core.store.record_count for n in net.live)
        rep.rpcs_failed = sum(n.core.stats.rpcs_failed for n in net.live)
        rep.abandoned += len(self._pending)
        gc.unfreeze()
        return rep

    # --- providers ----------------------------------------------------------------------

    def _provide(self, node: SimNode) -> None:
        if not node.alive:
            return
        self._key_seq += 1
        key = hashlib.sha256(b"sim/provided/%d" % self._key_seq).digest()
        self._provider_key[node.core.node_id] = key
        node.core.provide(key, b"ask", self.net.now)
        self.net.pump(node)

    def _on_join(self, node: SimNode) -> None:
        if node.core.key is not None:
            self.net.queue.after(self.config.provide_delay, self._provide, node)

    def _on_leave(self, node: SimNode) -> None:
        key = self._provider_key.pop(node.core.node_id, None)
        if key is not None:
            self.live_keys.pop(key, None)
        for pending in [p for p in self._pending if p[0] == node.core.node_id]:
            del self._pending[pending]
            self.report.abandoned += 1

    # --- lookups ------------------------------------------------------------------------

    def _lookup(self) -> None:
        net = self.net
        node = net.random_live(ready=True)
        if node is None:
            return
        now = net.now
        if net.rng.random() < 0.5 and self.live_keys:
            key = net.rng.choice(list(self.live_keys))
            expected = self.live_keys[key].core.node_id
            op = node.core.get_providers(key, now, want=1)
            kind = LookupKind.GET_PROVIDERS
        else:
            target = net.random_live()
            if target is None or target is node:
                return
            expected = target.core.node_id
            op = node.core.find_node(expected, now)
            kind = LookupKind.FIND_NODE
        self._pending[(node.core.node_id, op)] = (kind, expected)
        net.pump(node)

    def _on_event(self, node: SimNode, event: Event) -> None:
        if isinstance(event, StoreFinished):
            if event.stored and self._provider_key.get(node.core.node_id) == event.key:
                self.live_keys[event.key] = node
            return
        assert isinstance(event, LookupFinished)
        pending = self._pending.pop((node.core.node_id, event.op_id), None)
        if pending is None:
            return
        kind, expected = pending
        if kind is LookupKind.GET_PROVIDERS:
            ok = any(r.node_id == expected for r in event.records)
        else:
            ok = any(p.node_id == expected for p in event.closest)
        self.report.samples.append(
            LookupSample(
                kind,
                ok,
                event.hops,
                event.finished - event.started,
                event.queried,
                event.failed,
            )
        )
