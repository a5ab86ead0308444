"""
Following the ledger's events into the database and the challenge mirror.

From the block after the last one applied (``meta.next_block``, initially the deployment
block) to the head minus ``chain.confirmations``, the market's events that concern us are
applied in order: ``DealAccepted`` (activates or adopts a deal, extends the mirror),
``SlotRetired``, ``LossDeclared``, ``ProviderTerminated``, ``DealSettled`` (earnings, closes
deals), ``ProofSubmitted`` and ``FaultReported`` (the proving history). Applying an event
twice changes nothing (settlements are keyed by transaction and log index, state changes
check the current state), so the cursor is saved after the events and a crash in between
only replays them.
"""

from __future__ import annotations

import asyncio
import logging

from contracts.events import (
    DealAccepted,
    DealSettled,
    FaultReported,
    LedgerEvent,
    LossDeclared,
    ProofSubmitted,
    ProviderTerminated,
    SlotRetired,
)
from prover.challenges import MirrorSlot
from prover.context import Context
from prover.lifecycle import DealState, PieceState
from prover.logs import event

log = logging.getLogger("prover.follower")

KINDS = (
    DealAccepted,
    SlotRetired,
    LossDeclared,
    ProviderTerminated,
    DealSettled,
    ProofSubmitted,
    FaultReported,
)
CURSOR = "next_block"


class EventFollower:
    """Applies the chain's events about us, idempotently, in block order."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.mirror_stale = False
        """Set when an event did not fit the mirror: the prover re-reads the slots."""

    @property
    def next_block(self) -> int:
        saved = self.ctx.db.get_meta(CURSOR)
        return int(saved) if saved is not None else self.ctx.deployment.deploy_block

    def rewind(self, block: int) -> None:
        """Re-read events from ``block`` (the chain went back: reorg or restart)."""
        self.ctx.db.set_meta(CURSOR, str(max(block, self.ctx.deployment.deploy_block)))

    async def catch_up(self, head: int) -> int:
        """Apply the events up to ``head - confirmations``; returns how many applied."""
        chain = self.ctx.require_chain()
        start, last = self.next_block, head - self.ctx.config.chain.confirmations
        if last < start:
            return 0
        events = await chain.call(chain.ledger.events, start, last, KINDS)
        # Off the event loop and in one transaction: a long history (a thousand deals to
        # adopt) must not block the loop that proofs and the P2P node run on.
        return await asyncio.to_thread(self._apply_range, events, last)

    def _apply_range(self, events: list[LedgerEvent], last: int) -> int:
        with self.ctx.db.batch():
            applied = sum(1 for ev in events if self.apply(ev))
            self.ctx.db.set_meta(CURSOR, str(last + 1))
        return applied

    def apply(self, ev: LedgerEvent) -> bool:
        """Apply one event if it concerns us; returns whether it did."""
        me = self.ctx.address
        if isinstance(ev, DealAccepted) and ev.provider == me:
            self._accepted(ev)
        elif isinstance(ev, SlotRetired) and ev.provider == me:
            self._retired(ev)
        elif isinstance(ev, LossDeclared) and ev.provider == me:
            self._lost(ev)
        elif isinstance(ev, ProviderTerminated) and ev.provider == me:
            self._terminated(ev)
        elif isinstance(ev, DealSettled):
            return self._settled(ev)
        elif isinstance(ev, ProofSubmitted) and ev.provider == me:
            self._proven(ev)
        elif isinstance(ev, FaultReported) and ev.provider == me:
            self._reported(ev)
        else:
            return False
        return True

    # ------------------------------------------------------------------ handlers

    def _accepted(self, ev: DealAccepted) -> None:
        db, store = self.ctx.db, self.ctx.store
        fields = {
            "deal_id": ev.deal_id,
            "start_period": ev.start,
            "end_period": ev.end,
            "stop_period": ev.end,
            "epoch": ev.epoch,
            "slot": ev.slot,
            "accept_tx": ev.tx_hash,
            "accept_block": ev.block_number,
        }
        row = db.deal_by_nonce(ev.client, ev.nonce)
        if row is None:
            # Accepted on chain, unknown here (the database was lost or replaced): adopt it.
            held = store.has(ev.piece_root) and store.size(ev.piece_root) == ev.piece_size
            state = DealState.ACTIVE if held else DealState.LOST
            db.adopt_deal(
                client=ev.client,
                nonce=ev.nonce,
                piece_root=ev.piece_root.hex(),
                piece_size=ev.piece_size,
                price_per_period=ev.price_per_period,
                periods=ev.end - ev.start,
                collateral=ev.collateral,
                expiry_block=0,
                signature="",
                peer_id="",
                state=state.value,
                **fields,
            )
            db.put_piece(
                ev.piece_root, ev.piece_size, PieceState.STORED if held else PieceState.LOST
            )
            event(
                log,
                logging.WARNING,
                "deal_adopted",
                deal=ev.deal_id,
                root=ev.piece_root[:8],
                held=held,
            )
        elif row.state in (DealState.RECEIVING, DealState.ACTIVATING, DealState.FAILED):
            if row.state == DealState.FAILED:
                # We gave up on it and the chain took it after all: prove it if we still hold
                # the piece (upkeep declares the loss otherwise).
                event(
                    log,
                    logging.ERROR,
                    "failed_deal_accepted_on_chain",
                    deal=ev.deal_id,
                    held=store.has(ev.piece_root),
                )
            elif row.state == DealState.RECEIVING:
                db.set_deal_state(row.id, DealState.ACTIVATING)
            db.set_deal_state(row.id, DealState.ACTIVE, **fields)
        elif row.deal_id is None:
            db.update_deal(row.id, **fields)
        live_from = ev.start
        if not self.ctx.mirror.add(
            ev.epoch,
            MirrorSlot(ev.slot, ev.deal_id, ev.piece_root, ev.piece_size, live_from),
        ):
            self.mirror_stale = True

    def _retired(self, ev: SlotRetired) -> None:
        row = self.ctx.db.deal_by_chain_id(ev.deal_id)
        if row is not None:
            self.ctx.db.update_deal(row.id, retired_from=ev.from_period)
        if not self.ctx.mirror.retire(ev.epoch, ev.slot, ev.from_period):
            self.mirror_stale = True

    def _lost(self, ev: LossDeclared) -> None:
        row = self.ctx.db.deal_by_chain_id(ev.deal_id)
        if row is None:
            return
        stop = min(row.stop_period or ev.end_period, ev.end_period)
        if row.state == DealState.ACTIVE:
            self.ctx.db.set_deal_state(row.id, DealState.LOST, stop_period=stop)
        else:
            self.ctx.db.update_deal(row.id, stop_period=stop)

    def _terminated(self, ev: ProviderTerminated) -> None:
        event(log, logging.ERROR, "provider_terminated", epoch=ev.epoch, end_period=ev.end_period)
        for row in self.ctx.db.deals([DealState.ACTIVE, DealState.LOST]):
            if row.epoch == ev.epoch:
                self.ctx.db.update_deal(row.id, stop_period=min(row.stop_period, ev.end_period))
        self.ctx.mirror.reset(ev.epoch + 1, [])

    def _settled(self, ev: DealSettled) -> bool:
        db = self.ctx.db
        row = db.deal_by_chain_id(ev.deal_id)
        if row is None:
            return False
        fresh = db.add_settlement(
            tx_hash=ev.tx_hash,
            log_index=ev.log_index,
            deal_id=ev.deal_id,
            block=ev.block_number,
            from_period=ev.from_period,
            to_period=ev.to_period,
            proven=ev.proven,
            missed=ev.missed,
            provider_paid=ev.provider_paid,
            slashed=ev.slashed,
            final=ev.final,
        )
        if fresh:
            db.update_deal(
                row.id,
                paid=row.paid + ev.provider_paid,
                settled_through=max(row.settled_through, ev.to_period),
            )
            self.ctx.metrics.earned.inc(ev.provider_paid / 10**18)
            event(
                log,
                logging.INFO,
                "deal_settled",
                deal=ev.deal_id,
                periods=f"{ev.from_period}-{ev.to_period}",
                proven=ev.proven,
                missed=ev.missed,
                paid=ev.provider_paid,
                final=ev.final,
            )
        if ev.final and row.state in (DealState.ACTIVE, DealState.LOST):
            db.set_deal_state(row.id, DealState.CLOSED)
        return True

    def _proven(self, ev: ProofSubmitted) -> None:
        db = self.ctx.db
        row = db.proof(ev.period)
        window = self.ctx.schedule.window(ev.period)
        deadline = window.stop - 1
        if row is None or row.state != "confirmed" or row.block is None:
            db.put_proof(
                ev.period,
                state="confirmed",
                live_leaves=ev.live_leaves,
                seed=ev.seed.hex(),
                tx_hash=ev.tx_hash,
                block=ev.block_number,
                deadline_block=deadline,
                window_blocks=len(window),
                margin_blocks=deadline - ev.block_number,
                reason=None,
            )

    def _reported(self, ev: FaultReported) -> None:
        window = self.ctx.schedule.window(ev.period)
        row = self.ctx.db.proof(ev.period)
        self.ctx.db.put_proof(
            ev.period,
            state="missed",
            deadline_block=window.stop - 1,
            window_blocks=len(window),
            reason=(row.reason if row is not None and row.reason else "missed")
            + f"; reported by {ev.reporter} (bounty {ev.bounty})",
        )
