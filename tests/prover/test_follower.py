"""The event follower: ledger events into the database and the mirror, idempotently."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account

from contracts.deployment import Deployment
from contracts.events import (
    DealAccepted,
    DealSettled,
    FaultReported,
    LossDeclared,
    ProofSubmitted,
    ProviderTerminated,
    SlotRetired,
)
from node.identity import NodeKey
from node.metrics import Registry
from prover.blobstore import BlobStore
from prover.config import ProverConfig
from prover.context import Context
from prover.db import Database
from prover.follower import EventFollower
from prover.home import Home
from prover.lifecycle import DealState
from prover.metrics import ProverMetrics
from tests.prover.helpers import TEST_PARAMS

PROVIDER = Account.from_key(b"\x44" * 32)
CLIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ROOT = b"\x0c" * 32
WHERE = {"tx_hash": "0x" + "ab" * 32, "block_number": 40}


def make_context(tmp_path: Path) -> Context:
    deployment = Deployment(
        chain_id=31337,
        rpc_url="http://127.0.0.1:9",
        token="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        market="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        deploy_block=0,
        params=TEST_PARAMS,
    )
    return Context(
        config=ProverConfig(),
        home=Home(tmp_path),
        db=Database.open(f"sqlite:///{tmp_path / 'prover.db'}"),
        store=BlobStore(tmp_path / "blobs", capacity=1 << 30),
        metrics=ProverMetrics(Registry()),
        node_key=NodeKey.generate(),
        account=PROVIDER,
        deployment=deployment,
        endpoint="127.0.0.1:1",
    )


def accepted(deal_id: int = 1, nonce: int = 5, slot: int = 0, **kw: object) -> DealAccepted:
    fields: dict[str, object] = {
        "deal_id": deal_id,
        "client": CLIENT,
        "provider": PROVIDER.address,
        "piece_root": ROOT,
        "piece_size": 4096,
        "price_per_period": 10**18,
        "collateral": 0,
        "start": 3,
        "end": 9,
        "epoch": 0,
        "slot": slot,
        "nonce": nonce,
        "log_index": 0,
        **WHERE,
    }
    fields.update(kw)
    return DealAccepted(**fields)  # type: ignore[arg-type]


def settled(deal_id: int = 1, log_index: int = 1, final: bool = False) -> DealSettled:
    return DealSettled(
        deal_id=deal_id,
        from_period=3,
        to_period=5,
        proven=2,
        missed=0,
        reported=0,
        provider_paid=2 * 10**18,
        client_refund=0,
        client_compensation=0,
        slashed=0,
        final=final,
        log_index=log_index,
        **WHERE,  # type: ignore[arg-type]
    )


def test_our_accept_activates_the_proposal_and_extends_the_mirror(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    local = ctx.db.add_proposal(
        client=CLIENT,
        nonce=5,
        piece_root=ROOT,
        piece_size=4096,
        price_per_period=10**18,
        periods=6,
        collateral=0,
        expiry_block=99,
        signature=b"\x00" * 65,
        peer_id=b"\x00" * 32,
    )
    ctx.db.set_deal_state(local, DealState.ACTIVATING)
    follower = EventFollower(ctx)
    assert follower.apply(accepted())
    assert follower.apply(accepted())  # a replay changes nothing
    row = ctx.db.deal(local)
    assert (row.state, row.deal_id, row.start_period, row.stop_period) == ("active", 1, 3, 9)
    assert [s.deal_id for s in ctx.mirror.slots] == [1] and ctx.mirror.live_leaves(3) == 4
    assert not follower.mirror_stale
    # Someone else's deal is not ours.
    assert not follower.apply(accepted(deal_id=2, provider=CLIENT))


def test_a_deal_the_database_never_saw_is_adopted(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    follower = EventFollower(ctx)
    follower.apply(accepted())
    row = ctx.db.deal_by_chain_id(1)
    assert row is not None and row.state == DealState.LOST  # its piece is not on disk
    assert ctx.db.piece(ROOT).state == "lost"


def test_settlements_count_once_and_the_final_one_closes(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    follower = EventFollower(ctx)
    follower.apply(accepted())
    for _ in range(2):
        follower.apply(settled())
    row = ctx.db.deal_by_chain_id(1)
    assert row.paid == 2 * 10**18 and row.settled_through == 5
    assert ctx.metrics.earned.labels().value == 2.0
    assert len(ctx.db.settlements(1)) == 1
    follower.apply(settled(log_index=2, final=True))
    assert ctx.db.deal_by_chain_id(1).state == DealState.CLOSED
    assert not follower.apply(settled(deal_id=77))  # not one of ours


def test_retirement_loss_and_termination(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    follower = EventFollower(ctx)
    follower.apply(accepted())
    follower.apply(accepted(deal_id=2, nonce=6, slot=1, piece_root=b"\x0d" * 32))
    follower.apply(
        SlotRetired(
            provider=PROVIDER.address,
            deal_id=2,
            epoch=0,
            slot=1,
            from_period=6,
            log_index=1,
            **WHERE,
        )  # type: ignore[arg-type]
    )
    assert ctx.mirror.live_leaves(5) == 8 and ctx.mirror.live_leaves(6) == 4
    assert ctx.db.deal_by_chain_id(2).retired_from == 6
    follower.apply(
        LossDeclared(deal_id=1, provider=PROVIDER.address, end_period=7, log_index=2, **WHERE)  # type: ignore[arg-type]
    )
    assert ctx.db.deal_by_chain_id(1).stop_period == 7
    follower.apply(
        ProviderTerminated(provider=PROVIDER.address, epoch=0, end_period=5, log_index=3, **WHERE)  # type: ignore[arg-type]
    )
    assert ctx.mirror.epoch == 1 and ctx.mirror.slots == []
    assert {ctx.db.deal_by_chain_id(d).stop_period for d in (1, 2)} == {5}
    # A gap in the events leaves the mirror stale: the prover re-reads the slots.
    follower.apply(accepted(deal_id=3, nonce=7, slot=4, epoch=1))
    assert follower.mirror_stale


def test_proofs_and_fault_reports_fill_the_history(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    follower = EventFollower(ctx)
    period = 4
    deadline = ctx.schedule.window(period).stop - 1
    follower.apply(
        ProofSubmitted(
            provider=PROVIDER.address,
            period=period,
            epoch=0,
            live_leaves=12,
            seed=b"\x01" * 32,
            log_index=0,
            tx_hash="0x1",
            block_number=deadline - 5,
        )
    )
    row = ctx.db.proof(period)
    assert (row.state, row.margin_blocks, row.live_leaves) == ("confirmed", 5, 12)
    follower.apply(
        FaultReported(
            provider=PROVIDER.address, period=5, reporter=CLIENT, bounty=7, log_index=0, **WHERE
        )  # type: ignore[arg-type]
    )
    assert ctx.db.proof(5).state == "missed" and "bounty 7" in ctx.db.proof(5).reason
