"""
The provider's side of the deal protocol ``/depot/deal/1`` (``contracts.offers``).

A stream opens with one of:

- ``ProposeDeal``: admission (``prover.admission``: the cheap checks, then the chain's
  facts), ``DealDecision``; on yes, the piece's size is reserved and the blob store expects
  exactly that root and size from that peer. The client pushes it over the swarm on its own
  stream; the swarm verifies every chunk against the layer and the layer against the root,
  and the store fsyncs and renames it into place. Only then is the deal accepted on chain
  (escrow pulled, collateral locked) and ``DealActivated(deal_id, tx_hash)`` sent. Any
  failure (no push within ``offer.push_timeout``, the client resetting the stream, bytes that
  do not match the root, the chain refusing) is a ``DealFailed(reason)``, and the reserved
  space and any stored bytes are released: nothing half-stored is kept or proven. After
  ``DealActivated`` the stream stays open for ``StoreManifest``/``GetManifest``.
- ``StoreManifest``: a signed file manifest (``node.pieces.manifest``) whose owner is a
  client of ours and which names a piece we hold; ``ManifestStored(id)``, or ``DealFailed``
  with the reason for a refused one.
- ``GetManifest``: ``ManifestReply`` (``None`` if unknown). Anyone may ask.

An accept whose fate is unknown (the RPC endpoint dropped after sending, a transaction that
stays unmined) is never guessed: the daemon watches the client's nonce until the proposal
expires. Used means accepted (the deal id and transaction come from the ``DealAccepted``
event); unused past the expiry block means it can never be accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

from web3 import Web3

from contracts.chain import LedgerClient, ProviderStatus
from contracts.errors import LedgerError, Reverted
from contracts.events import DealAccepted
from contracts.offers import (
    DealActivated,
    DealDecision,
    DealFailed,
    GetManifest,
    ManifestReply,
    ManifestStored,
    ProposeDeal,
    StoreManifest,
)
from contracts.spec.deal import DealProposal
from node import errors as node_errors
from node.identity import peer_short
from node.pieces.errors import ManifestError
from node.pieces.manifest import decode_manifest
from node.transport import Stream
from prover.admission import ChainView, check_chain, check_terms
from prover.context import Context
from prover.errors import (
    ChainUnavailable,
    DatabaseError,
    DealAborted,
    NoSpace,
    PieceMissing,
    ProposalRefused,
    StorageError,
)
from prover.lifecycle import HOLDING_STATES, DealState, PieceState
from prover.logs import event

log = logging.getLogger("prover.deals")

WIRE_PROTOCOL: Final = "deal"
"""``node.wire`` protocol name of the ``contracts.offers`` messages."""
FIRST_MESSAGE_TIMEOUT: Final = 30.0
"""Seconds for a client to send its first message on a new stream."""
FOLLOW_UP_TIMEOUT: Final = 120.0
"""Seconds an activated deal's stream is kept open for manifests."""
NONCE_POLL: Final = 1.0
"""Seconds between nonce checks while the fate of an accept is unknown."""


class DealDesk:
    """Handles ``/depot/deal/1`` streams (``host.set_handler(DEAL_PROTOCOL, desk.handle)``)."""

    def __init__(self, ctx: Context, on_activated: Callable[[bytes], None] | None = None) -> None:
        self.ctx = ctx
        self.on_activated = on_activated
        """Called with the piece root once a deal is active (announce it in the DHT)."""
        self.in_flight: set[int] = set()
        """Local ids of the deals being received or activated by a handler now."""

    async def handle(self, stream: Stream) -> None:
        try:
            first = await asyncio.wait_for(stream.recv_msg(WIRE_PROTOCOL), FIRST_MESSAGE_TIMEOUT)
            if isinstance(first, ProposeDeal):
                if await self._propose(stream, first):
                    await self._follow_up(stream)
            elif isinstance(first, StoreManifest | GetManifest):
                await stream.send_msg(self._manifest_reply(stream.peer_id, first))
                await self._follow_up(stream)
            else:
                raise node_errors.ProtocolViolation(f"unexpected {type(first).__name__}")
        except TimeoutError:
            stream.reset("no message in time")
        except (node_errors.EndOfStream, node_errors.StreamReset, node_errors.ConnectionClosed):
            pass

    # ------------------------------------------------------------------ proposals

    async def _propose(self, stream: Stream, msg: ProposeDeal) -> bool:
        """The whole deal; returns True once it is active (the stream stays open)."""
        ctx, metrics = self.ctx, self.ctx.metrics
        peer = peer_short(stream.peer_id)
        try:
            proposal = await self._admit(msg)
        except ProposalRefused as exc:
            metrics.proposals.labels(result="refused").inc()
            event(
                log,
                logging.INFO,
                "proposal_refused",
                peer=peer,
                root=msg.piece_root[:8],
                reason=exc.reason,
            )
            await stream.send_msg(DealDecision(False, exc.reason[:512]))
            return False
        root, size = proposal.piece_root, proposal.piece_size
        try:
            done = ctx.store.expect(root, size, stream.peer_id)
        except (NoSpace, StorageError) as exc:
            metrics.proposals.labels(result="refused").inc()
            await stream.send_msg(DealDecision(False, str(exc)[:512]))
            return False
        try:
            local_id = ctx.db.add_proposal(
                client=_checksum(proposal.client),
                nonce=proposal.nonce,
                piece_root=root,
                piece_size=size,
                price_per_period=proposal.price_per_period,
                periods=proposal.periods,
                collateral=proposal.collateral,
                expiry_block=proposal.expiry_block,
                signature=msg.signature,
                peer_id=stream.peer_id,
            )
        except DatabaseError as exc:
            ctx.store.forget_expected(root)
            metrics.proposals.labels(result="refused").inc()
            await stream.send_msg(DealDecision(False, str(exc)[:512]))
            return False
        self.in_flight.add(local_id)
        try:
            return await self._complete(stream, msg, proposal, local_id, done)
        finally:
            self.in_flight.discard(local_id)
            ctx.store.forget_expected(root)  # a no-op once imported; frees a cancelled one

    async def _complete(
        self,
        stream: Stream,
        msg: ProposeDeal,
        proposal: DealProposal,
        local_id: int,
        done: asyncio.Future[None],
    ) -> bool:
        """From the yes to the activation (or the failure) of an admitted proposal."""
        ctx, metrics = self.ctx, self.ctx.metrics
        peer = peer_short(stream.peer_id)
        root, size = proposal.piece_root, proposal.piece_size
        metrics.proposals.labels(result="admitted").inc()
        event(
            log,
            logging.INFO,
            "proposal_admitted",
            peer=peer,
            local=local_id,
            root=root[:8],
            size=size,
            periods=proposal.periods,
            price=proposal.price_per_period,
        )
        try:
            await stream.send_msg(DealDecision(True, ""))
            await self._await_push(stream, done)
            ctx.db.put_piece(root, size, PieceState.STORED)
            ctx.db.set_deal_state(local_id, DealState.ACTIVATING)
            metrics.ingest_bytes.inc(size)
            deal_id, tx_hash = await self._activate(local_id, proposal, msg.signature)
        except Exception as exc:  # whatever went wrong, nothing half-stored is kept
            reason = str(exc) or type(exc).__name__
            if not isinstance(exc, DealAborted | DatabaseError | node_errors.NodeError):
                log.exception("deal %d: internal error", local_id)
                row = ctx.db.deal(local_id)
                if row is not None and row.state == DealState.ACTIVATING:
                    # The accept may have been sent: the chain decides (Upkeep.reconcile_deals).
                    reason = f"internal error while activating (the chain decides): {reason}"
                else:
                    self._release(local_id, root)
            else:
                self._release(local_id, root)
            metrics.proposals.labels(result="failed").inc()
            event(
                log,
                logging.WARNING,
                "deal_failed",
                peer=peer,
                local=local_id,
                root=root[:8],
                reason=reason,
            )
            with contextlib.suppress(node_errors.NodeError):
                await stream.send_msg(DealFailed(reason[:512]))
            return False
        metrics.proposals.labels(result="activated").inc()
        event(
            log, logging.INFO, "deal_activated", peer=peer, deal=deal_id, root=root[:8], tx=tx_hash
        )
        if self.on_activated is not None:
            self.on_activated(root)
        await stream.send_msg(DealActivated(deal_id, bytes.fromhex(tx_hash.removeprefix("0x"))))
        return True

    async def _admit(self, msg: ProposeDeal) -> DealProposal:
        """Both admission steps; ``ProposalRefused`` with the client's reason."""
        ctx = self.ctx
        if not ctx.taking_deals:
            raise ProposalRefused(
                "this provider is not taking deals now (not registered, "
                "exiting, or the chain is unavailable)"
            )
        try:
            chain = ctx.require_chain()
        except ChainUnavailable as exc:
            raise ProposalRefused(f"chain unavailable, try again later: {exc}") from None
        root = msg.piece_root
        duplicate = ctx.store.has(root) or any(
            DealState(r.state) in HOLDING_STATES or r.state == DealState.RECEIVING
            for r in ctx.db.deals_of_root(root)
        )
        proposal = check_terms(
            msg,
            ctx.terms(),
            free_bytes=ctx.store.free_bytes(),
            duplicate=duplicate,
            head=chain.head,
        )
        try:
            view = await chain.call(_read_view, chain.ledger, proposal, ctx.address)
        except (ChainUnavailable, LedgerError) as exc:
            raise ProposalRefused(f"chain unavailable, try again later: {exc}") from None
        check_chain(proposal, view, ctx.terms())
        return proposal

    async def _await_push(self, stream: Stream, done: asyncio.Future[None]) -> None:
        """Wait for the verified piece; abort on timeout, a reset stream or a bad upload."""
        reader = asyncio.ensure_future(stream.recv_msg(WIRE_PROTOCOL))
        waiting: set[asyncio.Future[Any]] = {done, reader}
        try:
            async with asyncio.timeout(self.ctx.config.offer.push_timeout):
                while not done.done():
                    finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if reader in finished:
                        waiting.discard(reader)
                        exc = reader.exception()
                        if isinstance(exc, node_errors.EndOfStream):
                            continue  # the client half-closed: it can still push
                        if exc is not None:
                            raise DealAborted(f"client went away before the upload: {exc}")
                        raise DealAborted(
                            f"unexpected {type(reader.result()).__name__} before activation"
                        )
        except TimeoutError:
            raise DealAborted(
                f"no verified upload within {self.ctx.config.offer.push_timeout:.0f} s"
            ) from None
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        try:
            done.result()
        except (PieceMissing, StorageError) as exc:
            raise DealAborted(f"upload rejected: {exc}") from None
        except asyncio.CancelledError:
            raise DealAborted("upload cancelled") from None

    async def _activate(
        self, local_id: int, proposal: DealProposal, signature: bytes
    ) -> tuple[int, str]:
        """Accept the deal on chain; returns (deal id, transaction hash)."""
        ctx = self.ctx
        chain = ctx.require_chain()
        if chain.head >= proposal.expiry_block:
            raise DealAborted(
                f"the proposal expired (block {proposal.expiry_block}) during the upload"
            )
        since = chain.head
        try:
            deal_id = await chain.call(chain.ledger.accept_deal, proposal, signature)
        except Reverted as exc:
            raise DealAborted(f"the chain refused the deal: {exc.reason or exc}") from None
        except (ChainUnavailable, LedgerError) as exc:
            event(log, logging.WARNING, "accept_unknown", local=local_id, error=str(exc))
            deal_id = await self._resolve_accept(proposal, since)
        accepted = await self._accepted_event(since, deal_id)
        row = ctx.db.deal(local_id)
        if row is not None and row.state != DealState.ACTIVE:
            ctx.db.set_deal_state(
                local_id,
                DealState.ACTIVE,
                deal_id=deal_id,
                start_period=accepted.start,
                end_period=accepted.end,
                stop_period=accepted.end,
                epoch=accepted.epoch,
                slot=accepted.slot,
                accept_tx=accepted.tx_hash,
                accept_block=accepted.block_number,
            )
        return deal_id, accepted.tx_hash

    async def _accepted_event(self, since: int, deal_id: int) -> DealAccepted:
        """The ``DealAccepted`` of our new deal (retried through outages)."""
        chain = self.ctx.require_chain()
        delay = self.ctx.config.chain.retry_initial
        while True:
            try:
                found = await chain.call(_find_accepted, chain.ledger, since, deal_id)
            except ChainUnavailable:
                found = None
            if found is not None:
                return found
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.ctx.config.chain.retry_max)

    async def _resolve_accept(self, proposal: DealProposal, since: int) -> int:
        """Watch the nonce until the accept is known to have happened or to be impossible."""
        chain = self.ctx.require_chain()
        client = _checksum(proposal.client)
        while True:
            try:
                head = await chain.read_head()
                if await chain.call(chain.ledger.nonce_used, client, proposal.nonce):
                    found = await chain.call(
                        _find_by_nonce, chain.ledger, client, proposal.nonce, since
                    )
                    if found is not None:
                        return found
                    raise DealAborted("the proposal's nonce was used elsewhere (cancelled?)")
                if head > proposal.expiry_block:
                    raise DealAborted("the accept transaction was not mined before the expiry")
            except ChainUnavailable:
                pass
            await asyncio.sleep(NONCE_POLL)

    def _release(self, local_id: int, root: bytes) -> None:
        """Undo an admitted deal that did not start: reservation, stored bytes, row."""
        ctx = self.ctx
        ctx.store.forget_expected(root)
        with contextlib.suppress(DatabaseError):
            ctx.release_piece(root, local_id, "deal failed")
            row = ctx.db.deal(local_id)
            if row is not None and row.state in (DealState.RECEIVING, DealState.ACTIVATING):
                ctx.db.set_deal_state(local_id, DealState.FAILED)

    # ------------------------------------------------------------------ manifests

    async def _follow_up(self, stream: Stream) -> None:
        """Serve manifest requests on the stream until the client closes it."""
        while True:
            try:
                msg = await asyncio.wait_for(stream.recv_msg(WIRE_PROTOCOL), FOLLOW_UP_TIMEOUT)
            except (TimeoutError, node_errors.EndOfStream):
                return
            if not isinstance(msg, StoreManifest | GetManifest):
                raise node_errors.ProtocolViolation(f"unexpected {type(msg).__name__}")
            await stream.send_msg(self._manifest_reply(stream.peer_id, msg))

    def _manifest_reply(self, peer_id: bytes, msg: StoreManifest | GetManifest) -> object:
        ctx = self.ctx
        if isinstance(msg, GetManifest):
            return ManifestReply(ctx.db.manifest(msg.manifest_id.hex()))
        try:
            signed = decode_manifest(msg.manifest)
        except ManifestError as exc:
            return DealFailed(f"manifest refused: {exc}"[:512])
        owner = signed.manifest.owner
        ours = {
            bytes.fromhex(r.piece_root)
            for r in ctx.db.deals([DealState.ACTIVATING, DealState.ACTIVE])
            if r.client == owner
        }
        if not ours & {share.root for share in signed.manifest.shares}:
            return DealFailed("manifest refused: it names no piece of its owner's deals here")
        ctx.db.put_manifest(signed.id, owner, signed.encoded)
        ctx.metrics.manifests.set(ctx.db.manifest_count())
        event(log, logging.INFO, "manifest_stored", peer=peer_short(peer_id), id=signed.id[:16])
        return ManifestStored(bytes.fromhex(signed.id))


def _read_view(ledger: LedgerClient, proposal: DealProposal, provider: str) -> ChainView:
    """The chain facts ``check_chain`` needs (blocking)."""
    client = _checksum(proposal.client)
    info = ledger.provider(provider)
    return ChainView(
        head=ledger.current_block(),
        client_balance=ledger.balance_of(client),
        client_allowance=ledger.allowance(client),
        nonce_used=ledger.nonce_used(client, proposal.nonce),
        provider_active=info.status == ProviderStatus.ACTIVE,
        free_stake=info.free_stake,
        min_stake=ledger.params.min_stake,
    )


def _find_accepted(ledger: LedgerClient, since: int, deal_id: int) -> DealAccepted | None:
    """The ``DealAccepted`` event of ``deal_id``, mined at or after block ``since``."""
    for ev in ledger.events(since, None, [DealAccepted]):
        if isinstance(ev, DealAccepted) and ev.deal_id == deal_id:
            return ev
    return None


def _find_by_nonce(ledger: LedgerClient, client: str, nonce: int, since: int) -> int | None:
    """The deal id accepted for ``client``'s ``nonce`` at or after block ``since``."""
    for ev in ledger.events(since, None, [DealAccepted]):
        if isinstance(ev, DealAccepted) and ev.client == client and ev.nonce == nonce:
            return ev.deal_id
    return None


def _checksum(address: str) -> str:
    return str(Web3.to_checksum_address(address))
