#!/usr/bin/env python3
"""
Prover benchmark: a provider holding 1,000 pieces (>= 10 GiB) on an anvil devnet with
one-second blocks, driven through its real CLI (``prover run`` in its own process).

    .venv/bin/python scripts/bench_prover.py                   # 1000 pieces, 12 periods
    .venv/bin/python scripts/bench_prover.py --pieces 200 --periods 4 --ingest-mib 64   # quick
    .venv/bin/python scripts/bench_prover.py --dense           # real random bytes on disk

Setup (not timed): anvil starts with automine; a market is deployed (46 challenges per
period); the provider registers; the pieces are written straight into the prover's blob
store, each with its real Merkle root and layer; a client signs one proposal per piece and
the provider accepts them on chain. Then anvil switches to one block per second and the
daemon starts: it adopts the 1,000 deals from the chain's events (its database starts
empty) and proves every period.

Pieces are sparse by default: each is 10 MiB + 256 KiB + a few bytes, its first 256 KiB
chunk random and the rest a hole that reads as zeros. The root and layer commit to exactly
those bytes, and a proof reads and hashes the challenged chunk from the file like any other,
so the proof path is the real one; what sparse files do not cost is the disk read (a hole
comes from no block). ``--dense`` writes random bytes everywhere (needs the disk space) and
drops them from the page cache, so that every challenged chunk is a real read.

Measured:

- proof build (``proof_build_p99_s``): the daemon's own measure per period, from the start
  of the attempt to the proof being ready (is-proven check, proving state and seed reads
  over RPC, challenges located in the mirror, 46 leaves read, hashed and checked against
  their roots); p99 over the periods. The table adds the same local work replayed offline
  for ``--offline-rounds`` random seeds (p50/p99), and the baseline: the contract's walk
  read over RPC (``LedgerClient.challenges``, every slot) with each leaf proven from a
  freshly read layer.
- ingest (``ingest_mib_s``): one client pushes one ``--ingest-mib`` piece into the daemon
  over the swarm (Noise-encrypted, every chunk verified against the layer, fsynced and
  renamed): bytes / push time. Baseline in the same run: the same push into a bare swarm
  receiver process (a ``FilePieceStore``), no deal, no prover.
- window left (``window_left_min_frac``): for each period, the blocks of the proving window
  left after the block that mined the proof, over the window's length; the minimum.

The last line is one JSON object: pieces, gib, proof_build_p99_s, ingest_mib_s,
window_left_min_frac (and more).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from contracts.chain import LedgerClient, connect, new_nonce
from contracts.deployment import TOKEN_UNIT, MarketParams
from contracts.devnet import deploy, dev_accounts, fund, start_anvil
from contracts.errors import LocalError
from contracts.offers import (
    DEAL_PROTOCOL,
    DealActivated,
    DealDecision,
    ProposeDeal,
    price_for,
)
from contracts.spec.commitment import root_of_nodes
from contracts.spec.deal import DealProposal
from contracts.txs import TxConfig
from node.identity import NodeKey
from node.pieces.layer import LayerTree, prove_leaf
from node.runtime import run
from node.swarm.service import Swarm
from node.swarm.store import FilePieceStore
from node.swarm.verify import CHUNK_SIZE, chunk_root
from node.transport import Host
from prover.blobstore import BlobStore
from prover.challenges import SlotMirror, slots_from_chain
from prover.config import ProverConfig
from prover.home import Home, init_home

MIB = 1 << 20
GIB = 1 << 30
PASSPHRASE = "bench"
PIECE_BASE = 10 * MIB + CHUNK_SIZE + 123
"""Bytes of the smallest benchmark piece: 1,000 of them exceed 10 GiB."""


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------ baseline receiver role


async def role_receiver(directory: Path) -> None:
    store = FilePieceStore(directory, accept_all=True)
    host = Host(NodeKey.generate())
    _, port = await host.listen("127.0.0.1", 0)
    swarm = Swarm(host, store=store, importer=store)
    print(json.dumps({"node_id": host.node_id.hex(), "port": port}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await swarm.close()
    await host.close()


# ------------------------------------------------------------------ setup


def write_pieces(
    store_dir: Path, count: int, dense: bool, rng: random.Random
) -> list[tuple[bytes, int]]:
    """``count`` pieces in the blob store layout; returns (root, size) of each."""
    store = BlobStore(store_dir, capacity=1 << 60)
    zero_root = chunk_root(bytes(CHUNK_SIZE))
    tail_roots: dict[int, bytes] = {}
    out = []
    for i in range(count):
        size = PIECE_BASE + (i % 7) * 1000
        chunks = -(-size // CHUNK_SIZE)
        first = rng.randbytes(CHUNK_SIZE)
        tail = size - (chunks - 1) * CHUNK_SIZE
        if dense:
            body = [first] + [rng.randbytes(CHUNK_SIZE) for _ in range(chunks - 2)]
            last = rng.randbytes(tail)
            layer_nodes = [chunk_root(c) for c in body] + [chunk_root(last)]
        else:
            if tail not in tail_roots:
                tail_roots[tail] = chunk_root(bytes(tail))
            layer_nodes = [chunk_root(first)] + [zero_root] * (chunks - 2) + [tail_roots[tail]]
        root = bytes(root_of_nodes(layer_nodes))  # type: ignore[arg-type]
        path = store.path(root)
        path.parent.mkdir(exist_ok=True)
        with open(path, "wb") as f:
            if dense:
                for c in body:
                    f.write(c)
                f.write(last)
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            else:
                f.write(first)
                f.truncate(size)
        store.layer_path(root).write_bytes(b"".join(layer_nodes))
        out.append((root, size))
    return out


def prover_config() -> ProverConfig:
    """The defaults, but for ephemeral ports, a capacity that fits the pieces, faster polls."""
    config = ProverConfig()
    sections: dict[str, dict[str, Any]] = {
        "chain": {"poll_interval": 0.2, "resubmit_after": 3.0, "stake": "2000"},
        "p2p": {"listen": "127.0.0.1:0"},
        "storage": {"capacity": "64 GiB", "reserve": 0},
        "offer": {"max_piece_size": "1 GiB", "min_expiry_blocks": 4, "push_timeout": 600.0},
        "api": {"listen": "127.0.0.1:0"},
        "log": {"level": "info"},
    }
    for section, values in sections.items():
        config = config.with_values(section, **values)
    return config.validate()


def start_process(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else b""
    if not line:
        proc.kill()
        raise SystemExit(f"{args[2:5]} did not start; see {log}")
    return proc, json.loads(line)


# ------------------------------------------------------------------ ingest


async def ingest(
    ledger: LedgerClient,
    provider: str,
    prover: dict[str, Any],
    receiver: dict[str, Any],
    size_mib: int,
    work: Path,
    prover_first: bool,
) -> dict[str, float]:
    """One round: a fresh piece pushed into the bare receiver and dealt to the prover (the
    order alternates between rounds, so that neither side always goes first)."""
    store = FilePieceStore(work / "client-store")
    root = store.add(os.urandom(size_mib * MIB))
    size = store.size(root)
    host = Host(NodeKey.generate())
    await host.listen("127.0.0.1", 0)
    swarm = Swarm(host, store=store)

    async def to_receiver() -> float:
        t = time.perf_counter()
        await swarm.push(
            bytes.fromhex(receiver["node_id"]), [("127.0.0.1", receiver["port"])], root
        )
        elapsed = time.perf_counter() - t
        for leftover in (work / "receiver").glob(f"{root.hex()}.*"):
            leftover.unlink()  # the baseline's copy is not needed: keep the disk free
        return elapsed

    async def to_prover() -> tuple[float, float]:
        peer_id = bytes.fromhex(prover["node_id"])
        host_, _, port = prover["p2p"].rpartition(":")
        addrs = [(host_, int(port))]
        head = await asyncio.to_thread(ledger.current_block)
        proposal = DealProposal(
            client=ledger.address,
            provider=provider,
            piece_root=root,
            piece_size=size,
            price_per_period=price_for(size, TOKEN_UNIT // 1000),
            periods=100,
            collateral=0,
            nonce=new_nonce(),
            expiry_block=head + 600,
        )
        signature = ledger.sign_proposal(proposal)
        t_deal = time.perf_counter()
        stream = await host.open_stream(peer_id, addrs, DEAL_PROTOCOL)
        await stream.send_msg(ProposeDeal.of(proposal, signature))
        decision = await stream.recv_msg("deal")
        assert isinstance(decision, DealDecision) and decision.accepted, decision
        t = time.perf_counter()
        await swarm.push(peer_id, addrs, root)
        push_s = time.perf_counter() - t
        activated = await asyncio.wait_for(stream.recv_msg("deal"), 120)
        assert isinstance(activated, DealActivated), activated
        stream.reset("done")
        return push_s, time.perf_counter() - t_deal

    try:
        if prover_first:
            push_s, deal_s = await to_prover()
            baseline_s = await to_receiver()
        else:
            baseline_s = await to_receiver()
            push_s, deal_s = await to_prover()
    finally:
        await swarm.close()
        await host.close()
        store.close()
        for leftover in (work / "client-store").glob(f"{root.hex()}.*"):
            leftover.unlink()
    return {
        "size_mib": size / MIB,
        "baseline_mib_s": size / MIB / baseline_s,
        "ingest_mib_s": size / MIB / push_s,
        "deal_s": deal_s,
    }


# ------------------------------------------------------------------ offline build


def offline_builds(
    home: Home,
    config: ProverConfig,
    ledger: LedgerClient,
    provider: str,
    rounds: int,
    baseline_rounds: int,
) -> dict[str, list[float]]:
    """The daemon's local proof work replayed for random seeds, and the RPC-walk baseline."""
    store = BlobStore(home.blob_path(config), config.storage.capacity)
    store.scan()
    head = ledger.current_block()
    state = ledger.proving_state(provider, head)
    period = ledger.schedule.period_of(head)
    infos = ledger.slots(provider, state.epoch, head)
    mirror = SlotMirror(
        state.epoch,
        slots_from_chain(
            ((s.deal_id, s.piece_root, s.piece_size, s.index, s.retired_from) for s in infos),
            period,
            state.pending_leaves,
        ),
    )
    challenges = ledger.params.challenges
    ours: list[float] = []
    for _ in range(rounds):
        seed = os.urandom(32)
        t = time.perf_counter()
        located = mirror.locate(seed, provider, period, challenges)
        for c in located:
            store.prove(c.piece_root, c.piece_size, c.leaf)
        ours.append(time.perf_counter() - t)
    baseline: list[float] = []
    while len(baseline) < baseline_rounds:
        t = time.perf_counter()
        try:
            walk = ledger.challenges(provider)
        except LocalError:  # the next block is a seed block: wait for it
            time.sleep(1)
            continue
        for w in walk:
            layer = store.layer_path(w.piece_root).read_bytes()
            prove_leaf(
                store.path(w.piece_root), LayerTree(layer, w.piece_size), w.piece_size, w.leaf
            )
        baseline.append(time.perf_counter() - t)
    return {"ours": ours, "baseline": baseline}


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pieces", type=int, default=1000)
    ap.add_argument("--periods", type=int, default=12, help="proving periods to measure")
    ap.add_argument("--period-blocks", type=int, default=20)
    ap.add_argument("--ingest-mib", type=int, default=256)
    ap.add_argument("--ingest-runs", type=int, default=3, help="rounds, alternating baseline")
    ap.add_argument("--offline-rounds", type=int, default=300)
    ap.add_argument("--baseline-rounds", type=int, default=10)
    ap.add_argument("--dense", action="store_true", help="random bytes everywhere (disk space!)")
    ap.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--role", choices=["receiver"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "receiver":
        run(role_receiver(a.dir))
        return 0
    work = a.work or Path(tempfile.mkdtemp(prefix="bench-prover-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return bench(a, work)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def bench(a: argparse.Namespace, work: Path) -> int:
    rng = random.Random(7)
    tx = TxConfig(poll_interval=0.01, resubmit_after=10)
    anvil = start_anvil()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        web3 = connect(anvil.url)
        deployer, provider_acct, client_acct = dev_accounts(3)
        params = MarketParams(
            period_blocks=a.period_blocks, min_stake=100 * TOKEN_UNIT, max_piece_size=GIB
        )
        deployment = deploy(web3, deployer, params, tx_config=tx)
        fund(
            web3,
            deployment,
            deployer,
            [provider_acct.address, client_acct.address],
            tokens=100_000 * TOKEN_UNIT,
        )
        deployment_path = work / "deployment.json"
        deployment.save(deployment_path)
        config = prover_config()
        home = Home(work / "prover")
        init_home(home, config, deployment_path, PASSPHRASE, private_key=bytes(provider_acct.key))
        (work / "passphrase").write_text(PASSPHRASE)

        t = time.perf_counter()
        pieces = write_pieces(home.blob_path(config), a.pieces, a.dense, rng)
        total = sum(size for _, size in pieces)
        print(
            f"setup: {a.pieces} pieces, {total / GIB:.2f} GiB, "
            f"written in {time.perf_counter() - t:.1f} s",
            flush=True,
        )

        provider = LedgerClient(anvil.url, deployment, provider_acct, tx_config=tx)
        client = LedgerClient(anvil.url, deployment, client_acct, tx_config=tx)
        node_key = NodeKey.load(home.key_path)
        provider.approve(config.chain.stake)
        provider.register(node_key.node_id, "127.0.0.1:1", config.chain.stake)
        client.approve()
        t = time.perf_counter()
        head = client.current_block()
        for root, size in pieces:
            proposal = DealProposal(
                client=client.address,
                provider=provider.address,
                piece_root=root,
                piece_size=size,
                price_per_period=price_for(size, config.offer.price_per_gib_period),
                periods=100_000,
                collateral=price_for(size, config.offer.collateral_per_gib),
                nonce=new_nonce(),
                expiry_block=head + 10 * a.pieces,
            )
            provider.accept_deal(proposal, client.sign_proposal(proposal))
        print(
            f"setup: {a.pieces} deals accepted on chain in {time.perf_counter() - t:.1f} s",
            flush=True,
        )

        web3.provider.make_request("evm_setIntervalMining", [1])  # type: ignore[arg-type]
        web3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]

        receiver_proc, receiver = start_process(
            [sys.executable, __file__, "--role", "receiver", "--dir", str(work / "receiver")],
            work / "receiver.log",
        )
        procs.append(receiver_proc)
        t = time.perf_counter()
        daemon, info = start_process(
            [sys.executable, "-m", "prover.cli", "--home", str(home.root), "run",
             "--passphrase-file", str(work / "passphrase")],
            work / "prover.log",
        )  # fmt: skip
        procs.append(daemon)
        api = info["api"]
        print(f"daemon ready in {time.perf_counter() - t:.1f} s; adopting the deals", flush=True)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = httpx.get(api + "/status", timeout=30).json()
            if status["deals"].get("active", 0) >= a.pieces and status["taking_deals"]:
                break
            time.sleep(1)
        first_period = status["period"] + 1

        rounds = []
        for i in range(a.ingest_runs):
            rounds.append(
                run(
                    ingest(client, provider.address, info, receiver, a.ingest_mib, work, i % 2 == 1)
                )
            )
            print(
                f"ingest: {rounds[-1]['ingest_mib_s']:.0f} MiB/s into the prover, "
                f"{rounds[-1]['baseline_mib_s']:.0f} MiB/s into a bare receiver",
                flush=True,
            )
        ingest_result = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}

        last_period = first_period + a.periods - 1
        deadline = time.monotonic() + (a.periods + 4) * a.period_blocks * 2 + 60
        while time.monotonic() < deadline:
            proofs = httpx.get(api + "/proofs?limit=1000", timeout=30).json()
            done = {r["period"] for r in proofs if r["state"] in ("confirmed", "missed")}
            if all(q in done for q in range(first_period, last_period + 1)):
                break
            time.sleep(2)
        rows = [r for r in proofs if first_period <= r["period"] <= last_period]
        metrics = httpx.get(api + "/metrics", timeout=30).text
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)

        confirmed = [r for r in rows if r["state"] == "confirmed"]
        missed = [r for r in rows if r["state"] != "confirmed"]
        builds = [r["build_seconds"] for r in confirmed if r["build_seconds"] is not None]
        fracs = [r["window_left"] for r in confirmed if r["window_left"] is not None]
        margins = [r["margin_blocks"] for r in confirmed if r["margin_blocks"] is not None]

        offline = offline_builds(
            home, config, provider, provider.address, a.offline_rounds, a.baseline_rounds
        )
        ours, base = offline["ours"], offline["baseline"]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
        anvil.stop()

    gib = total / GIB
    print()
    print(f"{'measure':58} {'value':>12}")
    print("-" * 71)
    table = [
        ("pieces held / GiB" + (" (dense)" if a.dense else " (sparse)"), f"{a.pieces} / {gib:.2f}"),
        ("periods measured (confirmed / missed)", f"{len(confirmed)} / {len(missed)}"),
        ("daemon proof build, p50 s", f"{statistics.median(builds):.3f}" if builds else "-"),
        ("daemon proof build, p99 s", f"{p(builds, 0.99):.3f}" if builds else "-"),
        ("daemon proof build, max s", f"{max(builds):.3f}" if builds else "-"),
        (f"offline local build ({len(ours)} seeds), p50 s", f"{statistics.median(ours):.4f}"),
        ("offline local build, p99 s", f"{p(ours, 0.99):.4f}"),
        (
            f"baseline: RPC walk + fresh layers ({len(base)}), p50 s",
            f"{statistics.median(base):.3f}",
        ),
        ("baseline / ours (p50)", f"{statistics.median(base) / statistics.median(ours):.0f}x"),
        (
            "proof margin, min / median blocks",
            f"{min(margins)} / {statistics.median(margins):.0f}" if margins else "-",
        ),
        ("window left after the proof, min fraction", f"{min(fracs):.3f}" if fracs else "-"),
        (
            f"ingest {ingest_result['size_mib']:.0f} MiB into the prover "
            f"(median of {a.ingest_runs}), MiB/s",
            f"{ingest_result['ingest_mib_s']:.1f}",
        ),
        (
            "baseline: same push into a bare swarm receiver, MiB/s",
            f"{ingest_result['baseline_mib_s']:.1f}",
        ),
        (
            "prover / bare receiver",
            f"{ingest_result['ingest_mib_s'] / ingest_result['baseline_mib_s']:.2f}",
        ),
        ("whole deal (proposal to DealActivated), s", f"{ingest_result['deal_s']:.2f}"),
    ]
    for name, value in table:
        print(f"{name:58} {value:>12}")
    late = [
        line for line in metrics.splitlines() if line.startswith("depot_prover_proofs_late_total")
    ]
    print(" ".join(late))
    result = {
        "pieces": a.pieces,
        "gib": round(gib, 3),
        "proof_build_p99_s": round(p(builds, 0.99), 4) if builds else None,
        "ingest_mib_s": round(ingest_result["ingest_mib_s"], 1),
        "window_left_min_frac": round(min(fracs), 3) if fracs else None,
        "periods": len(rows),
        "missed": len(missed),
        "offline_build_p99_s": round(p(ours, 0.99), 4),
        "baseline_build_p50_s": round(statistics.median(base), 4),
        "ingest_baseline_mib_s": round(ingest_result["baseline_mib_s"], 1),
        "dense": a.dense,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
