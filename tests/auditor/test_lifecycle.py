"""The auditor's view of a provider's data set follows retirements and terminations."""

from __future__ import annotations

import random

from sqlalchemy import Engine, select

from market.auditor import db
from market.auditor.bounty import BountyConfig, BountyHunter
from market.auditor.indexer import Indexer, IndexerConfig
from market.auditor.rpc import RpcClient
from tests.auditor.helpers import PARAMS, Chain, Prover, client_ledger, make_indexer


def test_proofs_stay_verified_across_retirement_termination_and_a_new_epoch(
    chain: Chain, engine: Engine
) -> None:
    client = client_ledger(chain, chain.accounts[1])
    prover = Prover(chain, chain.accounts[2], random.Random(12))
    prover.register()
    short = prover.take_deal(client, size=3000, periods=2)
    prover.take_deal(client, size=9000, periods=30)
    indexer = make_indexer(chain, engine)
    hunter = BountyHunter(engine, chain.ledger(chain.accounts[6]), indexer, BountyConfig())

    first = chain.period() + 1
    for period in (first, first + 1, first + 2):
        chain.to_window(period)
        prover.prove()
        if period == first + 1:
            client.settle(short)  # its last period has come: the slot retires next period
    # From first + 2 on only the long deal is challenged; stop proving until terminated.
    missed = first + 3
    for period in range(missed, missed + PARAMS.max_consecutive_misses):
        chain.to_window(period + 1)
        indexer.run_until(chain.head)
        [claim] = hunter.step()
        assert claim.status == "won"
    # Terminated: a new deal starts the next epoch, and its proofs verify as well.
    prover.pieces.clear()
    prover.take_deal(client, size=5000)
    later = chain.period() + 1
    chain.to_window(later)
    prover.prove()
    chain.mine(2)
    indexer.run_until(chain.head)

    with engine.connect() as conn:
        proofs = list(conn.execute(select(db.proofs).order_by(db.proofs.c.block_number)))
        kinds = [r.kind for r in conn.execute(select(db.events.c.kind))]
        assert list(conn.execute(select(db.alarms))) == []
    assert [p.valid for p in proofs] == [True] * 4 and all(p.chain_accepted for p in proofs)
    assert [p.live_leaves for p in proofs] == [3 + 9, 3 + 9, 9, 5]
    assert "SlotRetired" in kinds and "ProviderTerminated" in kinds
    book = indexer.books[prover.address]
    assert book.epoch == 1 and book.live_leaves(later) == 5


def test_unprofitable_and_already_taken_faults_are_left_alone(chain: Chain, engine: Engine) -> None:
    client = client_ledger(chain, chain.accounts[1])
    prover = Prover(chain, chain.accounts[2], random.Random(13))
    prover.register()
    prover.take_deal(client)
    missed = chain.period() + 1
    chain.to_window(missed + 1)
    abi = chain.ledger().market.abi
    config = IndexerConfig(confirmations=0)
    cheap = BountyHunter(
        engine,
        chain.ledger(chain.accounts[6]),
        Indexer(engine, RpcClient(chain.url), chain.deployment, abi, config),
        BountyConfig(token_price_eth=1e-12),
    )
    cheap.indexer.run_until(chain.head)
    [claim] = cheap.step()
    assert claim.status == "unprofitable" and claim.bounty > 0 and claim.tx_hash is None
    chain.ledger(chain.accounts[7]).report_fault(prover.address, missed)  # someone else
    second = db.open_engine("sqlite://")
    late = BountyHunter(
        second,
        chain.ledger(chain.accounts[5]),
        Indexer(second, RpcClient(chain.url), chain.deployment, abi, config),
        BountyConfig(),
    )
    late.indexer.run_until(chain.head - 1)  # not yet aware of the report
    [claim] = late.step()
    assert claim.status == "taken" and claim.gas_cost_wei == 0
