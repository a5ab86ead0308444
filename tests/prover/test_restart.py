"""
kill -9 of a real ``prover run`` process in the middle of a period, then a restart: the
period is proven, no period is ever submitted twice, and the acknowledged piece survives.
The daemon is driven through its CLI, as the demo drives it.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from web3 import Web3

from contracts.offers import DealActivated
from tests.prover.helpers import (
    PASSPHRASE,
    TEST_PARAMS,
    DealClient,
    Devnet,
    make_devnet,
    make_home,
    peer_of,
    random_piece,
)

pytestmark = pytest.mark.slow

PARAMS = replace(TEST_PARAMS, period_blocks=16)
"""8 s periods: room for a process restart inside one proving window."""


class Daemon:
    """A ``prover run`` subprocess."""

    def __init__(self, home: Path, log: Path) -> None:
        passphrase = home.parent / "passphrase"
        passphrase.write_text(PASSPHRASE + "\n")
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prover.cli", "--home", str(home), "run",
             "--passphrase-file", str(passphrase)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.info = self._ready(timeout=30)

    def _ready(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.proc.kill()
            raise AssertionError("the daemon did not print its ready line")
        info: dict[str, Any] = json.loads(line)
        assert info["event"] == "ready"
        return info

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self.log.close()
        return code


def wait_until(check: Any, seconds: float, what: str, step: float = 0.02) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def proof_transactions(devnet: Devnet, first_block: int, last_block: int) -> dict[int, int]:
    """Period -> submit_proof transactions the provider sent (mined, reverted or not)."""
    ledger = devnet.ledger()
    selector = bytes.fromhex(ledger.market.encode_abi("submit_proof", args=[[]])[2:10])
    schedule = devnet.deployment.schedule
    counts: dict[int, int] = {}
    for number in range(first_block, last_block + 1):
        block = ledger.web3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            sender = Web3.to_checksum_address(tx["from"])
            if sender == devnet.provider.address and bytes(tx["input"])[:4] == selector:
                period = schedule.period_of(number)
                counts[period] = counts.get(period, 0) + 1
    return counts


def test_kill_9_mid_period_then_restart(anvil: Any, tmp_path: Path) -> None:
    devnet = make_devnet(anvil.url, tmp_path, PARAMS, index=5)
    home = make_home(tmp_path / "prover", devnet).root
    ledger = devnet.ledger()
    schedule = devnet.deployment.schedule
    provider = devnet.provider.address
    log = tmp_path / "daemon.log"

    daemon = Daemon(home, log)
    piece = random_piece(500_000, seed=41)

    async def make_deal() -> int:
        client = await DealClient(devnet, tmp_path / "client").start()
        try:
            wait_until(
                lambda: ledger.provider(provider).status.name == "ACTIVE", 20, "registration"
            )
            await asyncio.sleep(1.5)  # the daemon notices its registration
            result = await client.deal(peer_of(daemon.info), provider, piece, periods=12)
            assert isinstance(result, DealActivated), result
            return result.deal_id
        finally:
            await client.close()

    deal_id = asyncio.run(make_deal())
    start = ledger.deal(deal_id).start
    wait_until(lambda: ledger.is_proven(provider, start), 30, "the first proof", step=0.2)
    first_block = schedule.period_start(start)

    # 1. Killed just before a period's seed block: the restarted daemon must prove it.
    target = start + 1
    wait_until(lambda: ledger.current_block() >= schedule.seed_block(target) - 2, 20, "the kill")
    daemon.kill()
    daemon = Daemon(home, log)
    wait_until(lambda: ledger.is_proven(provider, target), 20, f"period {target}", step=0.2)

    # 2. Killed the moment its proof transaction went out (before the receipt): the
    #    restarted daemon finds it proven or pending, and never sends a second one.
    target += 1
    submitted = f"event=round_submitted period={target} "
    wait_until(lambda: submitted in log.read_text(), 20, "the proof to go out", step=0.005)
    time.sleep(0.1)  # estimate, sign, broadcast: a few ms; mined up to a block later
    daemon.kill()
    daemon = Daemon(home, log)
    wait_until(lambda: ledger.is_proven(provider, target), 20, f"period {target}", step=0.2)
    wait_until(
        lambda: ledger.current_block() >= schedule.period_start(target + 1), 20, "the period's end"
    )

    counts = proof_transactions(devnet, first_block, schedule.period_start(target + 1) - 1)
    assert set(counts) == set(range(start, target + 1)), counts
    assert all(n == 1 for n in counts.values()), f"a period was submitted twice: {counts}"
    response = httpx.get(daemon.info["api"] + "/proofs", timeout=10).json()
    confirmed = {p["period"] for p in response if p["state"] == "confirmed"}
    assert {start, start + 1, start + 2} <= confirmed
    deals = httpx.get(daemon.info["api"] + "/deals", timeout=10).json()
    assert [(d["deal_id"], d["state"]) for d in deals] == [(deal_id, "active")]
    assert daemon.terminate() == 0
    assert not (home / "run.json").exists()
