"""
The daemon's view of the ledger: ``contracts.chain.LedgerClient`` run off the event loop,
with the endpoint's health tracked and outages retried with backoff.

Every ledger call blocks (web3.py over HTTP, receipts polled), so it runs in a worker
thread; the P2P side keeps serving meanwhile. An unreachable or timing-out endpoint raises
``ChainUnavailable``; ``Chain.call`` records the outage (``up``, ``down_since``,
``last_error``) and ``Chain.retry`` waits ``retry_initial`` doubling to ``retry_max``
between attempts, so a daemon whose RPC endpoint drops keeps serving and catches up when
it returns. Reverts are not outages: they come back as ``contracts.errors.Reverted``.

A chain that restarted under the same URL is detected by its genesis hash (``identity``):
the daemon compares it with the one recorded in its database and refuses to act on a
different chain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from web3.exceptions import (
    BadFunctionCallOutput,
    BadResponseFormat,
    CannotHandleRequest,
    ProviderConnectionError,
    TimeExhausted,
    Web3RPCError,
)

from contracts.chain import LedgerClient
from contracts.errors import RpcUnavailable
from prover.config import ChainConfig
from prover.errors import ChainUnavailable
from prover.logs import event

log = logging.getLogger("prover.chain")

T = TypeVar("T")

OUTAGE_ERRORS = (
    RpcUnavailable,
    requests.RequestException,
    ConnectionError,
    TimeoutError,
    ProviderConnectionError,
    CannotHandleRequest,
    BadResponseFormat,
    TimeExhausted,
    # A node that answers, but not as the chain we know would: an error for a read (a block
    # it does not have yet), or empty return data where the market should be (a restarted
    # devnet). Retried like an outage; the identity check tells a reset chain apart.
    Web3RPCError,
    BadFunctionCallOutput,
)
"""What counts as the endpoint being unreachable (as opposed to the chain saying no, or a
bug of ours such as an unchecksummed address, which propagate as they are)."""


class Chain:
    """
    Async access to one ``LedgerClient``.

    Parameters
    ----------
    ledger :
        The client (with the provider's account for writes).
    config :
        Retry and backoff settings.
    """

    def __init__(self, ledger: LedgerClient, config: ChainConfig) -> None:
        self.ledger = ledger
        self.config = config
        self.up = True
        self.down_since: float | None = None
        self.last_error: str | None = None
        self.failures = 0
        self.head = 0

    @property
    def address(self) -> str:
        return self.ledger.address

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """
        Run ``fn(*args)`` (a blocking ledger call) in a thread.

        Raises
        ------
        ChainUnavailable
            The endpoint could not be reached or answered garbage.
        contracts.errors.LedgerError
            The chain refused (a revert) or we misused the client.
        """
        try:
            result = await asyncio.to_thread(fn, *args)
        except OUTAGE_ERRORS as exc:
            self._failed(exc)
            raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self._succeeded()
        return result

    async def retry(self, fn: Callable[..., T], *args: Any, what: str = "chain call") -> T:
        """``call`` until the endpoint answers (backoff between attempts); cancellable."""
        delay = self.config.retry_initial
        while True:
            try:
                return await self.call(fn, *args)
            except ChainUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.retry_max)

    async def read_head(self) -> int:
        """The latest block (and remember it)."""
        self.head = await self.call(self.ledger.current_block)
        return self.head

    def identity(self) -> str:
        """The chain's genesis block hash, hex (blocking; call through ``call``)."""
        block = self.ledger.web3.eth.get_block(0)
        return bytes(block["hash"]).hex()

    def market_deployed(self) -> bool:
        """Whether the market contract has code (blocking; call through ``call``)."""
        return bool(self.ledger.web3.eth.get_code(self.ledger.market.address))

    def status(self) -> dict[str, Any]:
        return {
            "up": self.up,
            "head": self.head,
            "down_since": self.down_since,
            "last_error": self.last_error,
            "failures": self.failures,
        }

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if self.up:
            self.up = False
            self.down_since = time.time()
            event(log, logging.WARNING, "chain_down", error=self.last_error)

    def _succeeded(self) -> None:
        if not self.up:
            outage = time.time() - (self.down_since or time.time())
            event(log, logging.INFO, "chain_up", outage_s=round(outage, 1))
        self.up = True
        self.down_since = None
