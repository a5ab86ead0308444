"""Fault bounties against a real anvil: a silent provider is reported; two auditors race."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, select

from market.auditor import db
from market.auditor.bounty import BountyConfig, BountyHunter, Claim
from tests.auditor.helpers import TOKEN, Chain, Prover, client_ledger, make_indexer

COLLATERAL = 100 * TOKEN
BOUNTY = COLLATERAL * 1_000 // 10_000 * 5_000 // 10_000  # PARAMS: 10% slash, 50% to reporter


def hunter(chain: Chain, engine: Engine, account_index: int) -> BountyHunter:
    indexer = make_indexer(chain, engine)
    return BountyHunter(
        engine, chain.ledger(chain.accounts[account_index]), indexer, BountyConfig()
    )


def silent_provider(chain: Chain) -> tuple[Prover, int]:
    """A provider with one deal that proves one period and then stops; returns the missed one."""
    prover = Prover(chain, chain.accounts[2], random.Random(5))
    prover.register()
    prover.take_deal(client_ledger(chain, chain.accounts[1]), collateral=COLLATERAL)
    proven = chain.period() + 1
    chain.to_window(proven)
    prover.prove()
    missed = proven + 1
    chain.to_period(missed + 1)  # the report window of the missed period
    chain.mine(1)
    return prover, missed


def claims(engine: Engine) -> list[tuple[str, int, str]]:
    with engine.connect() as conn:
        return [
            (r.provider, r.period, r.status)
            for r in conn.execute(select(db.claims).order_by(db.claims.c.period))
        ]


def test_a_provider_that_stops_proving_is_reported_and_the_bounty_arrives(
    chain: Chain, engine: Engine
) -> None:
    prover, missed = silent_provider(chain)
    h = hunter(chain, engine, 5)
    h.indexer.run_until(chain.head)
    before = h.ledger.balance_of(h.ledger.address)

    assert h.candidates() == [(prover.address, missed)]
    [claim] = h.step()
    assert claim.status == "won" and claim.bounty == BOUNTY and claim.gas_cost_wei > 0
    assert h.ledger.balance_of(h.ledger.address) == before + BOUNTY
    assert h.ledger.is_reported(prover.address, missed)
    assert claims(engine) == [(prover.address, missed, "won")]
    # The proven period was never a candidate, and the claim is not made twice.
    assert h.step() == []
    # Once indexed, the FaultReported event is in the database with the bounty.
    h.indexer.run_until(chain.head)
    with engine.connect() as conn:
        kinds = [r.kind for r in conn.execute(select(db.events))]
    assert "FaultReported" in kinds


def test_two_auditors_racing_for_one_fault_lose_at_most_one_transaction(
    chain: Chain, tmp_path: Path
) -> None:
    prover, missed = silent_provider(chain)
    hunters = [
        hunter(chain, db.open_engine(f"sqlite:///{tmp_path / f'a{i}.db'}"), 5 + i) for i in range(2)
    ]
    for h in hunters:
        h.indexer.run_until(chain.head)
        assert h.candidates() == [(prover.address, missed)]
    tokens = [h.ledger.balance_of(h.ledger.address) for h in hunters]
    eth = [chain.web3.eth.get_balance(h.ledger.address) for h in hunters]

    # Both check and send before either report is mined: one block takes both.
    chain.web3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    results: list[list[Claim]] = [[], []]
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, hunters[i].step()))
        for i in range(2)
    ]
    for t in threads:
        t.start()

    def pending() -> int:
        status = chain.web3.provider.make_request("txpool_status", [])  # type: ignore[arg-type]
        return int(status["result"]["pending"], 16)

    # Both reports are in the pool, or one hunter already gave up at its gas estimate.
    deadline = time.monotonic() + 30
    while pending() + sum(not t.is_alive() for t in threads) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    chain.web3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    chain.mine(1)
    for t in threads:
        t.join(timeout=60)

    outcome = sorted((r[0].status, i) for i, r in enumerate(results))
    assert [s for s, _ in outcome] == ["lost", "won"]
    winner, loser = outcome[1][1], outcome[0][1]
    lost = results[loser][0]
    assert results[winner][0].bounty == BOUNTY
    assert (
        hunters[winner].ledger.balance_of(hunters[winner].ledger.address) == tokens[winner] + BOUNTY
    )
    assert hunters[loser].ledger.balance_of(hunters[loser].ledger.address) == tokens[loser]
    # The loser spent at most the gas of its one failed transaction, and recorded it.
    spent = eth[loser] - chain.web3.eth.get_balance(hunters[loser].ledger.address)
    assert spent == lost.gas_cost_wei
    assert spent <= results[winner][0].gas_cost_wei * 2
    assert claims(hunters[loser].engine) == [(prover.address, missed, "lost")]
