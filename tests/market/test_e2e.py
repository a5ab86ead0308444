"""
The ``market`` command end to end: real anvil, real ``prover run`` daemons, real sockets.

All tests share one network (``conftest.cluster``) and run in one xdist worker, in file
order: the tests that kill provers come last.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from contracts.events import ProviderTerminated
from market.db import Database
from market.localnet import BIN, PASSPHRASE, TOKEN, Client, Network
from market.placement import State

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("market-cluster")]

MIB = 1 << 20


def data(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def placements(client: Client, file_id: str | None = None) -> list:
    db = Database(f"sqlite:///{client.home / 'market.db'}")
    try:
        return db.placements(file_id)
    finally:
        db.close()


@pytest.fixture(scope="module")
def client(cluster: Network) -> Client:
    c = cluster.client()
    cluster.wait_asks(c, len(cluster.provers))
    return c


def test_providers_are_discovered_and_ranked(cluster: Network, client: Client) -> None:
    doc = cluster.market_json(client, "providers", "--size", str(4 * MIB), "--periods", "10")
    rows = doc["providers"]
    assert len(rows) == 5 and all(r["eligible"] for r in rows)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    # Same stake, history and space: price decides, cheapest first.
    assert rows[0]["address"] == cluster.provers[0].address
    assert rows[0]["latency_ms"] is not None
    assert set(rows[0]["parts"]) >= {"price", "collateral", "proofs", "latency", "space"}


def test_put_and_get_with_copies(cluster: Network, client: Client, tmp_path: Path) -> None:
    src = data(tmp_path / "photo.jpg", 3 * MIB + 12345)
    put = cluster.market_json(client, "put", str(src), "--copies", "3", "--duration", "30")
    deals = put["deals"]
    assert put["redundancy"] == "copies:3" and len(deals) == 3
    assert len({d["provider"] for d in deals}) == 3  # never two shares on one provider
    assert all(d["deal_id"] and d["state"] == "active" for d in deals)
    assert put["manifest_copies"] == 3 and put["published"]
    ledger = cluster.ledger()
    for d in deals:  # the chain agrees with what the client recorded
        deal = ledger.deal(d["deal_id"])
        assert deal.client == client.account.address and deal.provider == d["provider"]

    back = tmp_path / "back.jpg"
    got = cluster.market_json(client, "get", put["id"], str(back))
    assert back.read_bytes() == src.read_bytes()
    assert got["size"] == src.stat().st_size

    status = cluster.market_json(client, "status", put["id"])
    assert status["health"] == {
        "state": "healthy",
        "alive": 3,
        "needed": 1,
        "total": 3,
        "missing": [],
        "expiring": [],
    }
    assert {d["condition"] for d in status["deals"]} == {"active"}
    listing = cluster.market_json(client, "ls")
    assert put["id"] in [f["id"] for f in listing["files"]]

    # Without --force an existing OUT is kept; the default name is the stored one.
    again = cluster.market(client, "get", put["id"], str(back))
    assert again.returncode == 2 and "exists" in again.stderr
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = subprocess.run(
        [str(BIN / "market"), "--home", str(client.home), "get", put["id"]],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, DEPOT_PASSPHRASE=PASSPHRASE),
    )
    assert result.returncode == 0, result.stderr
    assert (cwd / "photo.jpg").read_bytes() == src.read_bytes()


def test_erasure_coding_survives_the_loss_of_n_minus_k_holders(
    cluster: Network, client: Client, tmp_path: Path
) -> None:
    src = data(tmp_path / "doc.bin", 5 * MIB + 7)
    put = cluster.market_json(client, "put", str(src), "--ec", "3-of-5", "--duration", "30")
    assert put["redundancy"] == "ec:3-of-5"
    assert len({d["provider"] for d in put["deals"]}) == 5
    # Freeze the holders of two shares: any three rebuild the file.
    frozen = [cluster.prover_of(d["provider"]) for d in put["deals"][:2]]
    for p in frozen:
        p.signal(signal.SIGSTOP)
    try:
        back = tmp_path / "back.bin"
        cluster.market_json(client, "get", put["id"], str(back))
        assert back.read_bytes() == src.read_bytes()
    finally:
        for p in frozen:
            p.signal(signal.SIGCONT)


def test_a_new_home_with_the_same_key_gets_the_file_by_id_alone(
    cluster: Network, client: Client, tmp_path: Path
) -> None:
    src = data(tmp_path / "a.bin", MIB)
    put = cluster.market_json(client, "put", str(src), "--copies", "2", "--duration", "30")
    other = tmp_path / "elsewhere"
    init = cluster.market(
        Client(other, client.account),
        "init",
        "--deployment",
        str(cluster.deployment_path),
        "--import-key",
        client.account.key.hex(),
        "--exempt-loopback",
    )
    assert init.returncode == 0, init.stderr
    back = tmp_path / "b.bin"
    cluster.market_json(Client(other, client.account), "get", put["id"], str(back))
    assert back.read_bytes() == src.read_bytes()


def test_an_interrupted_put_resumes_and_leaves_no_live_nonce(
    cluster: Network, tmp_path: Path
) -> None:
    client = cluster.client()
    src = data(tmp_path / "r.bin", 16 * MIB)
    args = [
        str(BIN / "market"),
        "--home",
        str(client.home),
        "put",
        str(src),
        "--copies",
        "3",
        "--duration",
        "30",
        "--json",
    ]
    env = dict(os.environ, DEPOT_PASSPHRASE=PASSPHRASE)
    first = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    paused = None
    try:
        deadline = time.monotonic() + 120
        # One chosen provider paused as soon as the proposals are out: the put cannot finish
        # before it is cut (on a busy machine it otherwise could, between two polls).
        while paused is None:
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            rows = [p for p in placements(client) if p.state is not State.ACTIVE]
            if len(placements(client)) == 3 and rows:
                paused = cluster.prover_of(rows[-1].provider)
                paused.signal(signal.SIGSTOP)
            time.sleep(0.02)
        while not any(p.state is State.ACTIVE for p in placements(client)):
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.02)
        first.kill()  # as a power cut would: no cleanup
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        if paused is not None:
            paused.signal(signal.SIGCONT)
    before = placements(client)
    file_id = before[0].file_id
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["id"] == file_id and doc["resumed"]
    assert len({d["provider"] for d in doc["deals"]}) == 3
    assert sorted(d["share"] for d in doc["deals"]) == [0, 1, 2]
    after = placements(client, file_id)
    ledger = cluster.ledger()
    for p in after:
        assert p.state in (State.ACTIVE, State.CANCELLED, State.EXPIRED), p
        assert ledger.nonce_used(client.account.address, p.nonce) or p.state is State.EXPIRED
    back = tmp_path / "back.bin"
    cluster.market_json(client, "get", file_id, str(back))
    assert back.read_bytes() == src.read_bytes()


def test_unknown_and_malformed_ids(cluster: Network, client: Client, tmp_path: Path) -> None:
    unknown = cluster.market(client, "get", "ab" * 32, str(tmp_path / "x"))
    assert unknown.returncode == 3
    assert "no file" in unknown.stderr and "Traceback" not in unknown.stderr
    assert not (tmp_path / "x").exists()
    bad = cluster.market(client, "get", "not-an-id")
    assert bad.returncode == 2 and "not a file id" in bad.stderr
    status = cluster.market(client, "status", "cd" * 32)
    assert status.returncode == 3


def test_insufficient_balance_locks_nothing(cluster: Network, tmp_path: Path) -> None:
    poor = cluster.client(tokens=0)
    src = data(tmp_path / "f.bin", MIB)
    result = cluster.market(poor, "put", str(src), "--copies", "2")
    assert result.returncode == 4, result.stderr
    assert "token balance 0 does not cover" in result.stderr
    assert placements(poor) == []  # refused before any proposal was signed
    assert cluster.ledger().allowance(poor.account.address) == 0


def test_a_price_cap_nobody_meets(cluster: Network, client: Client, tmp_path: Path) -> None:
    src = data(tmp_path / "f.bin", MIB)
    result = cluster.market(client, "put", str(src), "--copies", "2", "--max-price", "0.0015")
    assert result.returncode == 5
    assert "only 1 providers ask at most 0.0015 tokens per GiB per period" in result.stderr


def test_too_few_distinct_providers(cluster: Network, client: Client, tmp_path: Path) -> None:
    src = data(tmp_path / "f.bin", MIB)
    result = cluster.market(client, "put", str(src), "--copies", "6")
    assert result.returncode == 5
    assert "6 distinct providers needed, 5 eligible of 5 found" in result.stderr


def test_a_provider_killed_during_the_upload_is_replaced(cluster: Network, tmp_path: Path) -> None:
    client = cluster.client(config={"deals.upload_timeout": 5.0})
    (victim,) = cluster.start_provers(["0.0001"])  # the cheapest: chosen first
    cluster.wait_asks(client, 6)
    src = data(tmp_path / "big.bin", 24 * MIB)
    env = dict(os.environ, DEPOT_PASSPHRASE=PASSPHRASE)
    put = subprocess.Popen(
        [
            str(BIN / "market"),
            "--home",
            str(client.home),
            "put",
            str(src),
            "--copies",
            "2",
            "--duration",
            "30",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while "proposal_admitted" not in victim.log_text():
            assert time.monotonic() < deadline, "the cheapest provider never got a proposal"
            assert put.poll() is None, put.communicate()
            time.sleep(0.05)
        victim.signal(signal.SIGSTOP)  # mid-upload: the stream window is smaller than a share
        victim.kill()
        out, err = put.communicate(timeout=180)
    finally:
        if put.poll() is None:
            put.kill()
    assert put.returncode == 0, err
    doc = json.loads(out)
    providers = {d["provider"] for d in doc["deals"]}
    assert len(providers) == 2 and victim.address not in providers
    rows = [p for p in placements(client, doc["id"]) if p.provider == victim.address]
    assert len(rows) == 1 and rows[0].state is State.CANCELLED and rows[0].deal_id is None
    ledger = cluster.ledger()
    assert ledger.nonce_used(client.account.address, rows[0].nonce)  # revoked on chain
    # Escrow left the client's balance only for the two active deals.
    spent = 1_000 * TOKEN - ledger.balance_of(client.account.address)
    assert spent == sum(int(d["price_per_period"]) * d["periods"] for d in doc["deals"])


def report_until_terminated(cluster: Network, provider: str, start: int) -> None:
    """Report every missed period of ``provider`` from ``start`` until it is terminated."""
    reporter = cluster.ledger(cluster.deployer)
    period = start
    deadline = time.monotonic() + 120
    first_block = cluster.block()
    while True:
        assert time.monotonic() < deadline, "the provider was never terminated"
        cluster.wait_period(period + 1)
        if reporter.fault_bounty(provider, period) > 0:
            reporter.report_fault(provider, period)
        period += 1
        if any(
            isinstance(e, ProviderTerminated)
            for e in reporter.events(first_block, None, kinds=[ProviderTerminated])
        ):
            return


def test_repair_after_a_provider_is_terminated(
    cluster: Network, client: Client, tmp_path: Path
) -> None:
    src = data(tmp_path / "keep.bin", 2 * MIB + 99)
    put = cluster.market_json(client, "put", str(src), "--copies", "2", "--duration", "40")
    share0 = next(d for d in put["deals"] if d["share"] == 0)
    victim = cluster.prover_of(share0["provider"])
    victim.kill()
    report_until_terminated(cluster, victim.address, share0["start_period"])

    status = cluster.market_json(client, "status", put["id"])
    assert status["health"]["state"] == "degraded" and status["health"]["missing"] == [0]
    assert {d["condition"] for d in status["deals"] if d["share"] == 0} == {"terminated"}

    repaired = cluster.market_json(client, "repair", put["id"])
    (outcome,) = repaired["files"]
    assert outcome["repaired"] == [0] and len(outcome["deals"]) == 1
    new = outcome["deals"][0]
    assert new["provider"] not in {d["provider"] for d in put["deals"]}
    # The rebuilt share is the lost one, bit for bit: same root on chain.
    ledger = cluster.ledger()
    assert ledger.deal(new["deal_id"]).piece_root == ledger.deal(share0["deal_id"]).piece_root

    status = cluster.market_json(client, "status", put["id"])
    assert status["health"]["state"] == "healthy"
    back = tmp_path / "back.bin"
    cluster.market_json(client, "get", put["id"], str(back))
    assert back.read_bytes() == src.read_bytes()


def test_repair_watch_replaces_a_provider_that_stopped_proving(
    cluster: Network, tmp_path: Path
) -> None:
    client = cluster.client(config={"repair.miss_threshold": 2})
    src = data(tmp_path / "w.bin", MIB + 5)
    put = cluster.market_json(client, "put", str(src), "--copies", "2", "--duration", "40")
    env = dict(os.environ, DEPOT_PASSPHRASE=PASSPHRASE)
    watcher = subprocess.Popen(
        [str(BIN / "market"), "--home", str(client.home), "repair", "--watch", "--interval", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert watcher.stdout is not None
        assert "watching" in watcher.stdout.readline()
        victim = cluster.prover_of(put["deals"][1]["provider"])
        victim.kill()
        deadline = time.monotonic() + 120
        while True:
            status = cluster.market_json(client, "status", put["id"])
            holders = {d["provider"] for d in status["deals"] if d["condition"] == "active"}
            if status["health"]["state"] == "healthy" and victim.address not in holders:
                break
            assert time.monotonic() < deadline, status
            assert watcher.poll() is None, watcher.communicate()
            time.sleep(2)
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(30)
        assert watcher.returncode == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
    back = tmp_path / "back.bin"
    cluster.market_json(client, "get", put["id"], str(back))
    assert back.read_bytes() == src.read_bytes()
