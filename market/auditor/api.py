"""
The auditor's HTTP API (FastAPI; the OpenAPI document is at ``/openapi.json``, the docs at
``/docs``): the reputation document, per-provider records, proofs, alarms, fault claims,
retrieval checks, the HTML report and Prometheus ``/metrics``.

Everything is read from the database; the API never talks to the chain. The reputation is
rebuilt at most every ``reputation_ttl`` seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy import Engine, func, select

from contracts.deployment import Deployment
from market.auditor import db
from market.auditor.report import render_html
from market.auditor.reputation import SCHEMA, build_reputation
from node.metrics import Registry, render_prometheus

MAX_ROWS: Final = 1_000


@dataclass
class ApiState:
    """What the API reads from."""

    engine: Engine
    deployment: Deployment
    registry: Registry = field(default_factory=Registry)
    head: Callable[[], int | None] = lambda: None
    """The chain head as last seen by the daemon (None: not yet)."""
    reputation_ttl: float = 5.0
    _cached: tuple[float, dict[str, Any]] | None = None

    def reputation(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self.reputation_ttl:
            self._cached = (now, build_reputation(self.engine, self.deployment))
        return self._cached[1]


def _rows(state: ApiState, query: Any, limit: int = MAX_ROWS) -> list[dict[str, Any]]:
    with state.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query.limit(limit))]


def create_app(state: ApiState) -> FastAPI:
    """The FastAPI application over ``state``."""
    app = FastAPI(
        title="Depot auditor",
        version="1",
        description="Independent verification of the Depot storage market (docs/auditor.md).",
    )

    @app.get("/api/status", summary="Indexing progress and totals")
    def status() -> dict[str, Any]:
        with state.engine.connect() as conn:
            cursor = db.get_meta(conn, "next_block")
            counts = {
                name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in (
                    ("events", db.events),
                    ("proofs", db.proofs),
                    ("alarms", db.alarms),
                    ("claims", db.claims),
                    ("retrievals", db.retrievals),
                )
            }
        indexed = int(cursor) - 1 if cursor else None
        head = state.head()
        return {
            "chain_id": state.deployment.chain_id,
            "market": state.deployment.market,
            "indexed_through_block": indexed,
            "head": head,
            "lag_blocks": None if head is None or indexed is None else head - indexed,
            "counts": counts,
        }

    @app.get("/api/reputation", summary=f"The reputation document ({SCHEMA})")
    def reputation() -> dict[str, Any]:
        return state.reputation()

    @app.get("/api/providers/{address}", summary="One provider's reputation record")
    def provider(address: str) -> dict[str, Any]:
        for key, record in state.reputation()["providers"].items():
            if key.lower() == address.lower():
                return {"address": key, **record}
        raise HTTPException(404, f"no provider {address}")

    @app.get("/api/proofs", summary="Re-verified proof transactions, newest first")
    def proofs(
        provider: str | None = None, limit: int = Query(100, le=MAX_ROWS)
    ) -> list[dict[str, Any]]:
        query = select(db.proofs).order_by(db.proofs.c.block_number.desc())
        if provider:
            query = query.where(db.proofs.c.provider == provider)
        out = _rows(state, query, limit)
        for row in out:
            row["failed"] = json.loads(row["failed"])
        return out

    @app.get("/api/alarms", summary="Disagreements between the auditor and the chain")
    def alarms() -> list[dict[str, Any]]:
        return _rows(state, select(db.alarms).order_by(db.alarms.c.id.desc()))

    @app.get("/api/claims", summary="Fault reports sent (or not) and their outcome")
    def claims() -> list[dict[str, Any]]:
        return _rows(state, select(db.claims).order_by(db.claims.c.period.desc()))

    @app.get("/api/retrievals", summary="Retrieval spot checks, newest first")
    def retrievals(
        provider: str | None = None, limit: int = Query(100, le=MAX_ROWS)
    ) -> list[dict[str, Any]]:
        query = select(db.retrievals).order_by(db.retrievals.c.id.desc())
        if provider:
            query = query.where(db.retrievals.c.provider == provider)
        return _rows(state, query, limit)

    @app.get("/report", response_class=HTMLResponse, summary="The HTML report")
    def report() -> str:
        return render_html(state.reputation())

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    def metrics() -> str:
        return render_prometheus(state.registry)

    return app
