"""Retrieval spot checks against real swarm-serving providers registered on a real anvil."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from sqlalchemy import Engine, select

from market.auditor import db
from market.auditor.retrieval import AddressBook, RetrievalChecker, RetrievalConfig, parse_endpoint
from node.identity import NodeKey
from node.swarm.service import Swarm
from node.swarm.store import FilePieceStore
from node.swarm.verify import CHUNK_SIZE
from node.transport import Host
from tests.auditor.helpers import Chain, Piece, Prover, client_ledger, make_indexer


def test_endpoints_parse() -> None:
    assert parse_endpoint("127.0.0.1:4001") == [("127.0.0.1", 4001)]
    assert parse_endpoint("[::1]:9") == [("::1", 9)]
    assert parse_endpoint("nowhere") == parse_endpoint("host:0") == parse_endpoint(":80") == []


def test_a_provider_that_proves_but_refuses_to_serve_shows_up(
    chain: Chain, engine: Engine, tmp_path: Path
) -> None:
    async def main() -> None:
        rng = random.Random(9)
        client = client_ledger(chain, chain.accounts[1])
        hosts: list[Host] = []
        swarms: list[Swarm] = []
        provers = []
        for i, serves in enumerate((True, False)):
            store = FilePieceStore(tmp_path / f"store{i}")
            piece = Piece(rng.randbytes(3 * CHUNK_SIZE + 5000))
            if serves:
                assert store.add(piece.data) == piece.root
            host = Host(NodeKey.generate())
            port = (await host.listen("127.0.0.1", 0))[1]
            hosts.append(host)
            swarms.append(Swarm(host, store))
            prover = Prover(chain, chain.accounts[2 + i], rng)
            prover.register(endpoint=f"127.0.0.1:{port}", node_id=host.node_id)
            prover.take_deal(client, piece=piece)
            provers.append(prover)
        period = chain.period() + 1
        chain.to_window(period)
        for p in provers:
            p.prove()  # both prove on chain

        indexer = make_indexer(chain, engine)
        indexer.run_until(chain.head)
        auditor = Host(NodeKey.generate())
        checker = RetrievalChecker(
            engine,
            auditor,
            indexer,
            AddressBook(engine),
            config=RetrievalConfig(deals_per_round=10, timeout=10),
            rng=random.Random(1),
        )
        try:
            assert len(checker.live_deals(period)) == 2
            results = await checker.round(period)
        finally:
            await auditor.close()
            for s in swarms:
                await s.close()
            for h in hosts:
                await h.close()
        by_provider = {r.provider: r for r in results}
        good, bad = by_provider[provers[0].address], by_provider[provers[1].address]
        assert good.outcome == "ok" and good.latency_ms is not None and good.latency_ms > 0
        assert bad.outcome == "refused" and "no such piece" in bad.detail
        with engine.connect() as conn:
            stored = {r.provider: (r.ok, r.outcome) for r in conn.execute(select(db.retrievals))}
        assert stored == {provers[0].address: (True, "ok"), provers[1].address: (False, "refused")}

        # A provider whose endpoint is gone is unreachable, not a crash.
        gone = RetrievalChecker(engine, Host(NodeKey.generate()), indexer, AddressBook(engine))
        root = next(iter(provers[0].pieces))
        result = await gone.probe(provers[0].address, 1, root, 3 * CHUNK_SIZE + 5000)
        await gone.host.close()
        assert result.outcome == "unreachable"

    asyncio.run(main())
