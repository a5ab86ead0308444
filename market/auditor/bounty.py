"""
Fault bounties: report a provider's missed period during the next period, and get paid.

During period ``p + 1`` (the report window of ``p``, contracts.spec.schedule), every
provider that had live leaves in ``p`` (``ProviderBook.live_leaves``) and has no indexed
proof for ``p`` is a candidate. Before spending anything the hunter asks the chain:

- ``fault_bounty(provider, p)``: 0 means the report would revert (the proof landed after
  all, someone reported first, or the window closed), so nothing is sent;
- the gas the report would use, priced at the current fees, against the bounty's value
  (``token_price_eth``, ``min_profit_ratio``): an unprofitable report is not sent.

Only then does it send ``report_fault``. Several auditors may race for the same fault;
the contract pays the first report and reverts the others with "proving: fault already
reported". A loser whose transaction was caught by the gas estimate spends nothing; one
whose transaction was mined behind the winner's spends that one transaction's gas, which
is recorded (``claims.gas_cost_wei``) as a lost race. One attempt per (provider, period).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Engine, insert, select
from web3.exceptions import TransactionNotFound

from contracts.chain import LedgerClient
from contracts.errors import (
    FaultAlreadyReported,
    LedgerError,
    OutsideWindow,
    PeriodAlreadyProven,
    Reverted,
    TransactionFailed,
)
from contracts.events import FaultReported
from contracts.txs import rpc_guard
from market.auditor import db
from market.auditor.indexer import Indexer

log = logging.getLogger("market.auditor.bounty")

WEI: Final = 10**18


@dataclass(frozen=True)
class BountyConfig:
    """When a fault is worth reporting."""

    enabled: bool = True
    """Report faults at all (an auditor without funds only watches)."""
    token_price_eth: float = 0.001
    """Value of one whole token in ETH, to compare a bounty (tokens) with gas (ETH)."""
    min_profit_ratio: float = 2.0
    """Report only if the bounty is worth at least this many times the gas it costs."""


@dataclass(frozen=True)
class Claim:
    """What the hunter did about one missed period."""

    provider: str
    period: int
    status: str
    """``won`` (bounty paid to us), ``lost`` (another report was first), ``taken`` (already
    reported when we looked), ``proven``, ``unprofitable``, ``late`` or ``failed``."""
    bounty: int
    gas_cost_wei: int
    tx_hash: str | None
    detail: str


class BountyHunter:
    """
    Finds reportable faults from the indexer's books and reports them.

    Parameters
    ----------
    engine :
        The database (``claims``).
    ledger :
        A ``LedgerClient`` with the account that signs reports and receives bounties.
    indexer :
        Whose books say which providers had live leaves and which proofs landed.
    """

    def __init__(
        self,
        engine: Engine,
        ledger: LedgerClient,
        indexer: Indexer,
        config: BountyConfig | None = None,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.indexer = indexer
        self.config = config or BountyConfig()

    def candidates(self) -> list[tuple[str, int]]:
        """(provider, period) pairs to look at now: the period before the current one."""
        head = self.ledger.current_block()
        schedule = self.ledger.schedule
        current = schedule.period_of(head)
        if schedule.period_of(head + 1) != current:
            return []  # a report sent now would land in the next period: wait a block
        missed = current - 1
        if missed < 0 or self.indexer.cursor < schedule.period_start(current):
            return []  # period ``missed`` is not fully indexed yet
        with self.engine.connect() as conn:
            done = {
                (p, int(n))
                for p, n in conn.execute(
                    select(db.claims.c.provider, db.claims.c.period).where(
                        db.claims.c.period == missed
                    )
                )
            }
        return [
            (provider, missed)
            for provider, book in sorted(self.indexer.books.items())
            if book.live_leaves(missed) > 0
            and not self.indexer.proven(provider, missed)
            and (provider, missed) not in done
        ]

    def step(self) -> list[Claim]:
        """Look at every candidate and report the worthwhile ones."""
        if not self.config.enabled:
            return []
        claims = []
        for provider, period in self.candidates():
            claim = self.claim(provider, period)
            self._record(claim)  # at once: a later candidate's RPC failure must not lose it
            claims.append(claim)
        return claims

    def claim(self, provider: str, period: int) -> Claim:
        """Check, price and (if worth it) report one missed period."""
        ledger = self.ledger
        try:
            bounty = ledger.fault_bounty(provider, period)
            if bounty == 0:
                if ledger.is_reported(provider, period):
                    return Claim(provider, period, "taken", 0, 0, None, "already reported")
                if ledger.is_proven(provider, period):
                    return Claim(provider, period, "proven", 0, 0, None, "proven after all")
                return Claim(provider, period, "late", 0, 0, None, "not reportable now")
            gas_cost = self._gas_cost(provider, period)
            value = int(bounty * self.config.token_price_eth)
            if value < gas_cost * self.config.min_profit_ratio:
                detail = f"bounty worth {value} wei, gas {gas_cost} wei"
                return Claim(provider, period, "unprofitable", bounty, 0, None, detail)
            receipt = ledger.report_fault(provider, period)
        except FaultAlreadyReported as exc:
            cost = self._spent(exc.tx_hash)
            log.info("bounty lost race provider=%s period=%d gas_wei=%d", provider, period, cost)
            return Claim(provider, period, "lost", 0, cost, exc.tx_hash, exc.reason)
        except PeriodAlreadyProven as exc:
            return Claim(
                provider, period, "proven", 0, self._spent(exc.tx_hash), exc.tx_hash, exc.reason
            )
        except OutsideWindow as exc:
            return Claim(
                provider, period, "late", 0, self._spent(exc.tx_hash), exc.tx_hash, exc.reason
            )
        except (Reverted, TransactionFailed) as exc:
            log.warning("bounty report failed provider=%s period=%d: %s", provider, period, exc)
            cost = self._spent(exc.tx_hash)
            return Claim(provider, period, "failed", 0, cost, exc.tx_hash, str(exc))
        paid = receipt.first(FaultReported)
        cost = self._spent(receipt.tx_hash)
        log.info(
            "bounty won provider=%s period=%d bounty=%d gas_wei=%d tx=%s",
            provider,
            period,
            paid.bounty,
            cost,
            receipt.tx_hash,
        )
        return Claim(provider, period, "won", paid.bounty, cost, receipt.tx_hash, "")

    def _gas_cost(self, provider: str, period: int) -> int:
        """Wei the report would cost at the current fees (estimate x max fee per gas)."""
        fn = self.ledger.market.functions.report_fault(provider, period)
        web3 = self.ledger.web3
        gas = rpc_guard(
            lambda: int(fn.estimate_gas({"from": self.ledger.address}, block_identifier="pending"))
        )
        block: Any = rpc_guard(lambda: web3.eth.get_block("latest"))
        base_fee = int(block.get("baseFeePerGas", 0))
        return gas * (2 * base_fee + rpc_guard(lambda: int(web3.eth.max_priority_fee)))

    def _spent(self, tx_hash: str | None) -> int:
        """Wei a mined transaction cost (0: it was never mined)."""
        if tx_hash is None:
            return 0
        web3 = self.ledger.web3
        try:
            receipt: Any = rpc_guard(lambda: web3.eth.get_transaction_receipt(tx_hash))  # type: ignore[arg-type]
        except (LedgerError, TransactionNotFound):
            return 0
        return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])

    def _record(self, claim: Claim) -> None:
        with db.transaction(self.engine) as conn:
            conn.execute(
                insert(db.claims).values(
                    provider=claim.provider,
                    period=claim.period,
                    status=claim.status,
                    tx_hash=claim.tx_hash,
                    bounty=str(claim.bounty),
                    gas_cost_wei=str(claim.gas_cost_wei),
                    detail=claim.detail[:500],
                    at=time.time(),
                )
            )
