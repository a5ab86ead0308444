#!/usr/bin/env python3
"""
Swarm benchmark: N provider processes -> 1 downloader process on 127.0.0.1, against
libtorrent on the same file in the same run.

    .venv/bin/python scripts/bench_swarm.py          # 1 GiB, 3 providers, libtorrent tuned
    .venv/bin/python scripts/bench_swarm.py --size-mib 256 --runs 3 --lt-python /path/to/python

Depot side: every provider is its own process serving the same piece (a ``FilePieceStore``
over a hard link of the payload) through ``node.transport`` (Noise XX + ChaCha20-Poly1305,
so every byte is encrypted and decrypted) and ``node.swarm``; the downloader is its own
process and verifies every 256 KiB chunk against the piece's Merkle layer before writing
it to disk. Wall time is measured in the downloader from just before ``Swarm.download``
(dial and handshakes included) to completion, as lt_swarm.py measures its leecher; CPU is
each process's own utime+stime over the transfer.

Capped runs: each provider limited to ``--cap-mib`` MiB/s per peer, one source against
three; ``capped_speedup`` is the ratio of their throughputs.

libtorrent: ``/work/shared/bench/lt_swarm.py`` (or ``--lt-script``) is copied to the work
directory and run with ``--seeds N --perf --tick-ms 100`` (the tuned configuration) on the
same payload file, with the Python given by ``--lt-python`` (default
``.tools/ltvenv/bin/python``; make it with ``python3 -m venv .tools/ltvenv &&
.tools/ltvenv/bin/pip install libtorrent``).

The last line printed is one JSON object: depot_mib_s, libtorrent_mib_s, ratio, ttfb_ms,
capped_speedup, cpu_s_per_gib_downloader, cpu_s_per_gib_providers, and more.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contracts.spec.commitment import root_of_nodes
from node.identity import NodeKey
from node.runtime import run, uvloop_enabled
from node.swarm.config import SwarmConfig
from node.swarm.service import Swarm
from node.swarm.session import Source
from node.swarm.sink import FileSink, pieces_of
from node.swarm.store import FilePieceStore, write_atomic
from node.swarm.verify import CHUNK_SIZE, chunk_root
from node.transport import Host

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
HZ = os.sysconf("SC_CLK_TCK")


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / HZ


# ---------------------------------------------------------------------------- roles
async def role_provider(a: argparse.Namespace) -> None:

    host = Host(NodeKey.generate())
    _, port = await host.listen("127.0.0.1", 0)
    rate = a.cap_mib * MIB if a.cap_mib else None
    Swarm(host, FilePieceStore(Path(a.store)), config=SwarmConfig(peer_upload_rate=rate))
    print(f"READY {host.node_id.hex()} {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(f"BYE cpu_s={cpu_self():.3f}", flush=True)


async def role_downloader(a: argparse.Namespace) -> None:

    root = bytes.fromhex(a.root)
    sources = []
    for spec in a.peers.split(","):
        node_hex, port = spec.split(":")
        sources.append(
            Source(bytes.fromhex(node_hex), (("127.0.0.1", int(port)),), root, a.size, 0)
        )
    host = Host(NodeKey.generate())
    swarm = Swarm(host)
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    sink = FileSink(out, pieces_of(sources))
    profiler = None
    if a.profile:
        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, t0 = cpu_self(), time.perf_counter()
    report = await swarm.download(sources, 1, sink)
    t1, cpu1 = time.perf_counter(), cpu_self()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(a.profile)
    path = sink.finish({0})[0]
    res = {
        "wall_s": t1 - t0,
        "mib_s": a.size / MIB / (t1 - t0),
        "ttfb_s": report.ttfb,
        "cpu_s": cpu1 - cpu0,
        "per_peer_mib": {k.hex()[:8]: round(v / MIB, 1) for k, v in report.received.items()},
        "path": str(path),
    }
    print("RESULT " + json.dumps(res), flush=True)
    await swarm.close()
    await host.close()


# ---------------------------------------------------------------------------- orchestration
def spawn(args: list[str]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def make_payload(path: Path, size_mib: int) -> None:
    if path.exists() and path.stat().st_size == size_mib * MIB:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MIB))


def make_store(payload: Path, store: Path) -> tuple[bytes, float]:
    """A FilePieceStore holding the payload (hard link) and its layer; returns root, seconds."""

    t0 = time.perf_counter()
    parts = []
    with open(payload, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            parts.append(chunk_root(chunk))
    layer = b"".join(parts)
    root = bytes(root_of_nodes(parts))  # type: ignore[arg-type]
    store.mkdir(parents=True, exist_ok=True)
    target = store / f"{root.hex()}.piece"
    if not target.exists():
        os.link(payload, target)
    write_atomic(store / f"{root.hex()}.layer", layer)
    return root, time.perf_counter() - t0


def depot_run(
    a: argparse.Namespace, stores: list[Path], root: bytes, size: int, n: int, cap: float
) -> dict:
    provs = [
        spawn(["--role", "provider", "--store", str(stores[i]), "--cap-mib", str(cap)])
        for i in range(n)
    ]
    try:
        peers = []
        for p in provs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(
                    f"provider failed: {line!r} {p.stderr.read() if p.stderr else ''}"
                )
            _, node_hex, port = line.split()
            peers.append(f"{node_hex}:{port}")
        cpu0 = [proc_cpu(p.pid) for p in provs]
        out = Path(a.workdir) / "dl"
        d = spawn(
            [
                "--role",
                "downloader",
                "--root",
                root.hex(),
                "--size",
                str(size),
                "--peers",
                ",".join(peers),
                "--out",
                str(out),
            ]
            + (["--profile", a.profile] if a.profile else [])
        )
        stdout, stderr = d.communicate(timeout=a.timeout)
        prov_cpu = sum(proc_cpu(p.pid) - c for p, c in zip(provs, cpu0, strict=True))
        res = None
        for line in stdout.splitlines():
            if line.startswith("RESULT "):
                res = json.loads(line[7:])
        if res is None:
            raise RuntimeError(
                f"downloader failed rc={d.returncode}: {stdout[-2000:]} {stderr[-3000:]}"
            )
        res["providers_cpu_s"] = prov_cpu
        return res
    finally:
        for p in provs:
            try:
                assert p.stdin is not None
                p.stdin.write("stop\n")
                p.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        for p in provs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()  # our own child, by pid
                p.wait()


def sha256_file(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MIB):
            h.update(block)
    return h.digest()


def libtorrent_run(a: argparse.Namespace, payload: Path, seeds: int, tuned: bool) -> dict | None:
    lt_python = Path(a.lt_python)
    script = Path(a.lt_script)
    if not lt_python.exists() or not script.exists():
        print(f"libtorrent: skipped ({lt_python} or {script} missing)")
        return None
    work = Path(a.workdir) / "lt"
    (work / "data" / "seed").mkdir(parents=True, exist_ok=True)
    shutil.copy(script, work / "lt_swarm.py")  # it writes results/ next to itself
    lt_payload = work / "data" / "seed" / "payload.bin"
    if not lt_payload.exists():
        os.link(payload, lt_payload)  # the very same bytes as the Depot run
    args = [
        str(lt_python),
        str(work / "lt_swarm.py"),
        "--seeds",
        str(seeds),
        "--runs",
        str(a.runs),
        "--size-mib",
        str(a.size_mib),
        "--workdir",
        str(work / "data"),
        "--timeout",
        str(a.timeout),
    ]
    if tuned:
        args += ["--perf", "--tick-ms", "100"]
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=a.timeout * (a.runs + 2), check=False
    )
    m = re.search(
        r"SUMMARY seeds=\d+: median ([\d.]+)s (\d+) MiB/s .*?"
        r"leecher cpu ([\d.]+)s.*?seeds cpu total ([\d.]+)s",
        proc.stdout,
    )
    if m is None:
        print("libtorrent failed:", proc.stdout[-2000:], proc.stderr[-2000:])
        return None
    ttfb = re.findall(r"ttfb ([\d.]+) s", proc.stdout)
    return {
        "wall_s": float(m.group(1)),
        "mib_s": float(m.group(2)),
        "leecher_cpu_s": float(m.group(3)),
        "seeds_cpu_s": float(m.group(4)),
        "ttfb_s": statistics.median(float(t) for t in ttfb) if ttfb else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--role", default="main", choices=["main", "provider", "downloader"])
    ap.add_argument("--store")
    ap.add_argument("--cap-mib", type=float, default=0.0)
    ap.add_argument("--root")
    ap.add_argument("--size", type=int)
    ap.add_argument("--peers")
    ap.add_argument("--out")
    ap.add_argument("--size-mib", type=int, default=1024, help="payload size (default 1 GiB)")
    ap.add_argument("--providers", type=int, default=3)
    ap.add_argument("--runs", type=int, default=1, help="runs of each configuration (median)")
    ap.add_argument("--capped-size-mib", type=int, default=256, help="payload for the capped runs")
    ap.add_argument("--lt-python", default=str(ROOT / ".tools" / "ltvenv" / "bin" / "python"))
    ap.add_argument("--lt-script", default="/work/shared/bench/lt_swarm.py")
    ap.add_argument(
        "--lt-default", action="store_true", help="also run libtorrent with its defaults"
    )
    ap.add_argument("--skip-lt", action="store_true")
    ap.add_argument("--skip-capped", action="store_true")
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a fresh temp dir)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--profile", help="write the downloader's cProfile stats to this file")
    a = ap.parse_args()
    if a.role == "provider":
        run(role_provider(a))
        return 0
    if a.role == "downloader":
        run(role_downloader(a))
        return 0

    own_tmp = a.workdir is None
    a.workdir = a.workdir or tempfile.mkdtemp(prefix="bench_swarm_")
    work = Path(a.workdir)
    try:
        return bench(a, work)
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)


def bench(a: argparse.Namespace, work: Path) -> int:
    size = a.size_mib * MIB
    payload = work / "payload.bin"
    make_payload(payload, a.size_mib)
    stores = [work / f"store{i}" for i in range(a.providers)]
    root, layer_s = make_store(payload, stores[0])
    for s in stores[1:]:
        make_store(payload, s)
    print(
        f"payload {a.size_mib} MiB | {a.providers} providers -> 1 downloader | "
        f"uvloop {uvloop_enabled()} | "
        f"layer of the payload in {layer_s:.2f}s ({a.size_mib / layer_s:.0f} MiB/s)"
    )

    runs = []
    for i in range(a.runs):
        r = depot_run(a, stores, root, size, a.providers, 0.0)
        if i == 0:
            r["content_verified"] = sha256_file(Path(r["path"])) == sha256_file(payload)
        runs.append(r)
        print(
            f"  depot run {i}: {r['wall_s']:.2f}s {r['mib_s']:.0f} MiB/s | "
            f"ttfb {1000 * (r['ttfb_s'] or 0):.1f} ms | downloader cpu {r['cpu_s']:.2f}s "
            f"providers cpu {r['providers_cpu_s']:.2f}s | per peer MiB {r['per_peer_mib']}"
            + (f" | verified {r['content_verified']}" if "content_verified" in r else ""),
            flush=True,
        )
    depot = statistics.median(r["mib_s"] for r in runs)
    gib = a.size_mib / 1024
    d_cpu = statistics.median(r["cpu_s"] for r in runs) / gib
    p_cpu = statistics.median(r["providers_cpu_s"] for r in runs) / gib
    ttfb = statistics.median(r["ttfb_s"] or 0 for r in runs) * 1000

    capped = None
    capped_rows = {}
    if not a.skip_capped:
        csize_mib = min(a.capped_size_mib, a.size_mib)
        cwork = work / "capped"
        cpayload = cwork / "payload.bin"
        make_payload(cpayload, csize_mib)
        cstores = [cwork / f"store{i}" for i in range(a.providers)]
        croot, _ = make_store(cpayload, cstores[0])
        for s in cstores[1:]:
            make_store(cpayload, s)
        for n in (1, a.providers):
            r = depot_run(
                a, cstores, croot, csize_mib * MIB, n, 50.0 if not a.cap_mib else a.cap_mib
            )
            capped_rows[n] = r
            print(
                f"  capped {a.cap_mib or 50:.0f} MiB/s per source, {n} source(s): "
                f"{r['wall_s']:.2f}s {r['mib_s']:.1f} MiB/s",
                flush=True,
            )
        capped = capped_rows[a.providers]["mib_s"] / capped_rows[1]["mib_s"]

    lt = lt_default = None
    if not a.skip_lt:
        lt = libtorrent_run(a, payload, a.providers, tuned=True)
        if lt:
            print(
                f"  libtorrent tuned (--perf --tick-ms 100): {lt['wall_s']:.2f}s "
                f"{lt['mib_s']:.0f} MiB/s | "
                f"leecher cpu {lt['leecher_cpu_s']:.2f}s seeds cpu {lt['seeds_cpu_s']:.2f}s",
                flush=True,
            )
        if a.lt_default:
            lt_default = libtorrent_run(a, payload, a.providers, tuned=False)
            if lt_default:
                print(f"  libtorrent defaults: {lt_default['mib_s']:.0f} MiB/s", flush=True)

    print()
    print(f"{'':32}{'MiB/s':>8}{'cpu s/GiB down':>16}{'cpu s/GiB up':>14}{'ttfb ms':>9}")
    print(f"{'depot (Noise, verified)':32}{depot:8.0f}{d_cpu:16.2f}{p_cpu:14.2f}{ttfb:9.1f}")
    if lt:
        print(
            f"{'libtorrent tuned (plain TCP)':32}{lt['mib_s']:8.0f}"
            f"{lt['leecher_cpu_s'] / gib:16.2f}"
            f"{lt['seeds_cpu_s'] / gib:14.2f}{1000 * (lt['ttfb_s'] or 0):9.1f}"
        )
    if lt_default:
        print(f"{'libtorrent defaults':32}{lt_default['mib_s']:8.0f}")
    if capped is not None:
        print(
            f"capped speedup ({a.providers} vs 1 source at {a.cap_mib or 50:.0f} MiB/s each): "
            f"{capped:.2f}x"
        )
    result = {
        "depot_mib_s": round(depot, 1),
        "libtorrent_mib_s": lt["mib_s"] if lt else None,
        "ratio": round(depot / lt["mib_s"], 3) if lt else None,
        "ttfb_ms": round(ttfb, 2),
        "capped_speedup": round(capped, 3) if capped is not None else None,
        "cpu_s_per_gib_downloader": round(d_cpu, 3),
        "cpu_s_per_gib_providers": round(p_cpu, 3),
        "libtorrent_cpu_s_per_gib_leecher": round(lt["leecher_cpu_s"] / gib, 3) if lt else None,
        "libtorrent_default_mib_s": lt_default["mib_s"] if lt_default else None,
        "size_mib": a.size_mib,
        "providers": a.providers,
        "content_verified": runs[0].get("content_verified"),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
