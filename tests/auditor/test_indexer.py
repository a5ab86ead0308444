"""The indexer against a real anvil: re-verified proofs, restarts, reorgs, an RPC that lies."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, func, select

from contracts.events import ProofSubmitted
from market.auditor import db
from market.auditor.errors import LocalError, RemoteError
from market.auditor.indexer import Indexer
from market.auditor.rpc import RpcClient
from tests.auditor.helpers import Chain, Prover, client_ledger, make_indexer, send_raw_proof


def rows(engine: Engine, table: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(table).order_by(*table.primary_key.columns)))


def proving_history(chain: Chain) -> Prover:
    """Two deals, one honest proof, one corrupt proof (reverted), one malformed call."""
    prover = Prover(chain, chain.accounts[2], random.Random(7))
    prover.register()
    client = client_ledger(chain, chain.accounts[1])
    prover.take_deal(client)
    prover.take_deal(client, size=300 * 1024 + 5)
    period = chain.period() + 1
    chain.to_window(period)
    prover.prove()
    chain.to_window(period + 1)
    send_raw_proof(chain, prover.ledger.account, prover.proofs(corrupt=[3, 17]))
    # A call that is not even ABI-decodable: the contract reverts, the auditor records it.
    market = chain.ledger().market
    account = prover.ledger.account
    tx = {
        "to": market.address,
        "data": bytes.fromhex(market.encode_abi("submit_proof", args=[[]])[2:10]) + b"\xff" * 40,
        "gas": 200_000,
        "nonce": chain.web3.eth.get_transaction_count(account.address),
        "chainId": chain.deployment.chain_id,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
        "type": 2,
    }
    chain.web3.eth.wait_for_transaction_receipt(
        chain.web3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    )
    prover.prove()  # the honest proof of the same period, after the failures
    chain.mine(3)
    return prover


def test_every_proof_is_reverified_and_failed_ones_are_found(chain: Chain, engine: Engine) -> None:
    prover = proving_history(chain)
    indexer = make_indexer(chain, engine)
    indexer.run_until(chain.head)

    proofs = rows(engine, db.proofs)
    accepted = [p for p in proofs if p.chain_accepted]
    rejected = sorted((p for p in proofs if not p.chain_accepted), key=lambda p: p.block_number)
    assert len(accepted) == 2 and all(p.valid and p.reason == "" for p in accepted)
    assert all(p.live_leaves == p.chain_live_leaves == 9 + 301 for p in accepted)
    assert len(rejected) == 2
    corrupt, malformed = rejected
    assert not corrupt.valid and json.loads(corrupt.failed) == [3, 17]
    assert not malformed.valid and malformed.reason.startswith("malformed")
    assert {p.provider for p in proofs} == {prover.address}
    assert rows(engine, db.alarms) == []

    # Every market event is indexed, in order, exactly once.
    chain_events = chain.ledger().events(chain.deployment.deploy_block, indexer.cursor - 1)
    indexed = rows(engine, db.events)
    assert [(e.block_number, e.log_index) for e in chain_events] == [
        (r.block_number, r.log_index) for r in indexed
    ]
    assert sum(isinstance(e, ProofSubmitted) for e in chain_events) == 2


def test_reindexing_after_a_crash_is_idempotent(chain: Chain, engine: Engine) -> None:
    proving_history(chain)
    indexer = make_indexer(chain, engine, batch_blocks=7)
    indexer.run_until(chain.head)
    before = (rows(engine, db.events), rows(engine, db.proofs))
    # A crash after the writes of a range but before the cursor moved is the same as
    # moving the cursor back: the range is indexed again over its own rows.
    with db.transaction(engine) as conn:
        db.set_meta(conn, "next_block", str(chain.deployment.deploy_block + 5))
    restarted = make_indexer(chain, engine, batch_blocks=5)
    restarted.run_until(chain.head)
    assert (rows(engine, db.events), rows(engine, db.proofs)) == before
    # Checkpoints now follow the new batch size; every stored hash is the chain's.
    for number, hash_ in rows(engine, db.blocks):
        assert "0x" + bytes(chain.web3.eth.get_block(number)["hash"]).hex() == hash_


def test_a_reorg_across_indexed_blocks_is_rolled_back(chain: Chain, engine: Engine) -> None:
    prover = Prover(chain, chain.accounts[2], random.Random(3))
    prover.register()
    client = client_ledger(chain, chain.accounts[1])
    prover.take_deal(client)
    snapshot = chain.web3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    # Fork A: a deal and a proof, indexed.
    doomed = prover.take_deal(client, size=2048)
    period = chain.period() + 1
    chain.to_window(period)
    prover.prove()
    indexer = make_indexer(chain, engine)
    indexer.run_until(chain.head)
    assert any(r.deal_id == doomed for r in rows(engine, db.events) if r.kind == "DealAccepted")
    fork_a_head = chain.head
    # Fork B: back to the snapshot, other transactions, a longer chain.
    chain.web3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    prover.pieces = {r: p for r, p in prover.pieces.items() if p.size != 2048}
    other = Prover(chain, chain.accounts[3], random.Random(4))
    other.register()
    other.take_deal(client)
    chain.mine(fork_a_head + 5 - chain.head)
    step = indexer.step()
    assert step.reorg_from is not None and step.reorg_from < fork_a_head
    indexer.run_until(chain.head)

    chain_events = chain.ledger().events(chain.deployment.deploy_block, indexer.cursor - 1)
    indexed = rows(engine, db.events)
    assert [(e.block_number, e.log_index, e.tx_hash) for e in chain_events] == [
        (r.block_number, r.log_index, r.tx_hash) for r in indexed
    ]
    assert rows(engine, db.proofs) == []  # the proof was only on fork A
    providers = {r.provider for r in indexed if r.kind == "ProviderRegistered"}
    assert providers == {prover.address, other.address}
    # The books follow: fork A's second deal is gone.
    assert len(indexer.books[prover.address].slots[0]) == 1


class CorruptingProxy:
    """An HTTP JSON-RPC proxy that garbles some replies (always the same ones for a seed)."""

    MODES = ("not-json", "http-500", "wrong-id", "flip-hex", "truncate", "drop")

    def __init__(self, upstream: str, seed: int, rate: float) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.corrupted = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                reply = requests.post(
                    upstream, data=body, headers={"Content-Type": "application/json"}
                ).content
                mode = proxy.rng.choice(proxy.MODES) if proxy.rng.random() < proxy.rate else None
                if mode is not None:
                    proxy.corrupted += 1
                if mode == "drop":
                    self.close_connection = True
                    return
                status = 500 if mode == "http-500" else 200
                if mode == "not-json":
                    reply = b"<html>bad gateway</html>"
                elif mode == "truncate":
                    reply = reply[: len(reply) // 2]
                elif mode == "wrong-id":
                    reply = reply.replace(b'"id":', b'"id":1000', 1)
                elif mode == "flip-hex":
                    i = reply.rfind(b"0x") + 5
                    if 5 <= i < len(reply):
                        c = reply[i : i + 1]
                        reply = reply[:i] + (b"1" if c != b"1" else b"2") + reply[i + 1 :]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(chain: Chain) -> Iterator[CorruptingProxy]:
    p = CorruptingProxy(chain.url, seed=11, rate=0.35)
    yield p
    p.close()


def test_garbage_from_the_rpc_is_never_indexed(
    chain: Chain, engine: Engine, proxy: CorruptingProxy, tmp_path: Any
) -> None:
    proving_history(chain)
    clean = db.open_engine(f"sqlite:///{tmp_path / 'clean.db'}")
    make_indexer(chain, clean).run_until(chain.head)

    lied_to = make_indexer(chain, engine, url=proxy.url, batch_blocks=6)
    errors = 0
    for _ in range(500):
        if lied_to.cursor > chain.head:
            break
        try:
            lied_to.step()
        except RemoteError:
            errors += 1  # the daemon backs off and tries again; nothing was written
    assert lied_to.cursor > chain.head
    # The garbage was there and caught (retried, or failed a step); a flipped digit in a
    # field the auditor does not use may go unnoticed, harmlessly.
    detected = lied_to.rpc.failures + lied_to._prefetch_rpc.failures + errors
    assert proxy.corrupted > 5 and detected > 0
    for table in (db.events, db.proofs):
        assert rows(engine, table) == rows(clean, table)
    assert rows(engine, db.alarms) == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.events)).scalar() > 0


def test_another_market_or_chain_is_refused(chain: Chain, engine: Engine) -> None:
    make_indexer(chain, engine)
    abi = chain.ledger().market.abi
    other = replace(chain.deployment, market="0x" + "11" * 20)
    with pytest.raises(LocalError, match="market"):
        Indexer(engine, RpcClient(chain.url), other, abi)
    elsewhere = replace(chain.deployment, chain_id=1)
    with pytest.raises(LocalError, match="serves chain 31337"):
        Indexer(engine, RpcClient(chain.url), elsewhere, abi)


def test_a_proof_sent_through_another_contract_is_unverifiable_not_invalid(
    chain: Chain, engine: Engine
) -> None:
    indexer = make_indexer(chain, engine)
    account = chain.accounts[2]
    tx = {
        "to": "0x" + "11" * 20,  # a contract wallet or proxy that calls the market itself
        "data": b"\x00" * 40,
        "gas": 100_000,
        "nonce": 0,
        "chainId": chain.deployment.chain_id,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 1,
        "type": 2,
    }
    raw = bytes(account.sign_transaction(tx).raw_transaction)
    block = chain.deployment.schedule.period_start(3) + 1
    verdict, _ = indexer._verdict(account.address, block, {}, raw)
    assert not verdict.checked and "unverifiable" in verdict.reason
