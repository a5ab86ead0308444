"""
A piece that rots on disk: the daemon notices (a failed challenge or the scrub), declares the
loss on chain, and the provider's later periods are provable again with the remaining deals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts.offers import DealActivated
from prover.daemon import ProverNode
from prover.lifecycle import DealState
from tests.prover.helpers import DealClient, make_devnet, make_home, peer_of, random_piece
from tests.prover.test_blobstore import flip_byte
from tests.prover.test_daemon import eventually, run

pytestmark = pytest.mark.slow


def test_a_rotten_piece_is_declared_lost_and_later_periods_are_proven(
    anvil: Any, tmp_path: Path
) -> None:
    devnet = make_devnet(anvil.url, tmp_path, index=3)
    home = make_home(tmp_path / "prover", devnet)

    async def scenario() -> None:
        node = ProverNode(home, home.load_config(), devnet.provider)
        info = await node.start()
        client = await DealClient(devnet, tmp_path / "client").start()
        ctx = node.ctx
        try:
            await eventually(lambda: ctx.taking_deals, 20, "registration")
            deals = []
            for seed in (21, 22):
                result = await client.deal(
                    peer_of(info), devnet.provider.address, random_piece(300_000, seed), periods=8
                )
                assert isinstance(result, DealActivated), result
                deals.append(result.deal_id)
            lost_id, kept_id = deals
            row = ctx.db.deal_by_chain_id(lost_id)
            start = max(row.start_period, ctx.db.deal_by_chain_id(kept_id).start_period)
            await eventually(
                lambda: (p := ctx.db.proof(start)) is not None and p.state == "confirmed",
                30,
                "a first proof over both pieces",
            )
            flip_byte(ctx.store.path(bytes.fromhex(row.piece_root)), 1000)

            await eventually(
                lambda: ctx.db.deal_by_chain_id(lost_id).state == DealState.LOST, 30, "the loss"
            )
            loss_end = client.ledger.deal(lost_id).loss_end
            assert loss_end > start
            assert ctx.db.piece(bytes.fromhex(row.piece_root)).state == "lost"
            await eventually(
                lambda: (p := ctx.db.proof(loss_end)) is not None and p.state == "confirmed",
                30,
                "a proof after the loss took effect",
            )
            assert client.ledger.is_proven(devnet.provider.address, loss_end)
            assert ctx.db.deal_by_chain_id(kept_id).state == DealState.ACTIVE
            assert ctx.metrics.losses.labels().value == 1
        finally:
            await client.close()
            await node.stop()

    run(scenario())
