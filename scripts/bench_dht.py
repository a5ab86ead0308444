#!/usr/bin/env python
"""
Kademlia DHT benchmark: (a) the simulator, (b) real sockets on loopback.

(a) ``node.sim``: the real sans-I/O core in N simulated nodes with 50 ms one-way latency and
churn (exponential sessions, median one hour; every leaver is replaced by a newcomer that
joins through the protocol). Tables are oracle-filled at the start, then churn runs for
``--warmup`` seconds before ``--lookups`` lookups are measured over ``--measure`` seconds:
half GET_PROVIDERS (want=1, over d=3 disjoint paths) for the key of a live provider, half
FIND_NODE for a live node's id (see node/sim/experiment.py). Baseline in the same run: the
network round trip (100 ms), so latencies are also given in round trips; the public IPFS
DHT's measured median walk is 622 ms (Trautwein et al., SIGCOMM 2022).

(b) ``--loopback`` nodes in ``--procs`` worker processes (real ``node.transport`` hosts:
TCP + Noise + mux on 127.0.0.1) plus a seed node here; some of them provide keys. Then,
``--fresh`` times: a fresh node (new key, new host) joins through the seed and looks up one
provided key with GET_PROVIDERS (want=1). Baseline in the same run: one FIND_NODE request
to a known peer over a fresh connection (the cost of one hop).

    .venv/bin/python scripts/bench_dht.py                    # 10k nodes: ~8 CPU-minutes
    .venv/bin/python scripts/bench_dht.py --big 100000       # also 100k nodes (long)
    .venv/bin/python scripts/bench_dht.py --nodes 2000 --warmup 600 --measure 600  # quick

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from node.config import TransportConfig
from node.identity import NodeKey
from node.kademlia.config import KademliaConfig
from node.kademlia.lookup import LookupKind
from node.kademlia.messages import STREAM_PROTOCOL, FindNode, PeerInfo
from node.kademlia.service import KademliaService, parse_peer
from node.runtime import run as run_loop
from node.sim.experiment import Experiment, ExperimentConfig, ExperimentReport
from node.sim.network import NetworkConfig
from node.transport import Host

IPFS_MEDIAN_WALK_MS = 622.0


# --- (a) simulation ---------------------------------------------------------------------


def simulate(args: argparse.Namespace, nodes: int) -> ExperimentReport:
    cfg = ExperimentConfig(
        nodes=nodes,
        providers=args.providers,
        lookups=args.lookups,
        warmup=args.warmup,
        measure=args.measure,
        network=NetworkConfig(
            latency=args.latency,
            jitter=args.jitter,
            loss=args.loss,
            median_session=args.median_session or None,
            seed=args.seed,
        ),
        kad=KademliaConfig(),
    )
    return Experiment(cfg).run()


def print_sim(rep: ExperimentReport, rtt_ms: float) -> None:
    cfg = rep.config
    print(
        f"\n(a) simulation: {cfg.nodes} nodes, {cfg.network.latency * 1000:.0f} ms one-way, "
        f"median session {cfg.network.median_session or 0:.0f} s, loss {cfg.network.loss:.1%}; "
        f"warmup {cfg.warmup:.0f} s, measured {cfg.measure:.0f} s"
    )
    print(
        f"{'lookup':<14}{'count':>7}{'success':>10}{'hops p50':>10}{'hops max':>10}"
        f"{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'p50 RTT':>9}{'asked':>7}"
    )
    for kind in (LookupKind.GET_PROVIDERS, LookupKind.FIND_NODE):
        s = rep.summary(kind)
        if not s.get("count"):
            continue
        print(
            f"{kind.value:<14}{s['count']:>7.0f}{s['success']:>10.4f}{s['hops_p50']:>10.1f}"
            f"{s['hops_max']:>10.0f}{s['p50_ms']:>9.0f}{s['p90_ms']:>9.0f}{s['p99_ms']:>9.0f}"
            f"{s['p50_ms'] / rtt_ms:>9.2f}{s['queried_mean']:>7.1f}"
        )
    print(
        f"abandoned (asker left): {rep.abandoned}; joins/min {rep.joins_per_minute:.1f}, "
        f"leaves/min {rep.leaves_per_minute:.1f}; mean table {rep.mean_table_size:.0f} "
        f"contacts; records stored {rep.records_stored}; messages {rep.messages}; "
        f"failed requests {rep.rpcs_failed}"
    )
    print(
        f"wall {rep.wall_seconds:.0f} s, CPU {rep.cpu_seconds:.0f} s, {rep.sim_events} events "
        f"({rep.sim_events / max(rep.cpu_seconds, 1e-9):,.0f} per CPU second)"
    )


# --- (b) loopback -----------------------------------------------------------------------


def loopback_config() -> KademliaConfig:
    # Every node shares 127.0.0.1: the per-prefix limits would keep 2 per bucket.
    return KademliaConfig(exempt_loopback=True, rpc_timeout=5.0)


def new_host() -> Host:
    # Likewise the transport's inbound limit per IP address.
    return Host(NodeKey.generate(), TransportConfig(max_connections_per_ip=100_000))


async def worker(seed: str, count: int, provide: int, index: int) -> None:
    """Run ``count`` nodes; ``provide`` of them provide one key each; report, then wait."""
    services = []
    for _ in range(count):
        host = new_host()
        await host.listen("127.0.0.1", 0)
        service = KademliaService(host, loopback_config())
        await service.start([parse_peer(seed)])
        services.append(service)
    keys = []
    for i, service in enumerate(services[:provide]):
        key = hashlib.sha256(b"bench/%d/%d" % (index, i)).digest()
        await service.provide(key, b"ask")
        keys.append(key.hex())
    print(json.dumps({"keys": keys}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for service in services:
        await service.close()
        await service.host.close()


async def loopback(args: argparse.Namespace) -> dict[str, Any]:
    cfg = loopback_config()
    seed_host = new_host()
    await seed_host.listen("127.0.0.1", 0)
    seed = KademliaService(seed_host, cfg)
    await seed.start()
    seed_text = f"{seed_host.node_id.hex()}@127.0.0.1:{seed_host.listen_addrs[0][1]}"
    per = max(1, args.loopback // args.procs)
    procs = []
    for i in range(args.procs):
        procs.append(
            subprocess.Popen(  # noqa: ASYNC220 (started once, read with a thread below)
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    seed_text,
                    str(per),
                    str(args.provide),
                    str(i),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    keys: list[bytes] = []
    loop = asyncio.get_running_loop()
    for p in procs:
        assert p.stdout is not None
        line = await loop.run_in_executor(None, p.stdout.readline)
        keys += [bytes.fromhex(k) for k in json.loads(line)["keys"]]
    total = per * args.procs + 1
    await seed.bootstrap([])  # learn the workers' nodes
    joins, lookups, hops, ok = [], [], [], 0
    for i in range(args.fresh):
        host = new_host()
        await host.listen("127.0.0.1", 0)
        fresh = KademliaService(host, cfg)
        t0 = time.perf_counter()
        await fresh.start([seed.peer])
        t1 = time.perf_counter()
        res = await fresh.get_providers(keys[i % len(keys)], want=1)
        t2 = time.perf_counter()
        joins.append(t1 - t0)
        lookups.append(t2 - t1)
        hops.append(res.hops)
        ok += res.ok
        await fresh.close()
        await host.close()
    # Baseline: one FIND_NODE to a known peer over a fresh connection.
    rpcs = []
    target: PeerInfo = seed.peer
    addrs = [(a.host, a.port) for a in target.addrs]
    for _ in range(args.fresh):
        host = new_host()
        t0 = time.perf_counter()
        await host.request(target.node_id, addrs, STREAM_PROTOCOL, FindNode((), bytes(32)), 5)
        rpcs.append(time.perf_counter() - t0)
        await host.close()
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
    for p in procs:
        await loop.run_in_executor(None, p.wait)
    await seed.close()
    await seed_host.close()
    return {
        "nodes": total,
        "procs": args.procs,
        "keys": len(keys),
        "success": ok / args.fresh,
        "join": joins,
        "lookup": lookups,
        "hops": hops,
        "rpc": rpcs,
    }


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(q * len(s) + 0.5) - 1))]


def print_loopback(lb: dict[str, Any]) -> None:
    print(
        f"\n(b) loopback: {lb['nodes']} nodes in {lb['procs']} worker processes + 1 seed, "
        f"{lb['keys']} provided keys, {len(lb['lookup'])} fresh nodes"
    )
    print(f"{'operation':<36}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'x 1 RPC':>9}")
    base = pct(lb["rpc"], 0.5)
    for name, key in (
        ("one FIND_NODE, fresh connection", "rpc"),
        ("join (bootstrap + refresh)", "join"),
        ("GET_PROVIDERS from fresh node", "lookup"),
    ):
        v = [x * 1000 for x in lb[key]]
        print(
            f"{name:<36}{pct(v, 0.5):>9.1f}{pct(v, 0.9):>9.1f}{pct(v, 0.99):>9.1f}"
            f"{pct(lb[key], 0.5) / base:>9.1f}"
        )
    print(f"GET_PROVIDERS success {lb['success']:.3f}, hops p50 {statistics.median(lb['hops'])}")


# --- main -------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        logging.basicConfig(level=logging.ERROR)
        seed, count, provide, index = sys.argv[2], *map(int, sys.argv[3:6])
        run_loop(worker(seed, count, provide, index))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--big", type=int, default=0, help="also simulate this many nodes")
    ap.add_argument("--big-warmup", type=float, default=1800.0)
    ap.add_argument("--big-measure", type=float, default=900.0)
    ap.add_argument("--providers", type=int, default=200)
    ap.add_argument("--lookups", type=int, default=10_000)
    ap.add_argument("--warmup", type=float, default=1800.0)
    ap.add_argument("--measure", type=float, default=1800.0)
    ap.add_argument("--latency", type=float, default=0.050)
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--median-session", type=float, default=3600.0, help="0: no churn")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--loopback", type=int, default=40, help="nodes in worker processes")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--provide", type=int, default=3, help="keys provided per worker")
    ap.add_argument("--fresh", type=int, default=100, help="fresh nodes that look up")
    args = ap.parse_args()
    rtt_ms = 2000 * args.latency
    # Closing fresh nodes while their background refreshes still dial logs warnings.
    logging.basicConfig(level=logging.ERROR)

    reports = []
    for n, warm, meas in (
        (args.nodes, args.warmup, args.measure),
        (args.big, args.big_warmup, args.big_measure),
    ):
        if n:
            run_args = argparse.Namespace(**{**vars(args), "warmup": warm, "measure": meas})
            rep = simulate(run_args, n)
            print_sim(rep, rtt_ms)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"peak RSS so far {rss:.0f} MiB")
            reports.append(rep)
    lb = run_loop(loopback(args)) if args.loopback else None
    if lb is not None:
        print_loopback(lb)

    main_rep = reports[0]
    prov = main_rep.summary(LookupKind.GET_PROVIDERS)
    find = main_rep.summary(LookupKind.FIND_NODE)
    result: dict[str, Any] = {
        "sim_nodes": main_rep.config.nodes,
        "lookup_success": round(prov["success"], 5),
        "hops_p50": prov["hops_p50"],
        "lookup_p50_ms": round(prov["p50_ms"], 1),
        "lookup_p99_ms": round(prov["p99_ms"], 1),
        "lookup_p50_round_trips": round(prov["p50_ms"] / rtt_ms, 2),
        "lookup_p50_vs_ipfs_walk": round(prov["p50_ms"] / IPFS_MEDIAN_WALK_MS, 3),
        "find_node_success": round(find["success"], 5),
        "find_node_p50_ms": round(find["p50_ms"], 1),
        "find_node_p99_ms": round(find["p99_ms"], 1),
        "sim_wall_s": round(main_rep.wall_seconds, 1),
        "sim_cpu_s": round(main_rep.cpu_seconds, 1),
    }
    if len(reports) > 1:
        big = reports[1]
        bp = big.summary(LookupKind.GET_PROVIDERS)
        result.update(
            big_sim_nodes=big.config.nodes,
            big_lookup_success=round(bp["success"], 5),
            big_hops_p50=bp["hops_p50"],
            big_lookup_p50_ms=round(bp["p50_ms"], 1),
            big_lookup_p99_ms=round(bp["p99_ms"], 1),
            big_sim_wall_s=round(big.wall_seconds, 1),
            big_sim_cpu_s=round(big.cpu_seconds, 1),
        )
    if lb is not None:
        result.update(
            loopback_nodes=lb["nodes"],
            loopback_procs=lb["procs"],
            get_providers_p50_ms=round(pct(lb["lookup"], 0.5) * 1000, 2),
            get_providers_p99_ms=round(pct(lb["lookup"], 0.99) * 1000, 2),
            get_providers_success=lb["success"],
            join_p50_ms=round(pct(lb["join"], 0.5) * 1000, 2),
            one_rpc_p50_ms=round(pct(lb["rpc"], 0.5) * 1000, 2),
        )
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
