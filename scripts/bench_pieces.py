#!/usr/bin/env python3
"""
Benchmark of the piece pipeline (issue 3), each figure beside its baseline from the same run.

Measures, on real files in a temporary directory (deleted afterwards):

1. hashlib SHA-256 over a 1 GiB file (one core, 4 MiB reads) and zfec 10-of-30 encoding
   alone (one core): the baselines;
2. the Merkle commitment (root + layer) of the same file as a 1 GiB piece, with the
   worker pool already started (how a daemon runs it) and, separately, the first call of
   a process, which starts the pool;
3. ``prepare_file`` (encrypt + erasure code or replicate + commit + write + fsync + sign)
   of the same file, with 3 copies and with 10-of-30 erasure coding, in MiB of input/s,
   and the CPU seconds it took across all processes (the machine may be shared: CPU time
   shows the cost even when wall time is noisy);
   then ``reassemble_from_share_files`` of the 10-of-30 file from its 10 data shares (no
   decoding) and from 10 parity shares (full Reed-Solomon decoding), in one process;
4. proving 46 challenges (``contracts.spec.challenge``) over 10 GiB of stored pieces
   (10 real 1 GiB pieces of random bytes, with their layer files), the pieces evicted from
   the page cache first; the layer trees are read and built inside the timed section;
5. the peak memory of ``prepare_file`` on a 4 GiB file, run in a child process: the peak
   RSS of that process (VmHWM) and the peak of the summed RSS of it and its workers,
   sampled every 20 ms.

Prints a table, then as its last line one JSON object with the keys of issue 3.
``--quick`` runs everything at 1/16 scale to check the script itself.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zfec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from eth_account import Account

from contracts.spec.challenge import DEFAULT_CHALLENGES, challenge_indices, locate
from contracts.spec.commitment import leaf_count, verify_leaf
from node.pieces.layer import LayerTree, prove_leaf, read_layer
from node.pieces.layout import CHUNK_SIZE
from node.pieces.merkle import piece_root_and_layer
from node.pieces.modes import Copies, ErasureCode
from node.pieces.prepare import prepare_file
from node.pieces.reassemble import reassemble_from_share_files

GIB = 1 << 30
MIB = 1 << 20
READ = 4 * MIB

CHILD = """
import os, sys
import zfec
from eth_account import Account
from node.pieces.modes import Copies, ErasureCode
from node.pieces.prepare import prepare_file
from node.pieces.reassemble import reassemble_from_share_files
src, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
m = Copies(3) if mode == "copies" else ErasureCode(10, 30)
prepare_file(src, os.urandom(32), m, out, Account.create())
with open("/proc/self/status") as f:
    print([line.split()[1] for line in f if line.startswith("VmHWM")][0])
"""


def write_random(path: Path, size: int, seed: int = 0) -> None:
    """Incompressible bytes (AES-256-CTR keystream), fast enough not to dominate."""
    stream = Cipher(algorithms.AES(seed.to_bytes(32, "big")), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(READ)
    with open(path, "wb") as f:
        for offset in range(0, size, READ):
            f.write(stream.update(zeros[: min(READ, size - offset)]))
        f.flush()
        os.fsync(f.fileno())


def sha256_file(path: Path) -> None:
    h = hashlib.sha256()
    buffer = bytearray(READ)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while got := f.readinto(buffer):
            h.update(view[:got])


def zfec_alone(size: int) -> float:
    """Input MiB/s of zfec producing the 20 parity blocks of 10-of-30 stripes."""
    blocks = [os.urandom(CHUNK_SIZE) for _ in range(10)]
    encoder = zfec.Encoder(10, 30)
    stripes = max(1, size // (10 * CHUNK_SIZE))
    start = time.perf_counter()
    for _ in range(stripes):
        encoder.encode(blocks, list(range(10, 30)))
    return stripes * 10 * CHUNK_SIZE / MIB / (time.perf_counter() - start)


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and its living descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def tree_rss_kib(root: int) -> int:
    total = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        except OSError:
            continue
    return total


def evict(path: Path) -> None:
    """Drop a file's pages from the page cache (clean pages; no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def empty(directory: Path) -> None:
    for p in directory.iterdir():
        p.unlink()


def bench_commit_and_pipeline(work: Path, size: int, rows: list, result: dict) -> None:
    src = work / "input.bin"
    write_random(src, size)
    mib = size / MIB

    sha = [timed(sha256_file, src) for _ in range(3)]
    sha_rate = mib / statistics.median(sha)
    rows.append(("hashlib sha256, 1 process (baseline)", f"{sha_rate:,.0f} MiB/s", "1.00x"))

    zfec_rate = zfec_alone(min(size, 256 * MIB))
    rows.append(
        ("zfec 10-of-30 encode alone, 1 process (baseline)", f"{zfec_rate:,.0f} MiB/s of input", "")
    )
    result["zfec_10_30_mib_s"] = round(zfec_rate, 1)

    cold = timed(piece_root_and_layer, src)  # first call: starts the shared pool
    warm = [timed(piece_root_and_layer, src) for _ in range(3)]
    commit_rate = mib / statistics.median(warm)
    rows.append(
        (
            "Merkle root + layer, pool running",
            f"{commit_rate:,.0f} MiB/s",
            f"{commit_rate / sha_rate:.2f}x sha256",
        )
    )
    rows.append(
        (
            "Merkle root + layer, first call (starts pool)",
            f"{mib / cold:,.0f} MiB/s",
            f"{mib / cold / sha_rate:.2f}x sha256",
        )
    )
    result["sha256_mib_s"] = round(sha_rate, 1)
    result["commit_mib_s"] = round(commit_rate, 1)
    result["commit_first_call_mib_s"] = round(mib / cold, 1)

    out = work / "out"
    out.mkdir()
    account = Account.create()
    secret = os.urandom(32)
    for key, mode in (("copies", Copies(3)), ("ec", ErasureCode(10, 30))):
        cpu0 = tree_cpu_seconds(os.getpid())
        start = time.perf_counter()
        prepared = prepare_file(src, secret, mode, out, account)
        wall = time.perf_counter() - start
        cpu = tree_cpu_seconds(os.getpid()) - cpu0
        written = sum(p.stat().st_size for p in out.iterdir())
        rate = mib / wall
        rows.append(
            (
                f"prepare_file {mode}",
                f"{rate:,.0f} MiB/s of input",
                f"{cpu / (size / GIB):.1f} CPU-s per GiB; wrote {written / MIB:,.0f} MiB",
            )
        )
        result[f"pipeline_{key}_mib_s"] = round(rate, 1)
        result[f"pipeline_{key}_cpu_s_per_gib"] = round(cpu / (size / GIB), 1)
        if key == "ec":
            bench_reassembly(work, src, prepared, secret, rows, result)
        empty(out)
    src.unlink()


def bench_reassembly(
    work: Path, src: Path, prepared, secret: bytes, rows: list, result: dict
) -> None:
    """Rebuild the file from its 10 data shares (no decoding) and from 10 parity shares."""
    m = prepared.manifest.manifest
    mib = m.file_size / MIB
    for label, chosen in (("data shares 0-9", range(10)), ("parity shares 20-29", range(20, 30))):
        back = work / "back.bin"
        paths = {i: prepared.shares[i].piece_path for i in chosen}
        start = time.perf_counter()
        reassemble_from_share_files(prepared.manifest, secret, paths, back)
        wall = time.perf_counter() - start
        if not filecmp.cmp(src, back, shallow=False):
            raise SystemExit("reassembled file differs from the input")
        back.unlink()
        rows.append(
            (
                f"reassemble 10-of-30 from {label}",
                f"{mib / wall:,.0f} MiB/s",
                "verify roots, decode, decrypt, digest, fsync",
            )
        )
        result[f"reassemble_{label.split()[0]}_mib_s"] = round(mib / wall, 1)


def bench_proofs(work: Path, total: int, rows: list, result: dict) -> None:
    piece_size = min(GIB, total)
    count = total // piece_size
    pieces = []
    for i in range(count):
        path = work / f"piece-{i}"
        write_random(path, piece_size, seed=i + 1)
        root, layer = piece_root_and_layer(path)
        (work / f"piece-{i}.layer").write_bytes(layer)
        pieces.append((path, work / f"piece-{i}.layer", root))
    for path, layer_path, _ in pieces:
        evict(path)
        evict(layer_path)
    slots = [leaf_count(piece_size)] * count
    challenges = challenge_indices(os.urandom(32), "0x" + "ab" * 20, 7, sum(slots))

    start = time.perf_counter()
    trees: dict[int, LayerTree] = {}
    proofs = []
    for index in challenges:
        slot, leaf = locate(index, slots)
        if slot not in trees:
            trees[slot] = LayerTree(read_layer(pieces[slot][1], piece_size), piece_size)
        proofs.append((slot, leaf, *prove_leaf(pieces[slot][0], trees[slot], piece_size, leaf)))
    cold = time.perf_counter() - start

    start = time.perf_counter()
    for index in challenges:
        slot, leaf = locate(index, slots)
        prove_leaf(pieces[slot][0], trees[slot], piece_size, leaf)
    warm = time.perf_counter() - start

    assert all(verify_leaf(pieces[s][2], piece_size, i, lf, p) for s, i, lf, p in proofs)
    label = f"{DEFAULT_CHALLENGES} proofs over {total / GIB:g} GiB ({count} pieces)"
    rows.append((f"{label}, cold", f"{cold * 1000:,.0f} ms", "pieces evicted, layers read"))
    rows.append((f"{label}, warm", f"{warm * 1000:,.1f} ms", "layer trees in memory"))
    result["proof_46_s"] = round(cold, 4)
    result["proof_46_warm_s"] = round(warm, 4)
    for path, layer_path, _ in pieces:
        path.unlink()
        layer_path.unlink()


def bench_memory(work: Path, size: int, rows: list, result: dict) -> None:
    src = work / "big.bin"
    write_random(src, size)
    out = work / "out"
    out.mkdir(exist_ok=True)
    peaks = {}
    for mode in ("copies", "ec"):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(src), str(out), mode], stdout=subprocess.PIPE
        )
        tree_peak = 0
        while child.poll() is None:
            tree_peak = max(tree_peak, tree_rss_kib(child.pid))
            time.sleep(0.02)
        assert child.stdout is not None
        main_peak = int(child.stdout.read().split()[-1])
        if child.returncode:
            raise SystemExit(f"prepare_file child failed with {child.returncode}")
        empty(out)
        peaks[mode] = (main_peak / 1024, tree_peak / 1024)
        label = "3 copies" if mode == "copies" else "10-of-30"
        rows.append(
            (
                f"peak RSS, prepare_file {size / GIB:g} GiB {label}",
                f"{main_peak / 1024:,.0f} MiB",
                f"{tree_peak / 1024:,.0f} MiB with its workers",
            )
        )
    src.unlink()
    result["peak_rss_mib_4gib"] = round(max(t for _, t in peaks.values()), 1)
    result["peak_rss_main_mib_4gib"] = round(max(m for m, _ in peaks.values()), 1)


PARTS = ("pipeline", "proofs", "memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="run at 1/16 scale")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to put data")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=PARTS,
        help="leave a part out (for a disk without the 15 GiB the proof part needs)",
    )
    args = parser.parse_args()
    scale = 16 if args.quick else 1
    size, proof_total, rss_size = GIB // scale, 10 * GIB // scale, 4 * GIB // scale
    parts = [part for part in PARTS if part not in args.skip]

    space = {
        "pipeline": 4 * size,
        "proofs": proof_total + 3 * GIB // scale,
        "memory": 4 * rss_size,
    }
    needed = max(space[part] for part in parts) * 1.1
    free = shutil.disk_usage(args.dir).free
    if free < needed:
        raise SystemExit(f"{args.dir}: {free / GIB:.1f} GiB free, {needed / GIB:.1f} needed")

    rows: list[tuple[str, str, str]] = []
    result: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-pieces-", dir=args.dir))
    try:
        if "pipeline" in parts:
            bench_commit_and_pipeline(work, size, rows, result)
        if "proofs" in parts:
            bench_proofs(work, proof_total, rows, result)
        if "memory" in parts:
            bench_memory(work, rss_size, rows, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'result':>22}  notes")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>22}  {note}")
    print(f"(cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
