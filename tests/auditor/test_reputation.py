"""Reputation and report from a real history: proofs, a miss, a reported fault, settlement."""

from __future__ import annotations

import json
import random
from pathlib import Path

from sqlalchemy import Engine

from market.auditor.bounty import BountyConfig, BountyHunter
from market.auditor.report import render_html, write_report
from market.auditor.reputation import SCHEMA, build_reputation
from tests.auditor.helpers import TOKEN, Chain, Prover, client_ledger, make_indexer


def test_reputation_matches_the_chain(chain: Chain, engine: Engine, tmp_path: Path) -> None:
    client = client_ledger(chain, chain.accounts[1])
    prover = Prover(chain, chain.accounts[2], random.Random(4))
    prover.register()
    deal = prover.take_deal(client, price=TOKEN, collateral=100 * TOKEN, periods=3)
    honest = Prover(chain, chain.accounts[3], random.Random(5))
    honest.register()
    honest.take_deal(client)
    first = chain.period() + 1
    chain.to_window(first)
    prover.prove()
    honest.prove()
    chain.to_window(first + 1)  # prover misses first + 1
    honest.prove()
    indexer = make_indexer(chain, engine)
    hunter = BountyHunter(engine, chain.ledger(chain.accounts[6]), indexer, BountyConfig())
    chain.to_window(first + 2)
    honest.prove()
    indexer.run_until(chain.head)
    [claim] = hunter.step()
    assert claim.status == "won"
    chain.to_window(first + 3)
    honest.prove()
    chain.to_window(first + 4)
    client.settle(deal)  # periods first .. first + 2 are closed
    indexer.run_until(chain.head)

    doc = build_reputation(engine, chain.deployment)
    assert doc["schema"] == SCHEMA and doc["chain_id"] == chain.deployment.chain_id
    bad, good = doc["providers"][prover.address], doc["providers"][honest.address]
    assert bad["proofs"]["proven"] == 1 and bad["proofs"]["missed"] >= 1
    assert bad["faults"] == {"reported": 1, "bounties_paid": str(claim.bounty)}
    info = chain.ledger().provider(prover.address)
    assert int(bad["stake"]) == info.stake  # replayed from events, equal to the contract's
    assert int(good["stake"]) == chain.ledger().provider(honest.address).stake
    assert int(bad["earnings"]) == TOKEN  # one proven period settled
    assert int(bad["slashed"]) > 0
    assert good["proofs"]["success_rate"] == 1.0 and good["proofs"]["missed"] == 0
    assert [h["proven"] for h in bad["history"]][:2] == [True, False]
    assert bad["retrieval"] == {
        "checks": 0,
        "ok": 0,
        "success_rate": None,
        "latency_ms_p50": None,
        "latency_ms_p90": None,
        "outcomes": {},
    }
    net = doc["network"]
    assert net["providers"] == 2 and net["alarms"] == 0
    assert {p["period"]: p["reported"] for p in net["periods"]}[first + 1] == 1

    json_path, html_path = write_report(tmp_path / "out", doc)
    assert json.loads(json_path.read_text())["providers"].keys() == doc["providers"].keys()
    page = html_path.read_text()
    assert page == render_html(doc)
    assert page.count("<svg") >= 4 + 2 * 2
    body = page.split("<body>")[1].replace("http://www.w3.org/2000/svg", "")
    assert "http" not in body and "<script" not in body
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind
