"""
A real market on a real anvil for the auditor's tests: providers that register, take deals
over real piece data and prove with real proofs built from ``contracts.spec`` (the leaf and
its RFC 9162 audit path for every challenge ``LedgerClient.challenges`` names).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine
from web3 import Web3

from contracts.chain import LedgerClient, Receipt, connect, new_nonce
from contracts.deployment import Deployment, MarketParams
from contracts.devnet import Anvil, deploy, dev_accounts, fund, start_anvil
from contracts.spec import commitment
from contracts.spec.deal import DealProposal
from market.auditor.indexer import Indexer, IndexerConfig
from market.auditor.rpc import RpcClient, RpcConfig

TOKEN = 10**18
PARAMS = MarketParams(
    period_blocks=10,
    min_stake=100 * TOKEN,
    max_consecutive_misses=3,
    max_piece_size=1 << 22,
)
"""Short periods, the default 46 challenges, small pieces."""


@dataclass
class Piece:
    """A piece with its Merkle tree, to answer challenges."""

    data: bytes
    root: bytes = b""
    leaf_hashes: list[commitment.Hash32] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.leaf_hashes = [commitment.hash_leaf(x) for x in commitment.leaves_of(self.data)]
        self.root = commitment.root_of_nodes(self.leaf_hashes)

    @property
    def size(self) -> int:
        return len(self.data)

    def answer(self, index: int) -> tuple[bytes, list[bytes]]:
        leaf = commitment.pad_leaf(commitment.leaves_of(self.data)[index])
        return leaf, list(commitment.inclusion_proof(self.leaf_hashes, index))


@dataclass
class Chain:
    node: Anvil
    web3: Web3
    deployment: Deployment
    accounts: list[LocalAccount]

    @property
    def url(self) -> str:
        return self.node.url

    def ledger(self, account: LocalAccount | None = None) -> LedgerClient:
        return LedgerClient(self.web3, self.deployment, account)

    def mine(self, blocks: int) -> None:
        if blocks > 0:
            self.web3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]

    @property
    def head(self) -> int:
        return int(self.web3.eth.block_number)

    def period(self) -> int:
        """The period of the next block (where the next transaction lands)."""
        return self.deployment.schedule.period_of(self.head + 1)

    def to_window(self, period: int) -> None:
        """Mine so that the next transaction lands in ``period``'s proving window."""
        target = self.deployment.schedule.seed_block(period)  # head must be >= the seed block
        if self.head < target:
            self.mine(target - self.head)

    def to_period(self, period: int) -> None:
        """Mine so that the next transaction lands in the first block of ``period``."""
        target = self.deployment.schedule.period_start(period) - 1
        if self.head < target:
            self.mine(target - self.head)


def start_chain(params: MarketParams = PARAMS, accounts: int = 10, **anvil: Any) -> Chain:
    node = start_anvil(accounts=accounts, **anvil)
    try:
        web3 = connect(node.url)
        accs = dev_accounts(accounts)
        deployment = deploy(web3, accs[0], params)
        fund(web3, deployment, accs[0], [a.address for a in accs[1:]], tokens=1_000_000 * TOKEN)
    except BaseException:
        node.stop()
        raise
    return Chain(node, web3, deployment, accs)


class Prover:
    """A provider that keeps its pieces in memory and proves them honestly (or not)."""

    def __init__(self, chain: Chain, account: LocalAccount, rng: random.Random) -> None:
        self.chain = chain
        self.ledger = chain.ledger(account)
        self.address = self.ledger.address
        self.rng = rng
        self.pieces: dict[bytes, Piece] = {}

    def register(
        self,
        stake: int = 1_000 * TOKEN,
        endpoint: str = "127.0.0.1:1",
        node_id: bytes | None = None,
    ) -> None:
        self.ledger.approve()
        self.ledger.register(node_id or self.rng.randbytes(32), endpoint, stake)

    def take_deal(
        self,
        client: LedgerClient,
        size: int = 8 * 1024 + 100,
        *,
        periods: int = 20,
        price: int = TOKEN,
        collateral: int = 100 * TOKEN,
        piece: Piece | None = None,
    ) -> int:
        piece = piece or Piece(self.rng.randbytes(size))
        proposal = DealProposal(
            client=client.address,
            provider=self.address,
            piece_root=piece.root,
            piece_size=piece.size,
            price_per_period=price,
            periods=periods,
            collateral=collateral,
            nonce=new_nonce(),
            expiry_block=self.chain.head + 1_000,
        )
        deal_id = self.ledger.accept_deal(proposal, client.sign_proposal(proposal))
        self.pieces[piece.root] = piece
        return deal_id

    def proofs(self, corrupt: Iterable[int] = ()) -> list[tuple[bytes, list[bytes]]]:
        bad = set(corrupt)
        out = []
        for c in self.ledger.challenges(self.address):
            leaf, path = self.pieces[c.piece_root].answer(c.leaf)
            if c.i in bad:
                leaf = bytes([leaf[0] ^ 1]) + leaf[1:]
            out.append((leaf, path))
        return out

    def prove(self) -> Receipt:
        return self.ledger.submit_proof(self.proofs())


def client_ledger(chain: Chain, account: LocalAccount) -> LedgerClient:
    ledger = chain.ledger(account)
    ledger.approve()
    return ledger


def send_raw_proof(
    chain: Chain, account: LocalAccount, proofs: Sequence[tuple[bytes, Sequence[bytes]]]
) -> str:
    """Send a ``submit_proof`` with a fixed gas limit (no estimate: it may revert) and mine it."""
    market = chain.ledger().market
    data = market.encode_abi("submit_proof", args=[[(leaf, list(path)) for leaf, path in proofs]])
    tx = {
        "to": market.address,
        "data": data,
        "gas": 5_000_000,
        "nonce": chain.web3.eth.get_transaction_count(account.address),
        "chainId": chain.deployment.chain_id,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
        "type": 2,
    }
    signed = account.sign_transaction(tx)
    tx_hash = chain.web3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = chain.web3.eth.wait_for_transaction_receipt(tx_hash)
    return "0x" + bytes(receipt["transactionHash"]).hex()


FAST_RPC = RpcConfig(attempts=2, backoff=0.0)


def make_indexer(chain: Chain, engine: Engine, url: str | None = None, **config: Any) -> Indexer:
    config.setdefault("confirmations", 0)
    return Indexer(
        engine,
        RpcClient(url or chain.url, FAST_RPC, sleep=lambda _: None),
        chain.deployment,
        chain.ledger().market.abi,
        IndexerConfig(**config),
    )
