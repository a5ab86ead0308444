"""Receipts roots recomputed from a real node's receipts, and garbled logs refused."""

from __future__ import annotations

import dataclasses
import random

import pytest
from sqlalchemy import Engine, select

from market.auditor import db
from market.auditor.errors import RpcGarbage
from market.auditor.indexer import Indexer, IndexerConfig
from market.auditor.receipts import parse_receipt, receipts_root, rlp_encode, trie_root
from market.auditor.rpc import RawLog, RpcClient
from tests.auditor.helpers import Chain, Prover, client_ledger

EMPTY_TRIE = bytes.fromhex("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")


def test_rlp_and_the_empty_trie() -> None:
    assert rlp_encode(b"") == b"\x80" and rlp_encode(b"\x7f") == b"\x7f"
    assert rlp_encode([b"cat", b"dog"]) == bytes.fromhex("c88363617483646f67")
    assert rlp_encode(b"a" * 56)[:2] == b"\xb8\x38"
    assert trie_root([]) == EMPTY_TRIE


def test_roots_of_blocks_with_many_receipts_match_their_headers(chain: Chain) -> None:
    """One block of 140 transactions: branch, extension and leaf nodes, keys past rlp(127)."""
    web3 = chain.web3
    sender = web3.eth.accounts[9]
    web3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    for i in range(140):
        web3.eth.send_transaction({"from": sender, "to": web3.eth.accounts[i % 5], "value": i})
    chain.mine(1)
    web3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    rpc = RpcClient(chain.url)
    head = chain.head
    receipts = rpc.block_receipts([head])[head]
    assert len(receipts) == 140
    parsed = [parse_receipt(r) for r in receipts]
    assert receipts_root(parsed) == rpc.headers([head])[head].receipts_root
    # Every change to a receipt changes the root.
    changed = dataclasses.replace(parsed[77], cumulative_gas=parsed[77].cumulative_gas + 1)
    assert receipts_root([*parsed[:77], changed, *parsed[78:]]) != receipts_root(parsed)
    assert receipts_root(parsed[:-1]) != receipts_root(parsed)


class Garbling(RpcClient):
    """Serves the market's logs with one bit of one amount flipped (still decodable)."""

    def logs(self, address: bytes, from_block: int, to_block: int) -> list[RawLog]:
        out = super().logs(address, from_block, to_block)
        for i, entry in enumerate(out):
            if len(entry.data) > 64:
                data = entry.data[:63] + bytes([entry.data[63] ^ 1]) + entry.data[64:]
                out[i] = dataclasses.replace(entry, data=data)
                break
        return out


def test_a_garbled_event_is_refused_before_anything_is_written(
    chain: Chain, engine: Engine
) -> None:
    prover = Prover(chain, chain.accounts[2], random.Random(8))
    prover.register()
    prover.take_deal(client_ledger(chain, chain.accounts[1]))
    abi = chain.ledger().market.abi
    config = IndexerConfig(confirmations=0, prefetch=False)
    liar = Indexer(engine, Garbling(chain.url), chain.deployment, abi, config)
    with pytest.raises(RpcGarbage, match="receipts hold"):
        liar.step()
    with engine.connect() as conn:
        assert list(conn.execute(select(db.events))) == []
    # Without the check the garbled event would have been indexed as the chain's word.
    trusting = dataclasses.replace(config, verify_logs=False)
    Indexer(engine, Garbling(chain.url), chain.deployment, abi, trusting).step()
    with engine.connect() as conn:
        assert len(list(conn.execute(select(db.events)))) > 0
