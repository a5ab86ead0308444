"""
The ledger from the client's side: ``LedgerClient`` calls off the event loop, and the reads
the client composes from events (a deal by its proposal nonce, providers' proof history).

web3.py is synchronous; ``Chain`` runs every call on one worker thread, so the event loop
keeps moving chunks while a transaction is mined, and the account's transactions go out
one at a time from one place (the ``TxSender`` keeps the nonce).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from contracts.chain import LedgerClient
from contracts.events import (
    DealAccepted,
    FaultReported,
    LossDeclared,
    ProofSubmitted,
    ProviderTerminated,
)

P = ParamSpec("P")
T = TypeVar("T")


class Chain:
    """A ``LedgerClient`` whose calls run on one worker thread (``await chain.run(fn, ...)``)."""

    def __init__(self, ledger: LedgerClient) -> None:
        self.ledger = ledger
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="chain")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def find_deal_by_nonce(
    ledger: LedgerClient, client: str, nonce: int, from_block: int
) -> DealAccepted | None:
    """The ``DealAccepted`` of ``client``'s proposal ``nonce`` mined since ``from_block``."""
    for event in ledger.events(from_block, None, kinds=[DealAccepted]):
        assert isinstance(event, DealAccepted)
        if event.nonce == nonce and event.client.lower() == client.lower():
            return event
    return None


@dataclass
class History:
    """One provider's record over the scoring window and the longer history."""

    proofs: int = 0
    """Periods proven within the window."""
    missed: int = 0
    """Periods reported missed within the window."""
    terminations: int = 0
    losses: int = 0
    proven_periods: set[int] = field(default_factory=set)
    """Every proven period within the history (for file health)."""


def provider_history(
    ledger: LedgerClient, window_periods: int, history_periods: int
) -> tuple[int, dict[str, History]]:
    """
    Proofs and faults per provider (lowercase address) from the market's events: proofs and
    reported misses over the last ``window_periods`` periods, terminations and declared
    losses over the last ``history_periods``. Returns the current period too.
    """
    head = ledger.current_block()
    schedule = ledger.schedule
    period = schedule.period_of(head)
    first_period = max(period - history_periods, 0)
    start = max(ledger.deployment.deploy_block, schedule.period_start(first_period))
    window_start = period - window_periods
    out: dict[str, History] = {}
    kinds = [ProofSubmitted, FaultReported, ProviderTerminated, LossDeclared]
    for event in ledger.events(start, head, kinds=kinds):
        provider = getattr(event, "provider", "").lower()
        h = out.setdefault(provider, History())
        if isinstance(event, ProofSubmitted):
            h.proven_periods.add(event.period)
            if event.period >= window_start:
                h.proofs += 1
        elif isinstance(event, FaultReported):
            if event.period >= window_start:
                h.missed += 1
        elif isinstance(event, ProviderTerminated):
            h.terminations += 1
        elif isinstance(event, LossDeclared):
            h.losses += 1
    return period, out
