"""The HTTP API over an indexed history (FastAPI's test client, no server)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import Engine

from market.auditor.api import ApiState, create_app
from node.metrics import Registry
from tests.auditor.helpers import Chain, make_indexer
from tests.auditor.test_indexer import proving_history


class SyncClient:
    """GET requests straight into the ASGI app (httpx's ASGI transport, no server)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://auditor") as c:
                return await c.get(path, params=params)

        return asyncio.run(fetch())


def test_the_api_serves_what_was_indexed(chain: Chain, engine: Engine) -> None:
    prover = proving_history(chain)
    make_indexer(chain, engine).run_until(chain.head)
    registry = Registry()
    registry.counter("depot_auditor_example_total", "an example").inc()
    app = create_app(ApiState(engine, chain.deployment, registry, head=lambda: 99))
    client = SyncClient(app)

    status = client.get("/api/status").json()
    assert status["counts"]["proofs"] == 4 and status["head"] == 99
    assert status["lag_blocks"] == 99 - status["indexed_through_block"]
    newest = client.get("/api/proofs", params={"limit": 1}).json()
    assert len(newest) == 1 and newest[0]["chain_accepted"] and newest[0]["failed"] == []
    mine = client.get("/api/proofs", params={"provider": prover.address}).json()
    assert len(mine) == 4 and any(p["failed"] == [3, 17] for p in mine)
    assert client.get("/api/proofs", params={"limit": 5000}).status_code == 422
    assert client.get("/api/alarms").json() == client.get("/api/claims").json() == []
    assert client.get("/api/retrievals").json() == []
    record = client.get(f"/api/providers/{prover.address.lower()}").json()
    assert record["address"] == prover.address and record["proofs"]["rejected_transactions"] == 2
    assert client.get("/api/providers/0x" + "00" * 20).status_code == 404
    assert client.get("/api/reputation").json()["schema"] == "depot.auditor.reputation/1"
    assert "<svg" in client.get("/report").text
    assert "depot_auditor_example_total 1" in client.get("/metrics").text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/status", "/api/reputation", "/api/proofs", "/metrics", "/report"} <= set(paths)
