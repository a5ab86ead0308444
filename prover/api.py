"""
The local HTTP API of a running prover (FastAPI, served by uvicorn in the daemon's own event
loop). It binds to localhost by default: it shows the operator's business and can request
the exit.

    GET  /status             registration, chain, period, storage, deals and proofs in brief
    GET  /deals[?state=&limit=]   deals, newest first      GET /deals/{deal_id}
    GET  /pieces             pieces in the blob store
    GET  /proofs[?limit=]    proving history: state, tx, block, margin to the deadline
    GET  /earnings           paid by settlements, accrued (proven, not yet settled)
    GET  /peers              connected peers and the DHT's view
    GET  /config             the effective configuration
    GET  /metrics            Prometheus text format (prover, DHT, swarm, transport)
    POST /exit               request the exit (the daemon withdraws after unbonding)
    GET  /openapi.json, /docs   the OpenAPI document and its browser
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from contracts.errors import LedgerError, Reverted
from prover.context import Context
from prover.errors import ChainUnavailable
from prover.lifecycle import DealState
from prover.views import deal_view, deals_view, earnings_view, pieces_view, proofs_view


class Deal(BaseModel):
    local_id: int
    deal_id: int | None
    state: str
    client: str
    piece_root: str
    piece_size: int
    price_per_period: str
    periods: int
    collateral: str
    start_period: int | None
    end_period: int | None
    stop_period: int | None
    retired_from: int | None
    settled_through: int
    paid: str
    accept_tx: str | None
    reason: str | None
    created_at: float


class Proof(BaseModel):
    period: int
    state: str
    live_leaves: int | None
    tx_hash: str | None
    block: int | None
    deadline_block: int
    window_blocks: int
    margin_blocks: int | None
    window_left: float | None
    build_seconds: float | None
    attempts: int
    reason: str | None


class Piece(BaseModel):
    root: str
    size: int
    state: str
    reason: str | None
    stored_at: float
    checked_at: float | None


class DealEarnings(BaseModel):
    deal_id: int
    state: str
    paid: str
    accrued: str
    settled_through: int


class Earnings(BaseModel):
    paid: str
    paid_tokens: str
    accrued: str
    accrued_tokens: str
    slashed: str
    settlements: int
    deals: list[DealEarnings]


def create_app(
    ctx: Context,
    *,
    status: Callable[[], dict[str, Any]],
    peers: Callable[[], dict[str, Any]],
    metrics: Callable[[], str],
    request_exit: Callable[[], Awaitable[dict[str, Any]]],
) -> FastAPI:
    """The API over a running daemon's context and a few live callbacks."""
    app = FastAPI(
        title="Depot prover",
        version="1",
        description="Local API of a Depot storage provider daemon.",
    )

    @app.exception_handler(ChainUnavailable)
    async def chain_unavailable(_: Request, exc: ChainUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"chain unavailable: {exc}"}, status_code=503)

    @app.exception_handler(LedgerError)
    async def chain_refused(_: Request, exc: LedgerError) -> JSONResponse:
        reason = exc.reason if isinstance(exc, Reverted) else str(exc)
        return JSONResponse({"detail": f"the chain refused: {reason}"}, status_code=409)

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/status")
    async def get_status() -> dict[str, Any]:
        """Registration, chain health, current period, storage, deal and proof counts."""
        return status()

    @app.get("/deals", response_model=list[Deal])
    def get_deals(
        state: DealState | None = None, limit: int = Query(1000, ge=1, le=100_000)
    ) -> list[dict[str, Any]]:
        """Deals, newest first, optionally in one state."""
        return deals_view(ctx.db, state.value if state else None, limit)

    @app.get("/deals/{deal_id}", response_model=Deal)
    def get_deal(deal_id: int) -> dict[str, Any]:
        """One deal by its on-chain id."""
        row = ctx.db.deal_by_chain_id(deal_id)
        if row is None:
            raise HTTPException(404, f"no deal {deal_id}")
        return deal_view(row)

    @app.get("/pieces", response_model=list[Piece])
    def get_pieces() -> list[dict[str, Any]]:
        """Pieces known to the blob store, with their state."""
        return pieces_view(ctx.db)

    @app.get("/proofs", response_model=list[Proof])
    def get_proofs(limit: int = Query(100, ge=1, le=100_000)) -> list[dict[str, Any]]:
        """Proving rounds, newest first, with their margin to the deadline."""
        return proofs_view(ctx.db, limit)

    @app.get("/earnings", response_model=Earnings)
    def get_earnings() -> dict[str, Any]:
        """Tokens paid by settlements and accrued by proven, unsettled periods."""
        return earnings_view(ctx.db)

    @app.get("/peers")
    async def get_peers() -> dict[str, Any]:
        """Connected peers and the DHT routing table."""
        return peers()

    @app.get("/config")
    def get_config() -> dict[str, Any]:
        """The effective configuration (token amounts in base units)."""
        return {
            section: {
                k: str(v) if isinstance(v, int) and v > 2**53 else v for k, v in values.items()
            }
            for section, values in ctx.config.as_dict().items()
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def get_metrics() -> str:
        """Prometheus text exposition format 0.0.4."""
        return metrics()

    @app.post("/exit")
    async def post_exit() -> dict[str, Any]:
        """Request the exit: no new deals; the stake is withdrawn after unbonding."""
        return await request_exit()

    return app
