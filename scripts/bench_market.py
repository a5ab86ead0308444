#!/usr/bin/env python3
"""
Market benchmark: ``market put`` and ``market get`` of one file on a local devnet, with
replication and with erasure coding, through the real command line.

    .venv/bin/python scripts/bench_market.py                       # 1 GiB, 5 provers
    .venv/bin/python scripts/bench_market.py --size-mib 256 --block-time 0 --dir /tmp

The network: anvil (``--block-time`` seconds per block, 0 for automine), a fresh market,
``--providers`` ``prover run`` daemons on 127.0.0.1, one ``market`` home. Each command is
timed from the outside (process start to exit: imports, keystore, discovery, everything the
user waits for) and reports its own phases (``timings`` in its JSON). Every byte crosses
the Noise transport; providers verify every chunk of what they receive, the client every
chunk it downloads, and the rebuilt file is compared with the input by SHA-256.

Baseline, measured in the same run: SHA-256 of the input with hashlib (the machine's bulk
hashing speed). The put's own ``prepare`` phase is the node.pieces pipeline, the get's
``download`` phase the swarm; the table shows both beside the totals.

The provers' background scrub (each re-hashes its pieces at 16 MiB/s by default) is turned
off unless ``--prover-scrub``: on one 2-core machine, five provers re-hashing would take up
to a core from the client being measured, which separate provider machines would not.

The last line printed is one JSON object: put_copies_mib_s, get_copies_mib_s, put_ec_mib_s,
get_ec_mib_s, and the details.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from contracts.deployment import TOKEN_UNIT, MarketParams
from market.localnet import BIN, PASSPHRASE, Network

MIB = 1 << 20
GIB = 1 << 30
DETAIL_KEYS = ("put_s", "get_s", "put_timings", "get_timings", "put_cpu", "get_cpu")


def make_input(path: Path, size: int) -> str:
    """Random bytes (incompressible); returns their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 16 * MIB))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> tuple[str, float]:
    digest = hashlib.sha256()
    started = time.perf_counter()
    with path.open("rb") as f:
        while block := f.read(8 * MIB):
            digest.update(block)
    return digest.hexdigest(), time.perf_counter() - started


def process_cpu(pid: int) -> float | None:
    """utime + stime of a live process in seconds (None if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (children, grandchildren...)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(entry.name)] = int(fields[1])
    out, frontier = [], [root]
    while frontier:
        node = frontier.pop()
        kids = [pid for pid, ppid in parent.items() if ppid == node]
        out += kids
        frontier += kids
    return out


class Devnet:
    """A ``market.localnet.Network`` with ``providers`` provers and one market home."""

    def __init__(self, work: Path, providers: int, block_time: float, scrub: bool) -> None:
        params = MarketParams(period_blocks=40, min_stake=100 * TOKEN_UNIT, max_piece_size=4 * GIB)
        self.net = Network(work, params, block_time=block_time or None)
        try:
            self.provers = self.net.start_provers(
                [f"0.00{i + 1}" for i in range(providers)],
                capacity="5 GiB",
                config={} if scrub else {"storage.scrub_rate": 0},
            )
            self.client = self.net.client(tokens=100_000 * TOKEN_UNIT, eth=10**20)
            self.net.wait_asks(self.client, providers, timeout=120)
        except BaseException:
            self.net.close()
            raise
        self.env = dict(os.environ, DEPOT_PASSPHRASE=PASSPHRASE)

    def timed(self, *args: str) -> tuple[Any, float, float, float]:
        """
        A market command's JSON, wall seconds, its CPU seconds (the command and every
        process it started: worker processes are sampled from /proc every 0.1 s, so up to
        0.1 s of each one's last moments is missed) and the provers' CPU seconds meanwhile.
        """
        provers = self.provers_cpu()
        started = time.perf_counter()
        proc = subprocess.Popen(
            [str(BIN / "market"), "--home", str(self.client.home), *args, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        seen: dict[int, float] = {}
        while proc.poll() is None:
            for pid in [proc.pid, *descendants(proc.pid)]:
                cpu = process_cpu(pid)
                if cpu is not None:
                    seen[pid] = max(seen.get(pid, 0.0), cpu)
            time.sleep(0.1)
        out, err = proc.communicate()
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"market {' '.join(args[:2])} failed: {err[-3000:]}")
        return json.loads(out), wall, sum(seen.values()), self.provers_cpu() - provers

    def provers_cpu(self) -> float:
        return sum(process_cpu(p.process.pid) or 0.0 for p in self.provers if p.process)

    def close(self) -> None:
        self.net.close()


def run_mode(
    net: Devnet, src: Path, digest: str, label: str, flags: list[str], mib: float
) -> dict[str, Any]:
    put, put_s, put_cpu, put_provers = net.timed("put", str(src), *flags, "--duration", "10")
    out = src.with_name(f"back-{label}.bin")
    got, get_s, get_cpu, get_provers = net.timed("get", put["id"], str(out))
    back, _ = sha256_file(out)
    out.unlink()
    if back != digest:
        raise SystemExit(f"{label}: the file came back different")
    return {
        "put_s": put_s,
        "get_s": get_s,
        "put_mib_s": mib / put_s,
        "get_mib_s": mib / get_s,
        "put_timings": put["timings"],
        "get_timings": got["timings"],
        "put_cpu": {"client": round(put_cpu, 2), "provers": round(put_provers, 2)},
        "get_cpu": {"client": round(get_cpu, 2), "provers": round(get_provers, 2)},
        "deals": len(put["deals"]),
        "received": got["received"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--providers", type=int, default=5)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--ec", default="3-of-5")
    parser.add_argument("--block-time", type=float, default=1.0, help="0: automine")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to put data")
    parser.add_argument(
        "--prover-scrub",
        action="store_true",
        help="keep the provers' background re-hashing on (off by default: see the docstring)",
    )
    args = parser.parse_args()

    size = args.size_mib * MIB
    k, n = (int(x) for x in args.ec.split("-of-"))
    need = size * (2 + args.copies * 2 + 2 * n / k) + GIB
    free = shutil.disk_usage(args.dir).free
    if free < need:
        raise SystemExit(f"{args.dir}: {free / GIB:.1f} GiB free, {need / GIB:.1f} GiB needed")
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-market-", dir=args.dir))
    try:
        src = work / "input.bin"
        digest = make_input(src, size)
        _, sha_s = sha256_file(src)
        mib = size / MIB
        print(
            f"input {args.size_mib} MiB | {args.providers} provers | block time "
            f"{args.block_time or 'automine'} | sha256 {mib / sha_s:,.0f} MiB/s",
            flush=True,
        )
        net = Devnet(work, args.providers, args.block_time, args.prover_scrub)
        try:
            copies = run_mode(net, src, digest, "copies", ["--copies", str(args.copies)], mib)
            ec = run_mode(net, src, digest, "ec", ["--ec", args.ec], mib)
        finally:
            net.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    sha_rate = mib / sha_s
    gib = size / GIB
    rows = []
    for mode, r in ((f"{args.copies} copies", copies), (args.ec, ec)):
        for op in ("put", "get"):
            cpu = r[f"{op}_cpu"]
            rows.append((f"{op}, {mode}", r[f"{op}_s"], r[f"{op}_mib_s"], cpu, r[f"{op}_timings"]))
    print(f"\n{'':18} {'wall s':>7} {'MiB/s':>7} {'vs sha256':>9} {'CPU-s/GiB':>22}  phases (s)")
    print(f"{'':18} {'':>7} {'':>7} {'':>9} {'client':>10} {'provers':>11}")
    print(f"{'sha256 (baseline)':18} {sha_s:7.2f} {sha_rate:7.0f} {1.0:9.2f}")
    for name, secs, rate, cpu, phases in rows:
        detail = " ".join(f"{k}={v:.2f}" for k, v in phases.items())
        print(
            f"{name:18} {secs:7.2f} {rate:7.0f} {rate / sha_rate:9.2f} "
            f"{cpu['client'] / gib:10.2f} {cpu['provers'] / gib:11.2f}  {detail}"
        )
    summary = {
        "put_copies_mib_s": round(copies["put_mib_s"], 1),
        "get_copies_mib_s": round(copies["get_mib_s"], 1),
        "put_ec_mib_s": round(ec["put_mib_s"], 1),
        "get_ec_mib_s": round(ec["get_mib_s"], 1),
        "sha256_mib_s": round(sha_rate, 1),
        "size_mib": args.size_mib,
        "providers": args.providers,
        "copies": args.copies,
        "ec": args.ec,
        "block_time": args.block_time,
        "prover_scrub": args.prover_scrub,
        "details": {
            label: {k: r[k] for k in DETAIL_KEYS} for label, r in (("copies", copies), ("ec", ec))
        },
        "load_average": [round(x, 2) for x in (load_before, os.getloadavg()[0])],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
