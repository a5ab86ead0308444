"""The daemon's loops together: it indexes, reports a missed proof, probes, serves metrics."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from pathlib import Path

import httpx
from sqlalchemy import Engine, select

from market.auditor import db
from market.auditor.bounty import BountyHunter
from market.auditor.config import AuditorConfig
from market.auditor.indexer import Indexer, IndexerConfig
from market.auditor.retrieval import RetrievalConfig
from market.auditor.rpc import RpcClient
from market.auditor.service import Auditor
from node.identity import NodeKey
from node.swarm.service import Swarm
from node.swarm.store import FilePieceStore
from node.transport import Host
from tests.auditor.helpers import Chain, Piece, Prover, client_ledger


def test_the_daemon_indexes_reports_and_probes(
    chain: Chain, engine: Engine, tmp_path: Path
) -> None:
    config = replace(
        AuditorConfig(),
        api="127.0.0.1:0",
        poll_interval=0.05,
        report_interval=0.2,
        indexer=IndexerConfig(confirmations=0),
        retrieval=RetrievalConfig(interval=0.1, deals_per_round=1, timeout=5),
    )

    async def main() -> None:
        store = FilePieceStore(tmp_path / "store")
        piece = Piece(random.Random(3).randbytes(300_000))
        store.add(piece.data)
        provider_host = Host(NodeKey.generate())
        port = (await provider_host.listen("127.0.0.1", 0))[1]
        swarm = Swarm(provider_host, store)
        prover = Prover(chain, chain.accounts[2], random.Random(4))
        prover.register(endpoint=f"127.0.0.1:{port}", node_id=provider_host.node_id)
        prover.take_deal(client_ledger(chain, chain.accounts[1]), piece=piece)
        missed = chain.period() + 1
        chain.to_window(missed + 1)  # the provider never proves `missed`

        indexer = Indexer(
            engine,
            RpcClient(chain.url),
            chain.deployment,
            chain.ledger().market.abi,
            config.indexer,
        )
        ledger = chain.ledger(chain.accounts[6])
        ready: list[dict[str, object]] = []
        auditor = Auditor(
            config=config,
            home=tmp_path / "home",
            engine=engine,
            deployment=chain.deployment,
            indexer=indexer,
            hunter=BountyHunter(engine, ledger, indexer),
            node_key=NodeKey.generate(),
            ledger=ledger,
            ready=ready.append,
        )
        task = asyncio.ensure_future(auditor.run())

        def claims_and_probes() -> tuple[list[str], list[str]]:
            with engine.connect() as conn:
                claims = [r.status for r in conn.execute(select(db.claims))]
                probes = [r.outcome for r in conn.execute(select(db.retrievals))]
            return claims, probes

        deadline = time.monotonic() + 30
        while claims_and_probes()[0] == [] or claims_and_probes()[1] == []:
            assert time.monotonic() < deadline, claims_and_probes()
            assert not task.done()
            await asyncio.sleep(0.1)
        claims, probes = claims_and_probes()
        assert claims == ["won"] and probes[0] == "ok"
        api = str(ready[0]["api"])
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{api}/metrics")).text
            record = (await http.get(f"{api}/api/providers/{prover.address}")).json()
        assert 'depot_auditor_claims_total{status="won"} 1' in metrics
        assert record["faults"]["reported"] in (0, 1)  # indexed once the report is confirmed
        assert record["retrieval"]["ok"] >= 1
        auditor.stop()
        await asyncio.wait_for(task, 30)
        await swarm.close()
        await provider_host.close()
        assert (tmp_path / "home" / "report" / "report.html").exists()

    asyncio.run(main())
