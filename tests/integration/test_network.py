"""
The whole market together: ``market`` commands against ``prover run`` and ``auditor run``
daemons on a real anvil, through their real interfaces only (command lines, JSON-RPC, the
P2P protocols, the auditors' HTTP APIs).

The tests share one network and run in file order in one xdist worker. Two more whole-network
scenarios live beside the parts they exercise most: a provider killed during an upload is
replaced (tests/market/test_e2e.py), and repair after a termination (same file).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from contracts.events import FaultReported, ProofSubmitted
from market.localnet import Auditor, Client, Network, Prover
from node.pieces.layout import CHUNK_SIZE

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("integration")]

MIB = 1 << 20


def data(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def piece_file(network: Network, prover: Prover, deal_id: int) -> Path:
    """The file in ``prover``'s blob store that holds deal ``deal_id``'s piece."""
    root = network.ledger().deal(deal_id).piece_root.hex()
    (path,) = (p for p in prover.piece_files() if p.stem == root)
    return path


def put(network: Network, client: Client, src: Path, *mode: str) -> dict[str, Any]:
    doc: dict[str, Any] = network.market_json(client, "put", str(src), *mode, "--duration", "60")
    return doc


def test_put_and_get_with_copies_and_with_erasure_coding(
    network: Network, client: Client, auditors: list[Auditor], tmp_path: Path
) -> None:
    stored = []
    for name, mode in (("copies", ("--copies", "2")), ("ec", ("--ec", "2-of-3"))):
        src = data(tmp_path / f"{name}.bin", 3 * MIB + 12_345)
        doc = put(network, client, src, *mode)
        assert len({d["provider"] for d in doc["deals"]}) == len(doc["deals"])
        back = tmp_path / f"{name}.back"
        got = network.market_json(client, "get", doc["id"], str(back))
        assert back.read_bytes() == src.read_bytes() and got["size"] == src.stat().st_size
        stored.append(doc)

    # Both auditors re-verify every holder's proofs themselves and agree with the contract.
    holders = {d["provider"] for doc in stored for d in doc["deals"]}
    for auditor in auditors:

        def verified(auditor: Auditor = auditor) -> bool:
            providers = auditor.get("/api/reputation")["providers"]
            return all(providers[h]["proofs"]["verified"] >= 2 for h in holders)

        network.wait_for(verified, "two re-verified proofs of every holder", timeout=60)
        assert auditor.get("/api/reputation")["network"]["alarms"] == 0
        assert auditor.get("/api/alarms") == []


def test_a_prover_killed_in_the_middle_of_a_period_misses_no_proof(
    network: Network, client: Client, tmp_path: Path
) -> None:
    doc = put(network, client, data(tmp_path / "one.bin", MIB), "--copies", "1")
    (deal,) = doc["deals"]
    prover = network.prover_of(deal["provider"])
    ledger = network.ledger()
    first_block = network.block()
    start = deal["start_period"]
    network.wait_for(lambda: ledger.is_proven(prover.address, start), "the first proof")

    # SIGKILL halfway through a period, and start the daemon again at once.
    schedule = network.deployment.schedule
    period = network.period()
    network.wait_for(
        lambda: network.block() >= schedule.period_start(period) + schedule.length // 2,
        "the middle of the period",
    )
    prover.kill()
    network.restart_prover(prover)
    last = network.period() + 3
    network.wait_period(last + 1, timeout=60)

    proven = [p for p in range(start, last + 1) if ledger.is_proven(prover.address, p)]
    assert proven == list(range(start, last + 1))
    # One proof transaction per period: the restarted daemon resubmitted nothing.
    periods = [
        e.period
        for e in ledger.events(first_block, None, kinds=[ProofSubmitted])
        if isinstance(e, ProofSubmitted) and e.provider == prover.address
    ]
    assert len(periods) == len(set(periods))


def test_wiped_data_is_slashed_and_one_of_two_racing_auditors_earns_the_bounty(
    network: Network, client: Client, auditors: list[Auditor], tmp_path: Path
) -> None:
    doc = put(network, client, data(tmp_path / "wiped.bin", 2 * MIB), "--copies", "1")
    (deal,) = doc["deals"]
    victim = network.prover_of(deal["provider"])
    ledger = network.ledger()
    network.wait_for(lambda: ledger.is_proven(victim.address, deal["start_period"]), "a proof")
    stake = ledger.provider(victim.address).stake
    tokens = [ledger.balance_of(a.address) for a in auditors]
    eth = [network.web3.eth.get_balance(a.address) for a in auditors]
    first_block = network.block()

    # The second half of every piece it holds wiped (the size kept): a challenge lands in a
    # hole with probability 1/2, so a period escapes with probability 2**-challenges.
    assert victim.piece_files()
    for path in victim.piece_files():
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.seek(size // 2)
            f.write(bytes(size - size // 2))
    wiped_in = network.period()

    def reported() -> list[FaultReported]:
        return [
            e
            for e in ledger.events(first_block, None, kinds=[FaultReported])
            if isinstance(e, FaultReported) and e.provider == victim.address
        ]

    try:
        fault = network.wait_for(reported, "a fault report", timeout=90)[0]
    except TimeoutError as exc:
        claims = [c for a in auditors for c in a.get("/api/claims")]
        raise AssertionError(f"{exc}; the auditors' claims: {claims}") from exc
    # The wipe's period (if its proof was not in yet) or the next goes unproven, and is
    # reported during the period after it, the first in which a report is allowed; one more
    # period allows for 2**-8 bad luck.
    assert fault.period <= wiped_in + 2
    assert fault.bounty > 0
    assert ledger.provider(victim.address).stake <= stake - fault.bounty

    def claims() -> list[list[dict[str, Any]]]:
        found = [
            [
                c
                for c in a.get("/api/claims")
                if c["provider"] == victim.address and c["period"] == fault.period
            ]
            for a in auditors
        ]
        return found if all(found) else []

    found = network.wait_for(claims, "both auditors' claims", timeout=30)
    statuses = sorted(c["status"] for mine in found for c in mine)
    assert statuses[-1] == "won" and set(statuses[:-1]) <= {"lost", "taken"}, statuses
    (winner,) = (i for i, mine in enumerate(found) if mine[0]["status"] == "won")
    assert auditors[winner].address == fault.reporter
    assert ledger.balance_of(fault.reporter) == tokens[winner] + fault.bounty
    loser = 1 - winner
    assert ledger.balance_of(auditors[loser].address) == tokens[loser]
    # The loser spent at most the gas of one failed report, and its record says so.
    spent = eth[loser] - network.web3.eth.get_balance(auditors[loser].address)
    assert spent == sum(int(c["gas_cost_wei"]) for c in found[loser])
    assert spent <= 2 * int(found[winner][0]["gas_cost_wei"])


def test_a_provider_serving_corrupted_blocks_does_not_stop_a_get(
    network: Network, client: Client, tmp_path: Path
) -> None:
    src = data(tmp_path / "rot.bin", 4 * MIB)
    doc = put(network, client, src, "--copies", "2")
    ledger = network.ledger()
    deals = doc["deals"]
    provers = [network.prover_of(d["provider"]) for d in deals]
    # Right after both proved a period, so that no challenge finds the damage before the get.
    period = max(d["start_period"] for d in deals)
    network.wait_for(
        lambda: all(ledger.is_proven(p.address, period) for p in provers), "proofs", timeout=30
    )
    bad = piece_file(network, provers[0], deals[0]["deal_id"])
    with bad.open("r+b") as f:
        for offset in range(0, bad.stat().st_size, CHUNK_SIZE):  # one byte in every chunk
            f.seek(offset + 100)
            byte = f.read(1)
            f.seek(offset + 100)
            f.write(bytes([byte[0] ^ 0xFF]))

    back = tmp_path / "rot.back"
    result = network.market(client, "get", doc["id"], str(back), "--json", "-v")
    assert result.returncode == 0, result.stderr[-3000:]
    assert back.read_bytes() == src.read_bytes()


def test_daemons_stop_cleanly(network: Network, auditors: list[Auditor]) -> None:
    for daemon in [*auditors, *network.provers]:
        daemon.signal(signal.SIGTERM)
    for daemon in [*auditors, *network.provers]:
        assert daemon.process is not None
        assert daemon.process.wait(30) == 0, daemon.log_text()[-2000:]
