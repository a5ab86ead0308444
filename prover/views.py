"""
What the API and the CLI show: plain dictionaries built from the database (and, inside a
running daemon, its live state). The CLI uses the running daemon's API when there is one
and falls back to these same functions over the database when there is not, so both paths
print the same fields.

Token amounts are decimal strings of base units (JSON numbers lose precision above 2**53).
"""

from __future__ import annotations

from typing import Any

from prover.config import format_amount
from prover.db import Database, Row
from prover.lifecycle import LIVE_STATES, DealState


def deal_view(row: Row) -> dict[str, Any]:
    return {
        "local_id": row.id,
        "deal_id": row.deal_id,
        "state": row.state,
        "client": row.client,
        "piece_root": row.piece_root,
        "piece_size": row.piece_size,
        "price_per_period": str(row.price_per_period),
        "periods": row.periods,
        "collateral": str(row.collateral),
        "start_period": row.start_period,
        "end_period": row.end_period,
        "stop_period": row.stop_period,
        "retired_from": row.retired_from,
        "settled_through": row.settled_through,
        "paid": str(row.paid),
        "accept_tx": row.accept_tx,
        "reason": row.reason,
        "created_at": row.created_at,
    }


def deals_view(db: Database, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    states = [DealState(state)] if state else None
    return [deal_view(r) for r in db.deals(states, limit=limit)]


def proof_view(row: Row) -> dict[str, Any]:
    margin = row.margin_blocks
    return {
        "period": row.period,
        "state": row.state,
        "live_leaves": row.live_leaves,
        "tx_hash": row.tx_hash,
        "block": row.block,
        "deadline_block": row.deadline_block,
        "window_blocks": row.window_blocks,
        "margin_blocks": margin,
        "window_left": (
            round(margin / row.window_blocks, 4)
            if margin is not None and row.window_blocks
            else None
        ),
        "build_seconds": row.build_seconds,
        "attempts": row.attempts,
        "reason": row.reason,
    }


def proofs_view(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    return [proof_view(r) for r in db.proofs(limit)]


def pieces_view(db: Database) -> list[dict[str, Any]]:
    return [
        {
            "root": p.root,
            "size": p.size,
            "state": p.state,
            "reason": p.reason,
            "stored_at": p.stored_at,
            "checked_at": p.checked_at,
        }
        for p in db.pieces()
    ]


def earnings_view(db: Database) -> dict[str, Any]:
    """
    Paid: what settlements paid us. Accrued: proven periods of live deals not settled yet,
    at each deal's price (an estimate until the report window closes and they are settled).
    """
    proven = {r.period for r in db.proofs(limit=100_000) if r.state == "confirmed"}
    per_deal = []
    paid_total = 0
    accrued_total = 0
    for row in db.deals():
        if row.deal_id is None:
            continue
        paid_total += row.paid
        accrued = 0
        if DealState(row.state) in LIVE_STATES and row.start_period is not None:
            first = max(row.settled_through, row.start_period)
            stop = row.stop_period if row.stop_period is not None else row.end_period
            accrued = sum(1 for p in range(first, stop) if p in proven) * row.price_per_period
        accrued_total += accrued
        per_deal.append(
            {
                "deal_id": row.deal_id,
                "state": row.state,
                "paid": str(row.paid),
                "accrued": str(accrued),
                "settled_through": row.settled_through,
            }
        )
    slashed = sum(s.slashed for s in db.settlements())
    return {
        "paid": str(paid_total),
        "paid_tokens": format_amount(paid_total),
        "accrued": str(accrued_total),
        "accrued_tokens": format_amount(accrued_total),
        "slashed": str(slashed),
        "settlements": len(db.settlements()),
        "deals": per_deal,
    }


def summary_view(db: Database) -> dict[str, Any]:
    """The database half of the status (counts)."""
    stored = [p for p in db.pieces() if p.state == "stored"]
    return {
        "deals": db.deal_counts(),
        "proofs": db.proof_counts(),
        "pieces": len(stored),
        "stored_bytes": sum(p.size for p in stored),
        "manifests": db.manifest_count(),
    }
