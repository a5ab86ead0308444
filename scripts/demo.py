"""
The whole Depot market on this machine, with faults (``make demo``).

1. anvil with one-second blocks; the contracts deployed with 10-block proving periods;
2. five ``prover run`` daemons (own homes, keys, ports; one DHT) and one ``auditor run``;
3. a client stores a generated 64 MiB file with erasure coding 2-of-3 (``market put``);
4. proving periods pass: every holder proves, the auditor re-verifies every proof;
5. fault one: a holder is killed with SIGKILL. Its proofs stop; the auditor reports each
   missed period for the bounty until the contract terminates the provider; ``market repair``
   rebuilds the lost share from the two others and places it with a spare provider;
6. fault two: the second half of another holder's piece file is wiped behind its back
   (overwritten with zeros, the size kept). At the next challenge the daemon cannot prove the
   period; it declares the loss, the auditor reports the miss, the contract slashes the
   collateral; ``market repair`` places that share with the last spare;
7. ``market get`` swarms the file back from the holders and must be byte-identical;
8. a table of what happened, from the auditor's independent record and the chain.

The provers run with the background scrub's re-hashing off (``storage.scrub_rate = 0``:
existence checks only). With it on, a daemon finds wiped bytes of a small piece within
seconds and declares the loss before any challenge (docs/prover.md); at the scale of real
disks a scrub pass takes days and the challenges are what catch a loss, which is what the
demo shows. The faults come one after the other because a 2-of-3 file survives one lost
share at a time, and a repaired share never goes back to a provider that held or lost one
(docs/market.md).
Exits 0 on success, 1 on any failure; stops every process it started either way.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from contracts.deployment import TOKEN_UNIT
from market.localnet import PARAMS, Auditor, Client, Network, Prover

MIB = 1 << 20
DEMO_PARAMS = replace(PARAMS, period_blocks=10, challenges=46)
"""Ten one-second blocks per period and the protocol's 46 challenges."""
PRICE = "1"  # tokens per GiB per period
COLLATERAL = "1000"  # tokens per GiB: a 32 MiB share locks 31.25 tokens
DURATION = 60  # periods: the deals outlive the demo

START = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {text}", flush=True)


def tokens(amount: int | str) -> str:
    return f"{int(amount) / TOKEN_UNIT:,.3f}"


def make_file(path: Path, size: int) -> str:
    """``size`` reproducible pseudo-random bytes at ``path``; their sha256."""
    data = random.Random(2026).randbytes(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def holders(status: dict[str, Any]) -> dict[int, str]:
    """Share index -> provider address of the file's active deals."""
    return {d["share"]: d["provider"] for d in status["deals"] if d["condition"] == "active"}


def wait_proven(net: Network, auditor: Auditor, addresses: list[str], periods: int) -> None:
    """Until the auditor has seen ``periods`` proven periods of each provider."""

    def done() -> bool:
        providers = auditor.get("/api/reputation")["providers"]
        return all(
            providers.get(a, {}).get("proofs", {}).get("proven", 0) >= periods for a in addresses
        )

    net.wait_for(done, f"{periods} proven periods of every holder", timeout=120)


def wait_reported(net: Network, auditor: Auditor, address: str, what: str, count: int) -> None:
    """Until the auditor has won ``count`` bounties against ``address``."""

    def done() -> bool:
        won = [
            c
            for c in auditor.get("/api/claims")
            if c["provider"].lower() == address.lower() and c["status"] == "won"
        ]
        return len(won) >= count

    net.wait_for(done, what, timeout=180)


def repair(net: Network, client: Client, file_id: str, share: int) -> None:
    """``market repair ID``: ``share`` must be rebuilt and placed, and the file healthy."""
    started = time.monotonic()
    doc = net.market_json(client, "repair", file_id)
    (outcome,) = doc["files"]
    if share not in outcome["repaired"]:
        raise RuntimeError(f"repair did not rebuild share {share}: {outcome}")
    new = net.prover_of(outcome["deals"][0]["provider"])
    say(
        f"market repair: share {share} rebuilt from the survivors and placed with "
        f"{new.name} in {time.monotonic() - started:.1f} s"
    )
    status = net.market_json(client, "status", file_id)
    say(f"  file health: {status['health']['state']} ({status['health']['alive']}/3 shares)")
    if status["health"]["state"] != "healthy":
        raise RuntimeError(f"not healthy after repair: {status['health']}")


def run(root: Path, size: int) -> None:
    say("starting anvil (1 s blocks) and deploying the contracts")
    with Network(root, DEMO_PARAMS, block_time=1.0) as net:
        say(f"  market at {net.deployment.market} on {net.anvil.url}")
        provers = net.start_provers(
            [PRICE] * 5, collateral=COLLATERAL, config={"storage.scrub_rate": 0}
        )
        for p in provers:
            say(f"  {p.name}: {p.address} p2p {p.ready['p2p']}")
        auditor = net.start_auditor()
        say(f"  auditor: {auditor.address} api {auditor.api}")
        client = net.client(tokens=1_000 * TOKEN_UNIT)
        net.wait_asks(client, 5)
        say("  the client sees all five providers' signed asks in the DHT, and their stake")
        ledger = net.ledger(net.deployer)
        stakes = {p.address: ledger.provider(p.address).stake for p in provers}

        src = root / "demo.bin"
        digest = make_file(src, size)
        say(f"market put: {size / MIB:.0f} MiB, erasure coding 2-of-3, {DURATION} periods")
        started = time.monotonic()
        put = net.market_json(
            client, "put", str(src), "--ec", "2-of-3", "--duration", str(DURATION), timeout=300
        )
        put_s = time.monotonic() - started
        file_id = put["id"]
        say(f"  stored in {put_s:.1f} s ({size / MIB / put_s:.0f} MiB/s, deals active on chain)")
        say(f"  file id {file_id}")
        status = net.market_json(client, "status", file_id)
        by_share = holders(status)
        for share, address in sorted(by_share.items()):
            say(f"  share {share} -> {net.prover_of(address).name}")

        say("letting proving periods pass; the auditor re-verifies every proof")
        wait_proven(net, auditor, list(by_share.values()), 2)
        say("  every holder has proven two periods")

        killed = net.prover_of(by_share[0])
        say(f"fault 1: SIGKILL {killed.name} (share 0)")
        killed.kill()
        wait_reported(
            net,
            auditor,
            killed.address,
            "the auditor's reports",
            DEMO_PARAMS.max_consecutive_misses,
        )
        net.wait_for(
            lambda: auditor.get(f"/api/providers/{killed.address}")["terminations"] >= 1,
            "the termination",
            timeout=60,
        )
        say(
            f"  the auditor reported {DEMO_PARAMS.max_consecutive_misses} missed periods; "
            f"the contract terminated {killed.name}'s deals and slashed its collateral"
        )
        repair(net, client, file_id, 0)

        victim = net.prover_of(by_share[1])
        wipe_second_half(victim)
        say(f"fault 2: wiped the second half of {victim.name}'s piece file (share 1)")
        wait_reported(net, auditor, victim.address, "the auditor's report", 1)
        net.wait_for(
            lambda: any(
                d["share"] == 1 and d["condition"] != "active"
                for d in net.market_json(client, "status", file_id)["deals"]
            ),
            "the loss of share 1 on chain",
            timeout=60,
        )
        say(
            f"  {victim.name} could not prove the period and declared the loss; "
            "the auditor reported the miss and collected the bounty"
        )
        repair(net, client, file_id, 1)

        out = root / "back.bin"
        say("market get: swarming the file back from every holder")
        started = time.monotonic()
        got = net.market_json(client, "get", file_id, str(out), timeout=300)
        get_s = time.monotonic() - started
        same = hashlib.sha256(out.read_bytes()).hexdigest() == digest
        say(
            f"  {got['size'] / MIB:.0f} MiB in {get_s:.1f} s "
            f"({size / MIB / get_s:.0f} MiB/s), byte-identical: {same}"
        )
        if not same:
            raise RuntimeError("the file that came back differs from the one stored")

        # Settlement is lazy (anyone may call it): settle every deal so that payments and
        # slashes are on chain and in the auditor's record.
        ledger.settle_many(range(1, ledger.deal_count() + 1))
        summary(net, auditor, stakes, (killed, victim), (put_s, get_s), size)
    leftovers = [d.name for d in [*net.provers, *net.auditors] if d.alive()]
    if leftovers or net.anvil.process.poll() is None:
        raise RuntimeError(f"processes still running: {leftovers}")
    say("every process stopped; the demo passed")


def wipe_second_half(victim: Prover) -> None:
    """Overwrite the second half of the victim's one piece file with zeros, size unchanged."""
    (piece,) = victim.piece_files()
    size = piece.stat().st_size
    with piece.open("r+b") as f:
        f.seek(size // 2)
        f.write(bytes(size - size // 2))
        f.flush()
        os.fsync(f.fileno())


def summary(
    net: Network,
    auditor: Auditor,
    stakes: dict[str, int],
    faulty: tuple[Prover, Prover],
    seconds: tuple[float, float],
    size: int,
) -> None:
    """The table: per provider from the auditor's record (and stakes from the chain)."""
    head = net.block()
    net.wait_for(
        lambda: auditor.get("/api/status")["indexed_through_block"] >= head,
        "the auditor to index the settlements",
        timeout=30,
    )
    doc = auditor.get("/api/reputation")
    ledger = net.ledger()
    notes = {faulty[0].name: "killed", faulty[1].name: "data wiped"}
    header = ("provider", "fault", "deals", "proven", "missed", "reported", "stake lost")
    header += ("earned", "re-verified")
    rows = []
    for p in net.provers:
        r = doc["providers"][p.address]
        lost = stakes[p.address] - ledger.provider(p.address).stake
        rows.append(
            (
                p.name,
                notes.get(p.name, ""),
                str(r["deals"]["total"]),
                str(r["proofs"]["proven"]),
                str(r["proofs"]["missed"]),
                str(r["faults"]["reported"]),
                tokens(lost),
                tokens(r["earnings"]),
                str(r["proofs"]["verified"]),
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print()
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print()
    won = [c for c in auditor.get("/api/claims") if c["status"] == "won"]
    bounty = sum(int(c["bounty"]) for c in won)
    put_s, get_s = seconds
    print(f"auditor: {len(won)} missed periods reported, {tokens(bounty)} tokens of bounty,")
    print(f"         {doc['network']['alarms']} disagreements with the contract's verdicts")
    print(
        f"put: {size / MIB:.0f} MiB in {put_s:.1f} s ({size / MIB / put_s:.0f} MiB/s: encrypt, "
        f"erasure-code, upload 3 x {size / 2 / MIB:.0f} MiB, 3 deals accepted on chain)"
    )
    print(f"get: {size / MIB:.0f} MiB in {get_s:.1f} s ({size / MIB / get_s:.0f} MiB/s)")
    print(f"total: {time.monotonic() - START:.0f} s")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--size-mib", type=int, default=64, help="file size (default 64)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    # SIGTERM (and SIGINT) unwind through the `with Network` block, which stops everything.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    root = Path(tempfile.mkdtemp(prefix="depot-demo-"))
    try:
        run(root, args.size_mib * MIB)
    except (Exception, KeyboardInterrupt) as exc:
        say(f"demo failed: {type(exc).__name__}: {exc}")
        say(f"logs kept in {root}")
        return 1
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        say(f"work directory kept: {root}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
