"""
The background scrub: finds missing or rotten pieces before a challenge does.

Every ``SWEEP_INTERVAL`` seconds every held piece of a live deal is checked to exist with
its size (a ``stat``). Between sweeps, chunks are re-hashed against the layer round-robin
over the pieces at ``storage.scrub_rate`` bytes per second (in a worker thread, so serving
and proving go on). A piece that fails either check is marked LOST; ``Upkeep`` then declares
the loss of its deals, so that it leaves the challenge set from the next period on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from node.swarm.verify import CHUNK_SIZE, chunk_count
from prover.context import Context
from prover.lifecycle import LIVE_STATES, DealState, PieceState
from prover.logs import event

log = logging.getLogger("prover.scrub")

SWEEP_INTERVAL: Final = 10.0
"""Seconds between existence sweeps over every held piece."""
SCRUB_STEP: Final = 16
"""Chunks re-hashed per step of the rolling verification."""


class Scrubber:
    """Checks the blob store against the deals that need it."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.found_bad = 0
        self._cursor: tuple[int, int] = (0, 0)
        """(position in the sorted list of live roots, next chunk)."""

    async def run(self) -> None:
        while True:
            self.sweep()
            rate = self.ctx.config.storage.scrub_rate
            if rate <= 0:
                await asyncio.sleep(SWEEP_INTERVAL)
                continue
            budget = SWEEP_INTERVAL * rate
            while budget > 0:
                scrubbed = await asyncio.to_thread(self.step)
                if scrubbed == 0:
                    await asyncio.sleep(SWEEP_INTERVAL)
                    break
                budget -= scrubbed
                await asyncio.sleep(scrubbed / rate)

    def live_roots(self) -> list[bytes]:
        rows = self.ctx.db.deals([*LIVE_STATES, DealState.CLOSED])
        return sorted(
            {
                bytes.fromhex(r.piece_root)
                for r in rows
                if self.ctx.store.has(bytes.fromhex(r.piece_root))
            }
        )

    def sweep(self) -> int:
        """The existence check over every live piece; returns how many were bad."""
        bad = 0
        for root in self.live_roots():
            if not self.ctx.store.present(root):
                self._bad(root, "piece file missing or truncated")
                bad += 1
        return bad

    def step(self) -> int:
        """Re-hash up to ``SCRUB_STEP`` chunks of the next piece; returns bytes read."""
        roots = self.live_roots()
        if not roots:
            return 0
        position, chunk = self._cursor
        position %= len(roots)
        root = roots[position]
        store = self.ctx.store
        size = store.size(root) if store.has(root) else 0
        total = chunk_count(size) if size else 0
        end = min(chunk + SCRUB_STEP, total)
        read = 0
        for index in range(chunk, end):
            # Twice before condemning it: a declared loss cannot be taken back.
            if not store.verify_chunk(root, index) and not store.verify_chunk(root, index):
                self._bad(root, f"chunk {index} does not match its layer")
                break
            read += min(CHUNK_SIZE, size - index * CHUNK_SIZE)
        self._cursor = (position + 1, 0) if end >= total else (position, end)
        if end >= total and size:
            self.ctx.db.touch_piece(root)
        self.ctx.metrics.scrubbed.inc(read)
        return max(read, 1)

    def _bad(self, root: bytes, reason: str) -> None:
        piece = self.ctx.db.piece(root)
        if piece is not None and piece.state == PieceState.LOST:
            return
        self.found_bad += 1
        self.ctx.db.set_piece_state(root, PieceState.LOST, reason)
        event(log, logging.ERROR, "piece_rotten", root=root[:8], reason=reason)
