"""
Reputation: what the auditor knows about every provider, in one stable JSON document.

``build_reputation`` reads the database (never the chain) and returns the document whose
schema is ``SCHEMA`` (documented field by field in docs/auditor.md, "Reputation format").
The market's provider score reads it from the file ``auditor report`` writes or from the
daemon's ``GET /api/reputation``. Compatible changes only add fields; anything else bumps
the schema string.

Token amounts (stake, earnings, slashes, bounties) are decimal strings of base units: they
exceed what a JSON number holds exactly. Rates are floats in [0, 1], or ``null`` when there
is nothing to rate yet.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, Engine, select

from contracts.deployment import Deployment
from market.auditor import db
from market.auditor.indexer import load_books

SCHEMA: Final = "depot.auditor.reputation/1"
HISTORY_PERIODS: Final = 200
"""Periods of per-period history kept per provider and network-wide."""


@dataclass
class _Provider:
    node_id: str = ""
    endpoint: str = ""
    status: str = "active"
    stake: int = 0
    stake_series: list[tuple[int, int]] = field(default_factory=list)
    deals: set[int] = field(default_factory=set)
    earnings: int = 0
    slashed: int = 0
    bounties: int = 0
    reported: set[int] = field(default_factory=set)
    terminations: int = 0
    earnings_by_period: Counter[int] = field(default_factory=Counter)

    def set_stake(self, period: int, stake: int) -> None:
        self.stake = max(stake, 0)
        self.stake_series.append((period, self.stake))


def build_reputation(
    engine: Engine, deployment: Deployment, *, history: int = HISTORY_PERIODS
) -> dict[str, Any]:
    """The reputation document as of the indexer's cursor."""
    schedule = deployment.schedule
    with engine.connect() as conn:
        cursor_text = db.get_meta(conn, "next_block")
        cursor = int(cursor_text) if cursor_text else deployment.deploy_block
        books, proven = load_books(conn, cursor)
        providers = _replay(conn, schedule.period_of)
        proofs = _proof_counts(conn)
        alarms = Counter(p for (p,) in conn.execute(select(db.alarms.c.provider)) if p is not None)
        retrievals = _retrievals(conn)
    last_block = max(cursor - 1, deployment.deploy_block)
    current = schedule.period_of(last_block)
    closed = current - 1  # the last period whose proving window is over
    first_shown = max(0, current - history)

    network_periods: dict[int, dict[str, int]] = defaultdict(
        lambda: {"expected": 0, "proven": 0, "missed": 0, "reported": 0}
    )
    out: dict[str, Any] = {}
    for address in sorted(set(providers) | set(books)):
        p = providers.get(address, _Provider())
        book = books.get(address)
        expected = proven_n = 0
        history_rows = []
        for period in range(0, closed + 1):
            live = book.live_leaves(period) if book is not None else 0
            if live == 0:
                continue
            ok = (address, period) in proven
            expected += 1
            proven_n += ok
            net = network_periods[period]
            net["expected"] += 1
            net["proven"] += ok
            net["missed"] += not ok
            net["reported"] += period in p.reported
            if period >= first_shown:
                history_rows.append(
                    {
                        "period": period,
                        "live_leaves": live,
                        "proven": ok,
                        "reported": period in p.reported,
                        "earned": str(p.earnings_by_period.get(period, 0)),
                    }
                )
        live_deals = 0
        if book is not None:
            live_deals = sum(1 for s in book.slots.get(book.epoch, []) if s.weight(current) > 0)
        r = retrievals.get(address, [])
        latencies = sorted(x[1] for x in r if x[0] == "ok" and x[1] is not None)
        outcomes = Counter(x[0] for x in r)
        checked, rejected = proofs.get(address, (0, 0))
        out[address] = {
            "node_id": p.node_id,
            "endpoint": p.endpoint,
            "status": p.status,
            "stake": str(p.stake),
            "deals": {"total": len(p.deals), "live": live_deals},
            "proofs": {
                "expected": expected,
                "proven": proven_n,
                "missed": expected - proven_n,
                "success_rate": proven_n / expected if expected else None,
                "verified": checked,
                "rejected_transactions": rejected,
                "alarms": alarms.get(address, 0),
            },
            "faults": {"reported": len(p.reported), "bounties_paid": str(p.bounties)},
            "slashed": str(p.slashed),
            "earnings": str(p.earnings),
            "terminations": p.terminations,
            "retrieval": {
                "checks": len(r),
                "ok": outcomes.get("ok", 0),
                "success_rate": outcomes.get("ok", 0) / len(r) if r else None,
                "latency_ms_p50": _quantile(latencies, 0.5),
                "latency_ms_p90": _quantile(latencies, 0.9),
                "outcomes": dict(sorted(outcomes.items())),
            },
            "stake_history": [
                {"period": per, "stake": str(s)} for per, s in p.stake_series if per >= first_shown
            ],
            "history": history_rows,
        }
    return {
        "schema": SCHEMA,
        "generated_at": time.time(),
        "chain_id": deployment.chain_id,
        "market": deployment.market,
        "indexed_through_block": last_block,
        "current_period": current,
        "providers": out,
        "network": {
            "providers": len(out),
            "stake": str(sum(int(v["stake"]) for v in out.values())),
            "live_deals": sum(v["deals"]["live"] for v in out.values()),
            "earnings": str(sum(int(v["earnings"]) for v in out.values())),
            "alarms": sum(alarms.values()),
            "periods": [
                {"period": per, **counts}
                for per, counts in sorted(network_periods.items())
                if per >= first_shown
            ],
        },
    }


def _replay(conn: Connection, period_of: Callable[[int], int]) -> dict[str, _Provider]:
    """Registry and money events, in chain order, into per-provider totals."""
    providers: dict[str, _Provider] = defaultdict(_Provider)
    deal_owner: dict[int, str] = {}
    rows = conn.execute(
        select(db.events.c.block_number, db.events.c.kind, db.events.c.data).order_by(
            db.events.c.block_number, db.events.c.log_index
        )
    )
    for block, kind, data in rows:
        d = json.loads(data)
        period = period_of(block)
        if kind == "DealSettled":
            owner = deal_owner.get(d["deal_id"])
            if owner is None:
                continue
            p = providers[owner]
            p.earnings += d["provider_paid"]
            p.earnings_by_period[period] += d["provider_paid"]
            p.slashed += d["slashed"]
            if d["client_compensation"]:
                p.set_stake(period, p.stake - d["client_compensation"])
            continue
        if "provider" not in d:
            continue
        p = providers[d["provider"]]
        if kind == "ProviderRegistered":
            p.node_id, p.endpoint, p.status = d["node_id"], d["endpoint"], "active"
            p.set_stake(period, d["stake"])
        elif kind == "StakeAdded":
            p.set_stake(period, d["stake"])
        elif kind == "EndpointUpdated":
            p.endpoint = d["endpoint"]
        elif kind == "ExitRequested":
            p.status = "exiting"
        elif kind == "StakeWithdrawn":
            p.status = "withdrawn"
            p.set_stake(period, 0)
        elif kind == "DealAccepted":
            p.deals.add(d["deal_id"])
            deal_owner[d["deal_id"]] = d["provider"]
        elif kind == "FaultReported":
            p.reported.add(d["period"])
            p.bounties += d["bounty"]
            p.set_stake(period, p.stake - d["bounty"])
        elif kind == "ProviderTerminated":
            p.terminations += 1
    return dict(providers)


def _proof_counts(conn: Connection) -> dict[str, tuple[int, int]]:
    """(proof transactions re-verified, reverted ones) per provider."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for provider, accepted in conn.execute(
        select(db.proofs.c.provider, db.proofs.c.chain_accepted)
    ):
        out[provider][0] += 1
        out[provider][1] += not accepted
    return {k: (v[0], v[1]) for k, v in out.items()}


def _retrievals(conn: Connection) -> dict[str, list[tuple[str, float | None]]]:
    out: dict[str, list[tuple[str, float | None]]] = defaultdict(list)
    for provider, outcome, latency in conn.execute(
        select(db.retrievals.c.provider, db.retrievals.c.outcome, db.retrievals.c.latency_ms)
    ):
        out[provider].append((outcome, latency))
    return out


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def dumps(document: dict[str, Any]) -> str:
    """The document as written to disk and served: sorted keys, two-space indent."""
    return json.dumps(document, indent=2, sort_keys=True)
