"""
The daemon in process against a real anvil (half-second blocks) and real sockets: a deal
from proposal to its first paid period, with the proof history, API and metrics checked.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from contracts.chain import ProviderStatus
from contracts.offers import DealActivated, DealDecision
from prover.cli import main
from prover.daemon import ProverNode
from prover.lifecycle import DealState
from tests.prover.helpers import DealClient, make_devnet, make_home, peer_of, random_piece

T = TypeVar("T")

pytestmark = pytest.mark.slow


def run(coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def eventually(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_deal_from_proposal_to_first_paid_period(anvil: Any, tmp_path: Path) -> None:
    devnet = make_devnet(anvil.url, tmp_path)
    home = make_home(tmp_path / "prover", devnet)

    async def scenario() -> None:
        node = ProverNode(home, home.load_config(), devnet.provider)
        info = await node.start()
        client = await DealClient(devnet, tmp_path / "client").start()
        try:
            ctx = node.ctx
            await eventually(lambda: ctx.taking_deals, 20, "registration")
            assert ctx.provider is not None and ctx.provider.status == ProviderStatus.ACTIVE

            piece = random_piece(600_000, seed=1)
            result = await client.deal(peer_of(info), devnet.provider.address, piece, periods=3)
            assert isinstance(result, DealActivated), result
            deal_id = result.deal_id
            row = ctx.db.deal_by_chain_id(deal_id)
            assert row is not None and row.state == DealState.ACTIVE
            assert ctx.store.has(row_root := bytes.fromhex(row.piece_root))
            assert ctx.store.path(row_root).read_bytes() == piece

            # The first period of the deal is proven, then paid once its report window closed.
            start = row.start_period
            await eventually(
                lambda: (p := ctx.db.proof(start)) is not None and p.state == "confirmed",
                40,
                f"proof of period {start}",
            )
            await eventually(
                lambda: (r := ctx.db.deal_by_chain_id(deal_id)) is not None and r.paid > 0,
                40,
                "first payment",
            )
            chain_deal = client.ledger.deal(deal_id)
            assert chain_deal.settled_through > start
            assert client.ledger.is_proven(devnet.provider.address, start)
            proof = ctx.db.proof(start)
            assert proof.margin_blocks is not None and proof.margin_blocks >= 0
            assert proof.tx_hash and proof.block

            async with httpx.AsyncClient(base_url=info["api"]) as api:
                status = (await api.get("/status")).json()
                assert status["registration"]["status"] == "active"
                assert status["storage"]["pieces"] == 1
                deals = (await api.get("/deals")).json()
                assert [d["deal_id"] for d in deals] == [deal_id]
                proofs = (await api.get("/proofs")).json()
                assert any(p["period"] == start and p["state"] == "confirmed" for p in proofs)
                earnings = (await api.get("/earnings")).json()
                assert int(earnings["paid"]) > 0
                metrics = (await api.get("/metrics")).text
                assert 'depot_prover_proofs_total{result="confirmed"}' in metrics
                assert "depot_kad_routing_table_contacts" in metrics
                assert "depot_swarm_pushes_total" in metrics
                openapi = (await api.get("/openapi.json")).json()
                assert "/deals/{deal_id}" in openapi["paths"]

            # A second proposal for the same piece is refused (already stored here).
            again = await client.deal(peer_of(info), devnet.provider.address, piece, periods=3)
            assert isinstance(again, DealDecision) and not again.accepted
            assert "already" in again.reason

            # At its end the deal is settled in full, its slot retired, and its data deleted.
            await eventually(
                lambda: ctx.db.deal_by_chain_id(deal_id).state == DealState.DELETED,
                60,
                "the deal's end",
            )
            final = client.ledger.deal(deal_id)
            assert final.closed and final.settled_through == final.end
            assert not ctx.store.has(row_root) and not ctx.store.path(row_root).exists()
            assert ctx.db.piece(row_root).state == "deleted"
            paid = sum(s.provider_paid for s in ctx.db.settlements(deal_id))
            assert paid == 3 * row.price_per_period == ctx.db.deal_by_chain_id(deal_id).paid
        finally:
            await client.close()
            await node.stop()

    run(scenario())


def test_exit_through_the_running_daemon(anvil: Any, tmp_path: Path, capsys: Any) -> None:
    """`prover exit` asks the daemon, which stops taking deals and withdraws once unbonded."""
    devnet = make_devnet(anvil.url, tmp_path, index=2)
    home = make_home(tmp_path / "prover", devnet)

    async def scenario() -> None:
        node = ProverNode(home, home.load_config(), devnet.provider)
        await node.start()
        ctx = node.ctx
        try:
            await eventually(lambda: ctx.taking_deals, 20, "registration")
            await eventually(lambda: node.announcer.ask is not None, 20, "the ask")
            code = await asyncio.to_thread(main, ["--home", str(home.root), "--json", "exit"])
            assert code == 0
            report = json.loads(capsys.readouterr().out)
            assert report["status"] == "exiting" and "daemon" in report["note"]
            assert not ctx.taking_deals
            await eventually(lambda: node.announcer.ask is None, 10, "the ask to be withdrawn")
            await eventually(
                lambda: (
                    ctx.provider is not None and ctx.provider.status == ProviderStatus.WITHDRAWN
                ),
                30,
                "the withdrawal",
            )
            ledger = devnet.ledger()
            assert ledger.provider(devnet.provider.address).stake == 0
        finally:
            await node.stop()

    run(scenario())
