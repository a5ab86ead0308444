"""
``market ls`` and ``market status ID``: each file's deals as the chain sees them, and the
file's health (``market.health``).

Per deal: its condition, the periods proven so far (``ProofSubmitted`` of its provider in
the deal's periods), the faults reported against it (``FaultReported``), what it paid the
provider and refunded the client (``DealSettled``), and when it ends. The chain is the
truth; the database only says which deals are ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.chain import DealInfo, LedgerClient
from contracts.errors import Reverted
from contracts.events import DealSettled, FaultReported, ProofSubmitted
from market.db import FileRecord, PlacementRecord
from market.errors import UnknownFile
from market.health import DealCondition, Health, classify, file_health, proven_in
from market.placement import State
from market.session import Session


@dataclass(frozen=True)
class DealView:
    placement: PlacementRecord
    deal: DealInfo | None
    """``None`` if the chain does not know the deal (another chain, a reset devnet)."""
    condition: DealCondition
    proven: int
    faults: int
    paid: int
    """Tokens paid to the provider so far."""
    refunded: int
    """Tokens refunded or paid as compensation to the client so far."""


@dataclass(frozen=True)
class FileStatus:
    file: FileRecord
    deals: list[DealView]
    health: Health
    period: int
    block: int


@dataclass
class ChainFacts:
    """What the chain says about a set of deals, read in one pass."""

    block: int
    period: int
    deals: dict[int, DealInfo | None] = field(default_factory=dict)
    proven: dict[str, set[int]] = field(default_factory=dict)
    """Provider (lowercase) -> periods proven."""
    faults: dict[str, set[int]] = field(default_factory=dict)
    paid: dict[int, int] = field(default_factory=dict)
    refunded: dict[int, int] = field(default_factory=dict)


def read_facts(ledger: LedgerClient, placements: list[PlacementRecord]) -> ChainFacts:
    """Deals, proofs, faults and settlements for ``placements`` (blocking)."""
    head = ledger.current_block()
    facts = ChainFacts(head, ledger.schedule.period_of(head))
    with_deal = [p for p in placements if p.deal_id is not None]
    if not with_deal:
        return facts
    for p in with_deal:
        assert p.deal_id is not None
        try:
            facts.deals[p.deal_id] = ledger.deal(p.deal_id)
        except Reverted:
            facts.deals[p.deal_id] = None
    start = max(min(p.signed_block for p in with_deal), ledger.deployment.deploy_block)
    ids = {p.deal_id for p in with_deal}
    providers = {p.provider.lower() for p in with_deal}
    for event in ledger.events(start, head, kinds=[ProofSubmitted, FaultReported, DealSettled]):
        if isinstance(event, ProofSubmitted) and event.provider.lower() in providers:
            facts.proven.setdefault(event.provider.lower(), set()).add(event.period)
        elif isinstance(event, FaultReported) and event.provider.lower() in providers:
            facts.faults.setdefault(event.provider.lower(), set()).add(event.period)
        elif isinstance(event, DealSettled) and event.deal_id in ids:
            facts.paid[event.deal_id] = facts.paid.get(event.deal_id, 0) + event.provider_paid
            facts.refunded[event.deal_id] = (
                facts.refunded.get(event.deal_id, 0)
                + event.client_refund
                + event.client_compensation
            )
    return facts


def deal_views(
    placements: list[PlacementRecord], facts: ChainFacts, miss_threshold: int, renew_before: int
) -> list[DealView]:
    out = []
    for p in placements:
        if p.deal_id is None:
            continue
        deal = facts.deals.get(p.deal_id)
        key = p.provider.lower()
        proven = facts.proven.get(key, set())
        if deal is None:
            out.append(DealView(p, None, DealCondition.LOST, 0, 0, 0, 0))
            continue
        condition = classify(deal, facts.period, proven, miss_threshold, renew_before)
        faults = sum(1 for f in facts.faults.get(key, ()) if deal.start <= f < deal.stop)
        out.append(
            DealView(
                p,
                deal,
                condition,
                proven_in(deal, facts.period, proven),
                faults,
                facts.paid.get(p.deal_id, 0),
                facts.refunded.get(p.deal_id, 0),
            )
        )
    return out


_SHOWN = (State.ACTIVE, State.ENDED, State.LOST)


async def file_status(s: Session, file_id: str) -> FileStatus:
    """Status of one file (``UnknownFile`` if this client has no such file)."""
    statuses = await file_statuses(s, [file_id])
    if not statuses:
        raise UnknownFile(f"no file {file_id} in this client's database")
    return statuses[0]


async def file_statuses(s: Session, file_ids: list[str] | None = None) -> list[FileStatus]:
    """Status of the given files (default: every file in the database)."""
    db = s.home.db
    files = [f for f in db.files() if file_ids is None or f.id in file_ids]
    placements = {f.id: db.placements(f.id, _SHOWN) for f in files}
    everything = [p for ps in placements.values() for p in ps]
    facts = await s.chain.run(read_facts, s.ledger, everything)
    cfg = s.home.config.repair
    out = []
    for f in files:
        views = deal_views(placements[f.id], facts, cfg.miss_threshold, cfg.renew_before_periods)
        conditions: dict[int, list[DealCondition]] = {}
        for v in views:
            conditions.setdefault(v.placement.share_index, []).append(v.condition)
        out.append(
            FileStatus(f, views, file_health(f.k, f.n, conditions), facts.period, facts.block)
        )
    return out
