"""
The client side of ``/depot/deal/1`` (contracts.offers) for one share: propose to the best
provider left, upload on acceptance, wait for the deal on chain, and on any failure cancel
the nonce and try the next provider.

Every proposal is recorded (``SIGNED``) before it is sent, and every failure ends with the
nonce settled on chain: cancelled, expired, or found accepted after all (``settle_nonce``).
Escrow only moves when a provider accepts on chain, so a deal that never started locks
nothing; an approval that outlives a failed proposal is reduced by the next one.

Checks on the way (nothing is believed on the provider's word): the ``DealActivated``
deal id must be the on-chain ``DealAccepted`` of *our* nonce, for our client address,
that provider, the share's root and size, and the proposed price.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.chain import new_nonce
from contracts.errors import NonceUsed, ProposalExpired
from contracts.events import DealAccepted
from contracts.offers import DEAL_PROTOCOL, DealActivated, DealDecision, DealFailed, ProposeDeal
from contracts.spec.deal import DealProposal
from market.config import format_tokens
from market.db import PlacementRecord, ShareRecord
from market.errors import DealRejected, InsufficientFunds, PlacementFailed
from market.ledger import find_deal_by_nonce
from market.placement import IN_FLIGHT, LIVE_NONCE, State, Trigger
from market.progress import Progress
from market.scoring import Score
from market.session import Session
from node.errors import NodeError
from node.identity import peer_short
from node.transport import Stream

log = logging.getLogger("market.deal")

STALL_POLL: float = 0.25
"""Seconds between looks at an upload's progress."""


class ProviderPool:
    """Ranked candidates for the shares of one file: each provider is used at most once."""

    def __init__(self, ranked: Sequence[Score], exclude: set[str]) -> None:
        self._queue = list(ranked)
        self.used = {a.lower() for a in exclude}

    def claim(self) -> Score | None:
        """The best provider nobody claimed yet (``None``: none left)."""
        while self._queue:
            score = self._queue.pop(0)
            key = score.provider.address.lower()
            if key not in self.used:
                self.used.add(key)
                return score
        return None

    def __len__(self) -> int:
        return sum(1 for s in self._queue if s.provider.address.lower() not in self.used)


@dataclass
class Funds:
    """Balance and allowance checks, serialised: the escrow of proposals in flight."""

    session: Session
    in_flight: dict[int, int] = field(default_factory=dict)
    """Proposal nonce -> escrow of proposals that may still be accepted."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def check(self, escrow: int) -> None:
        """``InsufficientFunds`` unless the balance covers ``escrow`` (a read, no approval)."""
        s = self.session
        balance = await s.chain.run(s.ledger.balance_of, s.address)
        if balance < escrow:
            raise InsufficientFunds(
                f"token balance {format_tokens(balance)} does not cover the escrow of "
                f"{format_tokens(escrow)} tokens these deals need"
            )

    async def ensure(self, escrow: int, key: int | None = None) -> None:
        """
        Make sure the balance covers ``escrow`` on top of the proposals in flight, and the
        market may pull all of it (approve if not); register it under ``key``.

        Raises ``InsufficientFunds`` with the amounts.
        """
        s = self.session
        async with self.lock:
            needed = sum(self.in_flight.values()) + escrow
            await self.check(needed)
            allowance = await s.chain.run(s.ledger.allowance, s.address)
            if allowance < needed:
                log.info("approving the market for %s tokens", format_tokens(needed))
                await s.chain.run(s.ledger.approve, needed)
            if key is not None:
                self.in_flight[key] = escrow

    def release(self, key: int) -> None:
        self.in_flight.pop(key, None)


class Placer:
    """
    Places shares of one file with the providers of a ``ProviderPool``.

    Parameters
    ----------
    session :
        The command's session (its node serves the prepared pieces).
    file_id :
        The file the shares belong to.
    periods :
        Deal length.
    pool :
        The ranked candidates (shared by every share of the file).
    purpose :
        ``put``, ``repair`` or ``renew`` (recorded with each placement).
    """

    def __init__(
        self,
        session: Session,
        file_id: str,
        *,
        periods: int,
        pool: ProviderPool,
        funds: Funds,
        progress: Progress,
        purpose: str = "put",
    ) -> None:
        self.s = session
        self.file_id = file_id
        self.periods = periods
        self.pool = pool
        self.funds = funds
        self.progress = progress
        self.purpose = purpose
        self.cfg = session.home.config.deals
        self.attempts: dict[int, list[str]] = {}

    async def place(self, share: ShareRecord) -> tuple[PlacementRecord, Score]:
        """An active deal for ``share``, trying providers in rank order until one works."""
        key = f"share {share.index}"
        self.progress.add(key, f"share {share.index}: choosing a provider", share.size)
        while True:
            choice = self.pool.claim()
            if choice is None:
                tried = "; ".join(self.attempts.get(share.index, [])) or "no eligible provider"
                raise PlacementFailed(f"share {share.index} could not be placed ({tried})")
            try:
                record = await self.try_provider(share, choice, key)
            except DealRejected as exc:
                who = choice.provider.address
                self.attempts.setdefault(share.index, []).append(f"{who}: {exc}")
                self.progress.note(f"share {share.index}: {who} failed ({exc}); trying the next")
                continue
            self.progress.update(key, share.size, f"share {share.index}: active ({short(choice)})")
            return record, choice

    async def try_provider(self, share: ShareRecord, choice: Score, key: str) -> PlacementRecord:
        """One proposal to one provider, to an active deal or ``DealRejected``."""
        s, view = self.s, choice.provider
        head = await s.chain.run(s.ledger.current_block)
        proposal = DealProposal(
            client=s.address,
            provider=view.address,
            piece_root=share.root,
            piece_size=share.size,
            price_per_period=choice.price_per_period,
            periods=self.periods,
            collateral=choice.collateral,
            nonce=new_nonce(),
            expiry_block=head + self.cfg.proposal_ttl_blocks,
        )
        # Funds first: a proposal the balance cannot cover is never signed or recorded.
        await self.funds.ensure(proposal.escrow(), proposal.nonce)
        try:
            return await self._propose(share, choice, proposal, head, key)
        finally:
            self.funds.release(proposal.nonce)

    async def _propose(
        self, share: ShareRecord, choice: Score, proposal: DealProposal, head: int, key: str
    ) -> PlacementRecord:
        s, view = self.s, choice.provider
        signature = s.ledger.sign_proposal(proposal)
        record = s.home.db.add_placement(
            file_id=self.file_id,
            share_index=share.index,
            purpose=self.purpose,
            provider=view.address,
            node_id=view.node_id,
            nonce=proposal.nonce,
            price_per_period=proposal.price_per_period,
            collateral=proposal.collateral,
            periods=proposal.periods,
            expiry_block=proposal.expiry_block,
            signed_block=head,
        )
        stream: Stream | None = None
        self.progress.update(key, 0, f"share {share.index}: proposing to {short(choice)}")
        try:
            stream = await asyncio.wait_for(
                s.node.host.open_stream(view.node_id, view.addrs, DEAL_PROTOCOL),
                self.cfg.decision_timeout,
            )
            await stream.send_msg(ProposeDeal.of(proposal, signature))
            decision = await asyncio.wait_for(stream.recv_msg("deal"), self.cfg.decision_timeout)
            if not isinstance(decision, DealDecision):
                raise DealRejected(f"answered the proposal with {type(decision).__name__}")
            if not decision.accepted:
                raise DealRejected(f"refused: {decision.reason}")
            s.home.db.transition(record.id, Trigger.ACCEPTED)
            self.progress.update(key, 0, f"share {share.index}: uploading to {short(choice)}")
            await self.push(view.node_id, view.addrs, share, key)
            s.home.db.transition(record.id, Trigger.UPLOADED)
            self.progress.update(
                key, share.size, f"share {share.index}: waiting for {short(choice)} on chain"
            )
            reply = await asyncio.wait_for(stream.recv_msg("deal"), self.cfg.activation_timeout)
            if isinstance(reply, DealFailed):
                raise DealRejected(f"failed after the upload: {reply.reason}")
            if not isinstance(reply, DealActivated):
                raise DealRejected(f"answered the upload with {type(reply).__name__}")
            event = await s.chain.run(find_deal_by_nonce, s.ledger, s.address, proposal.nonce, head)
            if event is None or event.deal_id != reply.deal_id:
                raise DealRejected(f"claims deal {reply.deal_id}, which is not our proposal's")
            check_event(event, proposal)
            record = s.home.db.transition(record.id, Trigger.ACTIVATED, **deal_columns(event))
            log.info(
                "deal %d active: share %d of %s with %s",
                event.deal_id,
                share.index,
                self.file_id[:16],
                view.address,
            )
            return record
        except (DealRejected, NodeError, TimeoutError, OSError) as exc:
            reason = _reason(exc)
            if stream is not None:
                stream.reset(reason[:100])
            record = s.home.db.transition(record.id, Trigger.FAILED, reason=reason)
            record = await settle_nonce(s, record)
            if record.state is State.ACTIVE:
                return record  # it was accepted after all
            raise DealRejected(reason) from None
        finally:
            if stream is not None:
                with contextlib.suppress(NodeError):
                    await stream.close()

    async def push(
        self, node_id: bytes, addrs: Sequence[tuple[str, int]], share: ShareRecord, key: str
    ) -> None:
        """Swarm push of the share, watching its progress; ``DealRejected`` on a stall."""
        swarm = self.s.node.swarm
        counter = swarm.metrics.sent.labels(peer=peer_short(node_id))
        base = last = counter.value
        last_change = time.monotonic()
        task = asyncio.ensure_future(swarm.push(node_id, addrs, share.root))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=STALL_POLL)
                value = counter.value
                self.progress.update(key, int(min(value - base, share.size)))
                now = time.monotonic()
                if value != last:
                    last, last_change = value, now
                elif now - last_change > self.cfg.upload_timeout:
                    raise DealRejected(f"upload stalled for {self.cfg.upload_timeout:.0f}s")
            task.result()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


def short(choice: Score) -> str:
    return choice.provider.address[:10]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def deal_columns(event: DealAccepted) -> dict[str, object]:
    return {
        "deal_id": event.deal_id,
        "tx_hash": event.tx_hash,
        "start_period": event.start,
        "end_period": event.end,
        "reason": None,
    }


def check_event(event: DealAccepted, proposal: DealProposal) -> None:
    """``DealRejected`` unless the on-chain deal is exactly the proposal."""
    if (
        event.client.lower() != proposal.client.lower()
        or event.provider.lower() != proposal.provider.lower()
        or event.piece_root != proposal.piece_root
        or event.piece_size != proposal.piece_size
        or event.price_per_period != proposal.price_per_period
        or event.end - event.start != proposal.periods
    ):
        raise DealRejected(f"deal {event.deal_id} on chain does not match the proposal")


async def settle_nonce(s: Session, record: PlacementRecord) -> PlacementRecord:
    """
    Bring a placement whose nonce may be live to a final state: ``ACTIVE`` if the provider
    accepted it on chain after all, else ``EXPIRED`` (past its expiry block) or
    ``CANCELLED`` (we revoked the nonce). Nothing escrowed stays behind a dead proposal.
    """
    db = s.home.db
    if record.state in IN_FLIGHT:
        record = db.transition(record.id, Trigger.FAILED, reason=record.reason or "interrupted")
    if record.state not in LIVE_NONCE:
        return record
    head = await s.chain.run(s.ledger.current_block)
    event = await s.chain.run(
        find_deal_by_nonce, s.ledger, s.address, record.nonce, record.signed_block
    )
    if event is not None:
        return _activated(s, record, event)
    if head > record.expiry_block:
        # Acceptance needs block <= expiry and we looked at every block up to head.
        return db.transition(record.id, Trigger.EXPIRED)
    try:
        await s.chain.run(s.ledger.cancel_nonce, record.nonce)
    except ProposalExpired:
        return db.transition(record.id, Trigger.EXPIRED)
    except NonceUsed:
        event = await s.chain.run(
            find_deal_by_nonce, s.ledger, s.address, record.nonce, record.signed_block
        )
        if event is not None:
            return _activated(s, record, event)
        log.info("nonce of placement %d was already cancelled", record.id)
    return db.transition(record.id, Trigger.CANCELLED)


def _activated(s: Session, record: PlacementRecord, event: DealAccepted) -> PlacementRecord:
    log.info("placement %d became deal %d after all", record.id, event.deal_id)
    return s.home.db.transition(record.id, Trigger.ACTIVATED, **deal_columns(event))
