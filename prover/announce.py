"""
What the provider tells the DHT, and whose records it accepts.

- The record policy (``StakedSigners``) holds the node ids registered with stake, refreshed
  from the registry every ``p2p.directory_interval`` (``contracts.directory``), plus our own.
- The ask (``contracts.offers.Ask``: prices, limits, free bytes) is our provider record under
  ``ASKS_KEY``, published while we take deals, republished every ``offer.ask_interval`` or
  when the free space moved by more than ``ASK_FREE_CHANGE``, and withdrawn on exit.
- Each stored piece is announced under its root (``provide(root)``), so that clients and
  repairing providers find us as a holder. A store that reached no node (the others had not
  yet learnt our stake) is retried at the next ask interval; the DHT republishes hourly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final

from contracts.directory import ProviderDirectory
from contracts.offers import ASKS_KEY, Ask
from node import wire
from node.kademlia.records import StakedSigners
from prover.context import Context
from prover.errors import ChainUnavailable
from prover.logs import event

log = logging.getLogger("prover.announce")

ASK_FREE_CHANGE: Final = 0.05
"""Republish the ask early when the free space changed by more than this fraction."""
PROVIDE_CONCURRENCY: Final = 8
"""Piece announcements in flight at once."""


class Announcer:
    """Keeps the DHT policy, our ask and our piece records current."""

    def __init__(self, ctx: Context, policy: StakedSigners) -> None:
        self.ctx = ctx
        self.policy = policy
        self.directory: ProviderDirectory | None = None
        self.staked_count = 0
        """Node ids the policy accepts (registered providers with stake)."""
        self.ask: Ask | None = None
        self._ask_at = 0.0
        self._announced: dict[bytes, int] = {}
        """Root -> nodes that stored our record at the last attempt."""
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._directory_loop(), name="prover directory"),
            asyncio.create_task(self._ask_loop(), name="prover ask"),
            *(
                asyncio.create_task(self._provide_worker(), name=f"prover provide {i}")
                for i in range(PROVIDE_CONCURRENCY)
            ),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task

    # ------------------------------------------------------------------ pieces

    def announce(self, root: bytes) -> None:
        """Queue ``root`` for a provider record (once per run unless it reached nobody)."""
        if root not in self._announced:
            self._announced[root] = -1
            self._queue.put_nowait(root)

    def forget(self, root: bytes) -> None:
        """Stop republishing our record for ``root`` (its data is about to go)."""
        self._announced.pop(root, None)
        if self.ctx.kad is not None:
            self.ctx.kad.stop_providing(root)

    @property
    def announced(self) -> int:
        return sum(1 for n in self._announced.values() if n > 0)

    async def _provide_worker(self) -> None:
        while True:
            root = await self._queue.get()
            kad = self.ctx.kad
            if kad is None or root not in self._announced:
                continue
            try:
                done = await kad.provide(root)
                self._announced[root] = done.stored
            except Exception as exc:  # the DHT must never take the daemon down
                event(log, logging.WARNING, "provide_failed", root=root[:8], error=str(exc))
                self._announced[root] = 0

    # ------------------------------------------------------------------ policy

    async def _directory_loop(self) -> None:
        self.policy.add(self.ctx.node_key.node_id)
        while True:
            try:
                chain = self.ctx.require_chain()
                if self.directory is None:
                    self.directory = ProviderDirectory(chain.ledger)
                await chain.call(self.directory.refresh)
                staked = self.directory.staked_node_ids() | {self.ctx.node_key.node_id}
                self.policy.update(staked)
                self.staked_count = len(staked)
            except ChainUnavailable:
                pass
            except Exception as exc:
                event(log, logging.WARNING, "directory_refresh_failed", error=str(exc))
            await asyncio.sleep(self.ctx.config.p2p.directory_interval)

    # ------------------------------------------------------------------ ask

    def current_ask(self) -> Ask:
        ctx = self.ctx
        terms = ctx.terms()
        return Ask(
            provider=bytes.fromhex(ctx.address[2:]),
            chain_id=ctx.deployment.chain_id,
            market=bytes.fromhex(ctx.deployment.market[2:]),
            price_per_gib_period=terms.price_per_gib_period,
            collateral_per_gib=terms.collateral_per_gib,
            min_piece_size=terms.min_piece_size,
            max_piece_size=terms.max_piece_size,
            max_periods=terms.max_periods,
            free_bytes=ctx.store.free_bytes(),
            issued_at=int(time.time()),
        )

    async def _ask_loop(self) -> None:
        tick = min(1.0, self.ctx.config.offer.ask_interval)
        while True:
            try:
                await self._maybe_publish()
            except Exception as exc:
                event(log, logging.WARNING, "ask_publish_failed", error=str(exc))
            await asyncio.sleep(tick)

    async def _maybe_publish(self) -> None:
        ctx = self.ctx
        kad = ctx.kad
        if kad is None:
            return
        if not ctx.taking_deals:
            if self.ask is not None:
                kad.stop_providing(ASKS_KEY)
                self.ask = None
                event(log, logging.INFO, "ask_withdrawn")
            return
        fresh = self.current_ask()
        due = time.monotonic() - self._ask_at >= ctx.config.offer.ask_interval
        moved = self.ask is None or abs(fresh.free_bytes - self.ask.free_bytes) > (
            ASK_FREE_CHANGE * max(self.ask.free_bytes, 1)
        )
        if not (due or moved):
            return
        self._ask_at = time.monotonic()
        done = await kad.provide(ASKS_KEY, wire.encode(fresh))
        self.ask = fresh
        event(
            log,
            logging.INFO,
            "ask_published",
            free_bytes=fresh.free_bytes,
            price=fresh.price_per_gib_period,
            stored=done.stored,
        )
        if due:
            for root, stored in list(self._announced.items()):
                if stored == 0:
                    self._announced[root] = -1
                    self._queue.put_nowait(root)
