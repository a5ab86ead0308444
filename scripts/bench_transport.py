#!/usr/bin/env python
"""
Throughput and CPU cost of one encrypted connection (node.transport) against plain TCP.

Every measurement runs sender and receiver in separate processes on 127.0.0.1 and sends
``--size`` MiB in 256 KiB writes (the swarm's chunk size); each side reports the CPU time
(user + system) it spent, so the table shows CPU seconds per GiB for each side. Cases:

* plain TCP with asyncio streams, on the standard loop and on uvloop (the baseline);
* node.transport (Noise XX + ChaCha20-Poly1305 + mux): one stream, and 4 streams over one
  connection, on both loops;
* the swarm's shape: 3 sender processes, one connection each, into one receiver.

Each case runs ``--repeat`` times; the table shows the median (and the range). The last
line is one JSON object. Run on a quiet machine for stable numbers:

    .venv/bin/python scripts/bench_transport.py            # ~2 minutes
    .venv/bin/python scripts/bench_transport.py --size 256 --repeat 1   # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from node.config import MIB, MuxConfig, TransportConfig
from node.identity import NodeKey
from node.transport import Host, Stream

CHUNK = 256 * 1024
PROTOCOL = "/depot/bench/1"
GIB = 1024**3


def bench_config() -> TransportConfig:
    return TransportConfig(mux=MuxConfig())


def run_loop(main: Any, use_uvloop: bool) -> Any:
    if use_uvloop:
        import uvloop  # noqa: PLC0415

        return uvloop.run(main)
    return asyncio.run(main)


def cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- receiver process -------------------------------------------------------------------


def receiver(kind: str, use_uvloop: bool, expected_streams: int, pipe: Connection) -> None:
    async def main() -> None:
        state = {"first": 0.0, "cpu0": 0.0, "done": 0, "bytes": 0}
        finished = asyncio.Event()

        def started() -> None:
            if state["done"] == 0 and state["first"] == 0.0:
                state["first"] = time.monotonic()
                state["cpu0"] = cpu()

        def ended(n: int) -> None:
            state["bytes"] += n
            state["done"] += 1
            if state["done"] == expected_streams:
                finished.set()

        if kind == "plain":

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                started()
                total = 0
                while chunk := await reader.read(CHUNK):
                    total += len(chunk)
                writer.write(total.to_bytes(8, "big"))
                await writer.drain()
                writer.close()
                ended(total)

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            pipe.send((port, b""))
        else:
            host = Host(NodeKey.generate(), bench_config())

            async def handler(stream: Stream) -> None:
                started()
                total = 0
                while chunk := await stream.read(CHUNK):
                    total += len(chunk)
                await stream.write(total.to_bytes(8, "big"))
                ended(total)

            host.set_handler(PROTOCOL, handler)
            _, port = await host.listen("127.0.0.1", 0)
            pipe.send((port, host.node_id))
        await finished.wait()
        pipe.send({"cpu": cpu() - state["cpu0"], "bytes": state["bytes"]})
        await asyncio.sleep(0.05)
        if kind == "plain":
            server.close()
        else:
            await host.close()

    run_loop(main(), use_uvloop)


# -- sender process ---------------------------------------------------------------------


def sender(
    kind: str,
    use_uvloop: bool,
    port: int,
    node_id: bytes,
    size: int,
    streams: int,
    go: Any,
    pipe: Connection,
) -> None:
    async def main() -> None:
        chunk = os.urandom(CHUNK)
        per_stream = size // streams
        go.wait()
        if kind == "plain":
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            t0, c0 = time.monotonic(), cpu()
            for _ in range(per_stream // CHUNK):
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()
            assert int.from_bytes(await reader.readexactly(8), "big") == per_stream
            t1, c1 = time.monotonic(), cpu()
            writer.close()
        else:
            host = Host(NodeKey.generate(), bench_config())
            addr = [("127.0.0.1", port)]
            await host.open_stream(node_id, addr, "/warm-up")  # connect + handshake first
            t0, c0 = time.monotonic(), cpu()

            async def push(stream: Stream) -> None:
                for _ in range(per_stream // CHUNK):
                    await stream.write(chunk)
                await stream.close()
                assert int.from_bytes(await stream.readexactly(8), "big") == per_stream

            opened = [await host.open_stream(node_id, addr, PROTOCOL) for _ in range(streams)]
            await asyncio.gather(*(push(s) for s in opened))
            t1, c1 = time.monotonic(), cpu()
            await host.close()
        pipe.send({"t0": t0, "t1": t1, "cpu": c1 - c0, "bytes": per_stream * streams})

    run_loop(main(), use_uvloop)


# -- orchestration ----------------------------------------------------------------------


@dataclass
class Result:
    mib_s: float
    send_cpu_per_gib: float
    recv_cpu_per_gib: float


def measure(kind: str, use_uvloop: bool, size: int, streams: int, senders: int) -> Result:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    recv_proc = ctx.Process(target=receiver, args=(kind, use_uvloop, streams * senders, child))
    recv_proc.start()
    port, node_id = parent.recv()
    go = ctx.Event()
    pipes, procs = [], []
    for _ in range(senders):
        p_parent, p_child = ctx.Pipe()
        proc = ctx.Process(
            target=sender,
            args=(kind, use_uvloop, port, node_id, size // senders, streams, go, p_child),
        )
        proc.start()
        pipes.append(p_parent)
        procs.append(proc)
    time.sleep(0.5)  # let every process import and connect its loop
    go.set()
    reports = [p.recv() for p in pipes]
    recv_report = parent.recv()
    for proc in [*procs, recv_proc]:
        proc.join(30)
    total = sum(r["bytes"] for r in reports)
    assert recv_report["bytes"] == total, (recv_report, total)
    wall = max(r["t1"] for r in reports) - min(r["t0"] for r in reports)
    gib = total / GIB
    return Result(
        mib_s=total / MIB / wall,
        send_cpu_per_gib=sum(r["cpu"] for r in reports) / gib,
        recv_cpu_per_gib=recv_report["cpu"] / gib,
    )


@dataclass
class Case:
    key: str
    label: str
    kind: str
    uvloop: bool
    streams: int = 1
    senders: int = 1


CASES = [
    Case("plain_asyncio", "plain TCP, asyncio streams", "plain", False),
    Case("plain_uvloop", "plain TCP, asyncio streams on uvloop", "plain", True),
    Case("encrypted_asyncio", "transport, 1 stream, asyncio", "noise", False),
    Case("encrypted_uvloop", "transport, 1 stream, uvloop", "noise", True),
    Case("encrypted_4_streams_asyncio", "transport, 4 streams/1 conn, asyncio", "noise", False, 4),
    Case("encrypted_4_streams_uvloop", "transport, 4 streams/1 conn, uvloop", "noise", True, 4),
    Case("swarm_3_to_1_uvloop", "transport, 3 senders -> 1 receiver, uvloop", "noise", True, 1, 3),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median shown)")
    parser.add_argument("--only", nargs="*", help="case keys to run")
    args = parser.parse_args()
    size = args.size * MIB // CHUNK // 12 * 12 * CHUNK  # divisible by 1, 3 and 4 streams
    cases = [c for c in CASES if not args.only or c.key in args.only]
    print(f"node.transport benchmark: {size / MIB:.0f} MiB per run, {args.repeat} runs per case,")
    print(f"{CHUNK // 1024} KiB writes, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print()
    header = f"{'case':<44} {'MiB/s':>8} {'range':>15} {'send s/GiB':>11} {'recv s/GiB':>11}"
    print(header)
    print("-" * len(header))
    summary: dict[str, Result] = {}
    for case in cases:
        runs = [
            measure(case.kind, case.uvloop, size, case.streams, case.senders)
            for _ in range(args.repeat)
        ]
        med = statistics.median(r.mib_s for r in runs)
        result = Result(
            mib_s=med,
            send_cpu_per_gib=statistics.median(r.send_cpu_per_gib for r in runs),
            recv_cpu_per_gib=statistics.median(r.recv_cpu_per_gib for r in runs),
        )
        summary[case.key] = result
        lo, hi = min(r.mib_s for r in runs), max(r.mib_s for r in runs)
        print(
            f"{case.label:<44} {med:>8.0f} {f'{lo:.0f}-{hi:.0f}':>15} "
            f"{result.send_cpu_per_gib:>11.2f} {result.recv_cpu_per_gib:>11.2f}",
            flush=True,
        )
    out: dict[str, float] = {}
    if "plain_uvloop" in summary and "encrypted_uvloop" in summary:
        plain, enc = summary["plain_uvloop"], summary["encrypted_uvloop"]
        out["plain_mib_s"] = round(plain.mib_s, 1)
        out["encrypted_mib_s"] = round(enc.mib_s, 1)
        out["encrypted_over_plain"] = round(enc.mib_s / plain.mib_s, 3)
        print()
        print(
            f"encrypted/plain (uvloop): {enc.mib_s / plain.mib_s:.2f}; "
            f"receiver-bound capacity of one core: {1024 / enc.recv_cpu_per_gib:.0f} MiB/s"
        )
    for key, result in summary.items():
        out[f"{key}_mib_s"] = round(result.mib_s, 1)
        out[f"{key}_send_cpu_s_per_gib"] = round(result.send_cpu_per_gib, 3)
        out[f"{key}_recv_cpu_s_per_gib"] = round(result.recv_cpu_per_gib, 3)
    if "encrypted_asyncio" in summary and "encrypted_uvloop" in summary:
        out["uvloop_speedup_encrypted"] = round(
            summary["encrypted_uvloop"].mib_s / summary["encrypted_asyncio"].mib_s, 3
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
