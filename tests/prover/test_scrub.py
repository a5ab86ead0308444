"""The scrub: a missing piece is found by the sweep, a rotten chunk by the re-hashing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from node.swarm.verify import CHUNK_SIZE
from prover.context import Context
from prover.lifecycle import DealState
from prover.scrub import Scrubber
from tests.prover.helpers import random_piece
from tests.prover.test_blobstore import flip_byte, imported
from tests.prover.test_follower import CLIENT, make_context


def hold(ctx: Context, seed: int, deal_id: int) -> bytes:
    root = asyncio.run(imported(ctx.store, random_piece(2 * CHUNK_SIZE + 100, seed)))
    ctx.db.put_piece(root, ctx.store.size(root))
    ctx.db.adopt_deal(
        deal_id=deal_id, client=CLIENT, nonce=deal_id, piece_root=root.hex(),
        piece_size=ctx.store.size(root), price_per_period=1, periods=5, collateral=0,
        expiry_block=0, signature="", peer_id="", state=DealState.ACTIVE.value,
    )  # fmt: skip
    return root


def test_the_scrub_finds_missing_and_rotten_pieces(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    good, rotten, missing = (hold(ctx, seed, deal) for seed, deal in ((1, 1), (2, 2), (3, 3)))
    scrub = Scrubber(ctx)
    assert scrub.sweep() == 0
    ctx.store.path(missing).unlink()
    flip_byte(ctx.store.path(rotten), CHUNK_SIZE + 5)
    assert scrub.sweep() == 1
    for _ in range(6):  # every chunk of every piece, round-robin
        scrub.step()
    states = {root: ctx.db.piece(root).state for root in (good, rotten, missing)}
    assert states == {good: "stored", rotten: "lost", missing: "lost"}
    assert "chunk 1" in ctx.db.piece(rotten).reason
    assert scrub.found_bad == 2
    assert ctx.db.piece(good).checked_at is not None
    assert ctx.metrics.scrubbed.labels().value >= 2 * CHUNK_SIZE
