"""
Everything the daemon does besides proving, once per new head: collect payments, declare
lost pieces, delete the data of finished deals, withdraw after an exit, and reconcile what a
crash left pending.

Settlement (``deals.vy``): a period is paid once its report window closed, so a deal is
settled every ``proving.settle_interval_periods`` periods while it runs. Its slot leaves the
challenge set only when ``settle`` is called in or after the deal's last challenged period
(``stop - 1``), so the daemon settles then to retire it, and again at ``stop + 1`` for the
final payment that closes the deal. The data is deleted only once the deal is closed *and*
its slot is retired for the current period (or its epoch was terminated): until then a
challenge may still land on it.

Losses: a piece found missing or rotten (by a proof attempt or the scrub) is declared lost
(``declare_loss``) for every live deal that holds it, so that it leaves the challenge set
from the next period on and later periods are provable again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from contracts.chain import MAX_SETTLE_BATCH, ProviderStatus
from contracts.errors import LedgerError, Reverted
from contracts.events import LedgerEvent
from prover.context import Context
from prover.errors import ChainUnavailable
from prover.follower import EventFollower
from prover.lifecycle import HOLDING_STATES, LIVE_STATES, DealState, PieceState
from prover.logs import event
from prover.rounds import ProvingDriver

log = logging.getLogger("prover.upkeep")

ENDS_TOO_SOON = "deals: deal ends before a loss would take effect"
SETTLE_BATCHES_PER_TICK = 2
"""``settle_many`` transactions (64 deals each) sent per head at most: each waits for its
receipt, and a tick must not outlast a block while a proof may be due."""
LOSSES_PER_TICK = 4
"""``declare_loss`` transactions sent per head at most (a dead disk loses many at once)."""


class Upkeep:
    """Per-head housekeeping of deals, pieces and the registration."""

    def __init__(
        self,
        ctx: Context,
        follower: EventFollower,
        rounds: ProvingDriver,
        forget_piece: Callable[[bytes], None],
        in_flight: Callable[[], set[int]],
    ) -> None:
        self.ctx = ctx
        self.in_flight = in_flight
        """Local ids of the deals a protocol handler is working on right now."""
        self.follower = follower
        self.rounds = rounds
        self.forget_piece = forget_piece
        """Stop announcing a piece in the DHT (called before its data is deleted)."""
        self._tried: dict[tuple[str, int], int] = {}
        """(action, deal id) -> period of the last attempt: one try per period."""
        self._last_period = -1
        """The period whose once-per-period chores (withdraw, cross-check) were done."""
        self._registry_period = -1
        self._pieces_checked = False

    async def tick(self, head: int) -> None:
        ctx = self.ctx
        period = ctx.schedule.period_of(head)
        new_period = period != self._last_period
        if period != self._registry_period or ctx.provider is None:
            chain = ctx.require_chain()
            ctx.provider = await chain.call(chain.ledger.provider, ctx.address)
            self._registry_period = period
        self.reconcile_deals()
        if not self._pieces_checked:
            self.reconcile_pieces()
            self._pieces_checked = True
        # Transactions wait while this period's proof is not settled: the proof comes first,
        # and one account's transactions are mined in nonce order.
        if not self.rounds.busy(period):
            await self._declare_losses(period)
            await self._settle(period)
            if new_period:
                await self._maybe_withdraw(period, head)
                await self._maybe_cross_check(period, head)
                self._last_period = period
        self._delete_finished(period)
        self._update_gauges()

    # ------------------------------------------------------------------ restart

    def reconcile_deals(self) -> None:
        """
        Settle proposals no handler is working on any more (a crash, or a bug): one still
        receiving can never complete; one activating is decided by the chain. The accept is
        only valid up to the proposal's expiry block, so once the follower has applied the
        events past it, a deal still ACTIVATING was not accepted (the follower turns an
        accepted one ACTIVE): it failed, and its piece is deleted.
        """
        db = self.ctx.db
        busy = self.in_flight()
        followed = self.follower.next_block
        for row in db.deals([DealState.RECEIVING, DealState.ACTIVATING]):
            if row.id in busy:
                continue
            if row.state == DealState.RECEIVING:
                reason = "interrupted before the upload ended"
            elif followed > row.expiry_block:
                reason = "not accepted before the expiry"
            else:
                continue  # an accept may still be mined: wait for the expiry
            db.set_deal_state(row.id, DealState.FAILED, reason=reason)
            self.ctx.release_piece(bytes.fromhex(row.piece_root), row.id, reason)

    def reconcile_pieces(self) -> None:
        """Once per run: the database's pieces against the disk, and orphans deleted."""
        ctx = self.ctx
        db, store = ctx.db, ctx.store
        held = store.held()
        for piece in db.pieces([PieceState.STORED]):
            root = bytes.fromhex(piece.root)
            if root not in held:
                db.set_piece_state(root, PieceState.LOST, "missing from the blob store")
                event(log, logging.ERROR, "piece_missing", root=root[:8])
        needed = {
            bytes.fromhex(r.piece_root) for r in db.deals([*HOLDING_STATES, DealState.RECEIVING])
        }
        for root in held:
            if root not in needed:
                store.delete(root)
                db.set_piece_state(root, PieceState.DELETED, "no deal holds it")
                event(log, logging.INFO, "orphan_deleted", root=root[:8])

    # ------------------------------------------------------------------ losses

    async def _declare_losses(self, period: int) -> None:
        ctx = self.ctx
        db, store = ctx.db, ctx.store
        for root in list(self.rounds.lost_roots):
            db.set_piece_state(root, PieceState.LOST, "a challenged leaf could not be proven")
            self.rounds.lost_roots.discard(root)
        lost_pieces = {bytes.fromhex(p.root) for p in db.pieces([PieceState.LOST])}
        sent = 0
        for row in db.deals([DealState.ACTIVE]):
            if row.deal_id is None or sent >= LOSSES_PER_TICK:
                continue
            root = bytes.fromhex(row.piece_root)
            if root not in lost_pieces and store.has(root):
                continue
            if root not in lost_pieces:
                db.put_piece(root, row.piece_size, PieceState.LOST)
            if not self._once("loss", row.deal_id, period):
                continue
            chain = ctx.require_chain()
            sent += 1
            try:
                receipt = await chain.call(chain.ledger.declare_loss, row.deal_id)
            except Reverted as exc:
                if exc.reason == ENDS_TOO_SOON:
                    db.set_deal_state(row.id, DealState.LOST)
                else:
                    event(
                        log,
                        logging.WARNING,
                        "declare_loss_refused",
                        deal=row.deal_id,
                        reason=exc.reason,
                    )
                continue
            except (ChainUnavailable, LedgerError) as exc:
                event(log, logging.WARNING, "declare_loss_failed", deal=row.deal_id, error=str(exc))
                self._tried.pop(("loss", row.deal_id), None)
                continue
            ctx.metrics.losses.inc()
            event(
                log,
                logging.ERROR,
                "loss_declared",
                deal=row.deal_id,
                root=root[:8],
                tx=receipt.tx_hash,
            )
            self._apply(receipt.events)

    # ------------------------------------------------------------------ payments

    async def _settle(self, period: int) -> None:
        ctx = self.ctx
        interval = ctx.config.proving.settle_interval_periods
        room = SETTLE_BATCHES_PER_TICK * MAX_SETTLE_BATCH
        due: list[int] = []
        for row in ctx.db.deals(LIVE_STATES):
            if len(due) >= room:
                break
            if row.deal_id is None or row.stop_period is None:
                continue
            stop, start = row.stop_period, row.start_period
            settled = max(row.settled_through, start)
            final = period >= stop + 1
            retire = period >= stop - 1 and row.retired_from is None
            periodic = period - 1 - settled >= interval
            if (final or retire or periodic) and self._once("settle", row.deal_id, period):
                due.append(row.deal_id)
        if not due:
            return
        chain = ctx.require_chain()
        try:
            receipts = await chain.call(chain.ledger.settle_many, due)
        except (ChainUnavailable, LedgerError) as exc:
            event(log, logging.WARNING, "settle_failed", deals=len(due), error=str(exc))
            for deal_id in due:
                self._tried.pop(("settle", deal_id), None)
            return
        for receipt in receipts:
            self._apply(receipt.events)

    def _apply(self, events: tuple[LedgerEvent, ...]) -> None:
        """Apply a receipt's events now (the follower sees them again later, harmlessly)."""
        for ev in events:
            self.follower.apply(ev)

    # ------------------------------------------------------------------ deletion

    def _delete_finished(self, period: int) -> None:
        ctx = self.ctx
        db = ctx.db
        for row in db.deals([DealState.CLOSED]):
            retired = row.retired_from is not None and row.retired_from <= period
            terminated = row.epoch is not None and row.epoch < ctx.mirror.epoch
            if not (retired or terminated):
                continue
            root = bytes.fromhex(row.piece_root)
            self.forget_piece(root)
            ctx.release_piece(root, row.id, f"deal {row.deal_id} closed")
            db.set_deal_state(row.id, DealState.DELETED)
            event(log, logging.INFO, "deal_data_deleted", deal=row.deal_id, root=root[:8])

    # ------------------------------------------------------------------ exit

    async def _maybe_withdraw(self, period: int, head: int) -> None:
        ctx = self.ctx
        info = ctx.provider
        if info is None or info.status != ProviderStatus.EXITING:
            return
        if period < info.exit_period + ctx.params.unbonding_periods or info.open_deals:
            return
        chain = ctx.require_chain()
        state = await chain.call(chain.ledger.proving_state, ctx.address, head)
        if state.live_leaves or state.pending_leaves:
            return
        try:
            receipt = await chain.call(chain.ledger.withdraw)
        except LedgerError as exc:
            event(log, logging.WARNING, "withdraw_failed", error=str(exc))
            return
        event(log, logging.INFO, "stake_withdrawn", amount=info.stake, tx=receipt.tx_hash)
        ctx.provider = await chain.call(chain.ledger.provider, ctx.address)

    async def _maybe_cross_check(self, period: int, head: int) -> None:
        every = self.ctx.config.proving.cross_check_periods
        round_ = self.rounds.rounds.get(period)
        if every and period % every == 0 and round_ is not None and round_.done:
            with contextlib.suppress(ChainUnavailable):
                await self.rounds.cross_check(head)

    # ------------------------------------------------------------------ helpers

    def _once(self, action: str, deal_id: int, period: int) -> bool:
        """True the first time ``action`` is asked for ``deal_id`` in ``period``."""
        if self._tried.get((action, deal_id)) == period:
            return False
        self._tried[(action, deal_id)] = period
        return True

    def _update_gauges(self) -> None:
        ctx = self.ctx
        m = ctx.metrics
        for state in DealState:
            m.deals.labels(state=state.value).set(0)
        for name, n in ctx.db.deal_counts().items():
            m.deals.labels(state=name).set(n)
        m.bytes_stored.set(ctx.store.stored_bytes)
        m.bytes_free.set(ctx.store.free_bytes())
        m.capacity.set(ctx.store.capacity)
        m.pieces.set(len(ctx.store.held()))
        m.period.set(ctx.period)
