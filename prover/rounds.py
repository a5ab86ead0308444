"""
The proving driver: the thin async layer over ``proving.ProvingRound`` and the mirror.

At every new head it asks ``proving.next_step`` what the current period's round needs:

- OPEN: the seed block is mined. If the contract's proving state says nothing is challenged
  this period, there is no round. Otherwise a round starts (or resumes from the database
  after a restart).
- PROVE: one attempt. The chain is asked first whether the period is already proven (and,
  after a restart, whether a transaction we sent before is still pending: then we wait for
  it rather than send a second one). The challenge range is cross-checked against the
  mirror (re-read from the chain's slots if they differ), the challenges are located, each
  challenged leaf is read from disk with its audit path and checked against its deal's root
  (``BlobStore.prove``), and the single ``submit_proof`` transaction is sent. A failed attempt
  is retried at the next head while the window lasts; a missing or rotten piece ends the
  round (the period is lost) and the loss of its deals is declared at once.
- CLOSE: the window's last block is mined without our proof: the round is missed.

Every state change is written to the ``proofs`` table (period, state, attempts, tx, block,
margin to the deadline, build time), which is the API's proof history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from web3 import Web3

from contracts.chain import Challenge, LeafProof
from contracts.errors import InvalidProof, LedgerError, PeriodAlreadyProven, Reverted
from prover.challenges import LocatedChallenge, slots_from_chain
from prover.context import Context
from prover.errors import ChainUnavailable, PieceMissing
from prover.follower import EventFollower
from prover.logs import event
from prover.proving import (
    AttemptFailed,
    FoundProven,
    PiecesLost,
    ProofConfirmed,
    ProofSent,
    ProvingRound,
    ProvingStarted,
    RoundEvent,
    RoundState,
    Step,
    WindowClosed,
    WindowOpened,
    next_step,
)

log = logging.getLogger("prover.proofs")


class ProvingDriver:
    """Runs the proving rounds of the current period."""

    def __init__(self, ctx: Context, follower: EventFollower) -> None:
        self.ctx = ctx
        self.follower = follower
        self.rounds: dict[int, ProvingRound] = {}
        self.lost_roots: set[bytes] = set()
        """Pieces found missing or rotten by a proof (upkeep declares their loss)."""
        self._checked_periods: set[int] = set()
        self._may_be_pending: int | None = None
        """A period whose proof transaction may still sit in the node's pool (sent before a
        restart, or sent when the endpoint dropped): wait for it rather than send another."""

    async def tick(self, head: int) -> None:
        """Advance the rounds given the new head."""
        schedule = self.ctx.schedule
        period = schedule.period_of(head)
        if period not in self.rounds and period not in self._checked_periods:
            await self._maybe_open(period, head)
        for p in sorted(self.rounds):
            round_ = self.rounds[p]
            step = next_step(round_, head)
            if step is Step.OPEN:
                self._apply(round_, WindowOpened(p, head))
                step = next_step(round_, head)
            if step is Step.PROVE:
                await self._attempt(round_)
            elif step is Step.CLOSE:
                self._apply(round_, WindowClosed(p))
            if round_.done and p < period:
                del self.rounds[p]
        self._checked_periods = {p for p in self._checked_periods if p >= period}

    def busy(self, period: int) -> bool:
        """Whether ``period``'s proof is still to be settled (other transactions wait)."""
        round_ = self.rounds.get(period)
        return round_ is not None and not round_.done

    # ------------------------------------------------------------------ opening

    async def _maybe_open(self, period: int, head: int) -> None:
        """Start the round of ``period`` if anything of ours is challenged in it."""
        ctx = self.ctx
        chain = ctx.require_chain()
        if head < ctx.schedule.seed_block(period):
            return
        state = await chain.call(chain.ledger.proving_state, ctx.address, head)
        self._checked_periods.add(period)
        if state.live_leaves == 0:
            return
        round_ = ProvingRound.for_period(ctx.schedule, period)
        saved = ctx.db.proof(period)
        if saved is not None and saved.state == "confirmed":
            round_.apply(FoundProven(period, saved.tx_hash, saved.block))
        elif saved is not None:
            round_.attempts = saved.attempts
            round_.reason = saved.reason
        self.rounds[period] = round_
        self._save(round_, live_leaves=state.live_leaves)
        if saved is not None:
            event(
                log,
                logging.INFO,
                "round_resumed",
                period=period,
                saved=saved.state,
                state=round_.state.value,
            )
        if saved is not None and saved.state == "submitted":
            # We may have sent a transaction before a restart: wait until it is settled.
            self._may_be_pending = period

    # ------------------------------------------------------------------ one attempt

    async def _attempt(self, round_: ProvingRound) -> None:
        ctx = self.ctx
        chain = ctx.require_chain()
        period = round_.period
        self._apply(round_, ProvingStarted(period))
        started = time.monotonic()
        try:
            if await chain.call(chain.ledger.is_proven, ctx.address, period):
                self._apply(round_, FoundProven(period))
                return
            if self._may_be_pending == period:
                pending = await chain.call(self._pending_transactions)
                if pending:
                    reason = "an earlier proof transaction is still pending"
                    self._apply(round_, AttemptFailed(period, reason))
                    return
                self._may_be_pending = None
                if await chain.call(chain.ledger.is_proven, ctx.address, period):
                    self._apply(round_, FoundProven(period))
                    return
            # The tick's head may be old (a slow catch-up): work from a fresh one, and give up
            # rather than send a proof that would land in the next period.
            located = await self._locate(period, await self._in_window(round_))
            proofs = await asyncio.to_thread(self._read_leaves, located)
            build = time.monotonic() - started
            await self._in_window(round_)
            self._apply(round_, ProofSent(period, build))
            receipt = await chain.call(chain.ledger.submit_proof, proofs)
            self._apply(round_, ProofConfirmed(period, receipt.tx_hash, receipt.block_number))
        except PiecesLostError as exc:
            self._apply(round_, PiecesLost(period, exc.roots, exc.reason))
        except PeriodAlreadyProven:
            self._apply(round_, FoundProven(period))
        except WindowPassed as exc:
            self._apply(round_, AttemptFailed(period, str(exc)))
        except InvalidProof as exc:
            # Either the proof reached the chain after its period, or our mirror disagrees
            # with the contract: then re-read the slots before retrying.
            late = chain.head >= round_.deadline_block
            with contextlib.suppress(ChainUnavailable):
                late = await chain.read_head() >= round_.deadline_block
            if not late:
                self.follower.mirror_stale = True
            reason = "landed after its window" if late else "challenge mirror out of date"
            self._apply(round_, AttemptFailed(period, f"invalid proof ({reason}): {exc.reason}"))
        except (ChainUnavailable, LedgerError) as exc:
            if round_.state is RoundState.SUBMITTED and not isinstance(exc, Reverted):
                self._may_be_pending = period  # sent, fate unknown
            reason = exc.reason if isinstance(exc, Reverted) else str(exc)
            self._apply(round_, AttemptFailed(period, f"{type(exc).__name__}: {reason}"[:300]))

    async def _in_window(self, round_: ProvingRound) -> int:
        """A fresh head, if a transaction sent now still lands in the round's window."""
        head = await self.ctx.require_chain().read_head()
        if head >= round_.deadline_block:
            raise WindowPassed(
                f"the window of period {round_.period} closed at block "
                f"{round_.deadline_block} (head {head})"
            )
        return head

    def _pending_transactions(self) -> int:
        """Our transactions in the node's pool not yet mined (blocking)."""
        eth = self.ctx.require_chain().ledger.web3.eth
        address = Web3.to_checksum_address(self.ctx.address)
        pending = int(eth.get_transaction_count(address, "pending"))
        return pending - int(eth.get_transaction_count(address, "latest"))

    async def _locate(self, period: int, head: int) -> list[LocatedChallenge]:
        """The period's challenges from the mirror, re-read from the chain if it is off."""
        ctx = self.ctx
        chain = ctx.require_chain()
        ledger = chain.ledger
        state = await chain.call(ledger.proving_state, ctx.address, head)
        if (
            self.follower.mirror_stale
            or state.epoch != ctx.mirror.epoch
            or state.live_leaves != ctx.mirror.live_leaves(period)
        ):
            await self.resync_mirror(head)
            if state.live_leaves != ctx.mirror.live_leaves(period):
                ours = ctx.mirror.live_leaves(period)
                raise ChainUnavailable(f"challenge range {state.live_leaves} != mirror {ours}")
        seed = await chain.call(ledger.seed, period)
        return ctx.mirror.locate(seed, ctx.address, period, ctx.params.challenges)

    async def resync_mirror(self, head: int) -> None:
        """Re-read our slots from the chain (at ``head``) into the mirror."""
        ctx = self.ctx
        chain = ctx.require_chain()
        ledger = chain.ledger
        state = await chain.call(ledger.proving_state, ctx.address, head)
        infos = await chain.call(ledger.slots, ctx.address, state.epoch, head)
        period = ctx.schedule.period_of(head)
        slots = slots_from_chain(
            ((s.deal_id, s.piece_root, s.piece_size, s.index, s.retired_from) for s in infos),
            period,
            state.pending_leaves,
        )
        ctx.mirror.reset(state.epoch, slots)
        self.follower.mirror_stale = False
        event(
            log,
            logging.INFO,
            "mirror_resynced",
            epoch=state.epoch,
            slots=len(slots),
            live_leaves=state.live_leaves,
        )

    def _read_leaves(self, located: list[LocatedChallenge]) -> list[LeafProof]:
        """Each challenged leaf with its path, checked against its root (blocking: disk)."""
        proofs: list[LeafProof] = []
        lost: dict[bytes, str] = {}
        for c in located:
            if c.piece_root in lost:
                continue
            try:
                proofs.append(self.ctx.store.prove(c.piece_root, c.piece_size, c.leaf))
            except PieceMissing as exc:
                lost[c.piece_root] = exc.reason
        if lost:
            reason = "; ".join(f"{root.hex()[:16]}: {why}" for root, why in lost.items())
            raise PiecesLostError(tuple(lost), reason)
        return proofs

    async def cross_check(self, head: int) -> bool | None:
        """
        Compare the mirror's challenges with the contract's own walk
        (``LedgerClient.challenges``); re-read the slots on a difference. None when the
        check cannot run now (nothing challenged, seed not sealed).
        """
        ctx = self.ctx
        chain = ctx.require_chain()
        period = ctx.schedule.period_of(head + 1)
        try:
            theirs: list[Challenge] = await chain.call(chain.ledger.challenges, ctx.address)
            seed = await chain.call(chain.ledger.seed, period)
        except LedgerError:
            return None
        ours = ctx.mirror.locate(seed, ctx.address, period, ctx.params.challenges)
        same = [(c.slot, c.leaf, c.deal_id) for c in ours] == [
            (c.slot, c.leaf, c.deal_id) for c in theirs
        ]
        if not same:
            event(log, logging.ERROR, "challenge_mirror_mismatch", period=period)
            await self.resync_mirror(head)
        return same

    # ------------------------------------------------------------------ bookkeeping

    def _apply(self, round_: ProvingRound, ev: RoundEvent) -> None:
        before = round_.state
        round_.apply(ev)
        m = self.ctx.metrics
        fields: dict[str, Any] = {"period": round_.period}
        if isinstance(ev, ProofSent):
            m.build_seconds.observe(ev.build_seconds)
            fields["build_s"] = ev.build_seconds
        elif isinstance(ev, ProofConfirmed | FoundProven) and before is not RoundState.CONFIRMED:
            margin = round_.margin_blocks
            m.proofs.labels(result="confirmed").inc()
            if margin is not None:
                m.margin.observe(margin)
                m.last_margin.set(margin)
                if margin < self.ctx.config.proving.margin_blocks:
                    m.late.inc()
                    event(
                        log,
                        logging.WARNING,
                        "proof_late",
                        period=round_.period,
                        margin_blocks=margin,
                    )
            fields.update(tx=round_.tx_hash, block=round_.block, margin_blocks=margin)
        elif isinstance(ev, AttemptFailed):
            m.proof_attempts_failed.labels(reason=ev.reason.split(":")[0][:40]).inc()
            fields["reason"] = ev.reason
        elif isinstance(ev, PiecesLost):
            self.lost_roots.update(ev.roots)
            fields["reason"] = ev.reason
        if round_.state is RoundState.MISSED and before is not RoundState.MISSED:
            m.proofs.labels(result="missed").inc()
        if round_.state is not before or isinstance(ev, AttemptFailed):
            level = logging.WARNING if isinstance(ev, AttemptFailed | PiecesLost) else logging.INFO
            if round_.state is RoundState.MISSED:
                level = logging.ERROR
            event(log, level, f"round_{round_.state.value}", **fields)
        self._save(round_)

    def _save(self, round_: ProvingRound, **extra: Any) -> None:
        self.ctx.db.put_proof(
            round_.period,
            state=round_.state.value,
            tx_hash=round_.tx_hash,
            block=round_.block,
            deadline_block=round_.deadline_block,
            window_blocks=round_.window_blocks,
            margin_blocks=round_.margin_blocks,
            build_seconds=round_.build_seconds,
            attempts=round_.attempts,
            reason=round_.reason,
            **extra,
        )


class WindowPassed(Exception):
    """Raised inside an attempt when the head reached the window's last block."""


class PiecesLostError(Exception):
    """Raised inside an attempt when challenged pieces cannot be read or verified."""

    def __init__(self, roots: tuple[bytes, ...], reason: str) -> None:
        super().__init__(reason)
        self.roots = roots
        self.reason = reason
