"""
Helpers of the prover tests: a devnet with a fresh market, prover homes, and a small deal
client (``contracts.offers`` over a real stream, the piece pushed by the real swarm).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import create_engine, make_url, text

from contracts.chain import LedgerClient, connect, new_nonce
from contracts.deployment import TOKEN_UNIT, Deployment, MarketParams
from contracts.devnet import deploy, dev_accounts, fund
from contracts.offers import (
    DEAL_PROTOCOL,
    DealActivated,
    DealDecision,
    DealFailed,
    ProposeDeal,
    price_for,
)
from contracts.spec.deal import DealProposal
from contracts.txs import TxConfig
from node.identity import NodeKey
from node.swarm.service import Swarm
from node.swarm.store import FilePieceStore
from node.transport import Host
from prover.config import ProverConfig
from prover.home import Home, init_home

TOKEN = TOKEN_UNIT
TEST_DATABASE_ENV = "DEPOT_TEST_DATABASE_URL"
"""A PostgreSQL server URL: the daemon and database tests then run against it."""
PASSPHRASE = "correct horse battery staple"
TEST_PARAMS = MarketParams(
    period_blocks=8,
    challenges=16,
    min_stake=100 * TOKEN,
    unbonding_periods=1,
    max_consecutive_misses=3,
    miss_slash_bps=1_000,
    bounty_bps=5_000,
    max_piece_size=64 << 20,
)
"""Short periods (8 blocks) keep a daemon test to a few seconds per period."""
FAST_TX = TxConfig(resubmit_after=3.0, poll_interval=0.05, rpc_timeout=5.0)


@dataclass
class Devnet:
    url: str
    deployment: Deployment
    deployer: LocalAccount
    provider: LocalAccount
    client: LocalAccount
    deployment_path: Path

    def ledger(self, account: LocalAccount | None = None, url: str | None = None) -> LedgerClient:
        return LedgerClient(url or self.url, self.deployment, account, tx_config=FAST_TX)


def make_devnet(url: str, tmp: Path, params: MarketParams = TEST_PARAMS, index: int = 1) -> Devnet:
    """Deploy a fresh market on the anvil at ``url``; fund a provider and a client."""
    web3 = connect(url)
    accounts = dev_accounts(10)
    deployer = accounts[0]
    deployment = deploy(web3, deployer, params, tx_config=FAST_TX)
    provider, client = accounts[index], accounts[index + 4]
    fund(web3, deployment, deployer, [provider.address, client.address], tokens=10_000 * TOKEN)
    path = tmp / "deployment.json"
    deployment.save(path)
    return Devnet(url, deployment, deployer, provider, client, path)


def fresh_database_url() -> str:
    """
    "" (SQLite in the home) unless ``$DEPOT_TEST_DATABASE_URL`` names a server: then a new,
    empty database on it, so that the daemon tests also run against PostgreSQL.
    """
    server = os.environ.get(TEST_DATABASE_ENV)
    if not server:
        return ""
    name = f"prover_{secrets.token_hex(6)}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return str(make_url(server).set(database=name).render_as_string(hide_password=False))


def fast_config(**sections: dict[str, Any]) -> ProverConfig:
    """A configuration for tests: ephemeral ports, fast polling, small limits."""
    config = ProverConfig()
    base: dict[str, dict[str, Any]] = {
        "chain": {
            "poll_interval": 0.1,
            "retry_initial": 0.1,
            "retry_max": 0.5,
            "rpc_timeout": 3.0,
            "resubmit_after": 3.0,
            "stake": "1000",
        },
        "p2p": {"listen": "127.0.0.1:0", "directory_interval": 0.5},
        "storage": {"capacity": "256 MiB", "reserve": 0, "scrub_rate": "4 MiB"},
        "offer": {
            "price_per_gib_period": "1",
            "collateral_per_gib": "10",
            "min_expiry_blocks": 4,
            "push_timeout": 30.0,
            "ask_interval": 2.0,
        },
        "proving": {"settle_interval_periods": 2, "cross_check_periods": 1},
        "api": {"listen": "127.0.0.1:0"},
        "log": {"level": "debug"},
        "database": {"url": fresh_database_url()},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    for name, values in base.items():
        config = config.with_values(name, **values)
    return config.validate()


def make_home(root: Path, devnet: Devnet, config: ProverConfig | None = None) -> Home:
    """An initialised prover home using the devnet's provider account."""
    home = Home(root)
    init_home(
        home,
        config or fast_config(),
        devnet.deployment_path,
        PASSPHRASE,
        private_key=bytes(devnet.provider.key),
    )
    return home


def random_piece(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size) if size < 1 << 20 else os.urandom(size)


class DealClient:
    """A client that makes deals with a prover over the real protocols."""

    def __init__(self, devnet: Devnet, directory: Path) -> None:
        self.devnet = devnet
        self.ledger = devnet.ledger(devnet.client)
        self.store = FilePieceStore(directory)
        self.host = Host(NodeKey.generate())
        self.swarm = Swarm(self.host, store=self.store)

    async def start(self) -> DealClient:
        await self.host.listen("127.0.0.1", 0)
        await asyncio.to_thread(self.ledger.approve)
        return self

    async def close(self) -> None:
        await self.swarm.close()
        await self.host.close()
        self.store.close()

    def proposal(
        self,
        provider: str,
        root: bytes,
        size: int,
        *,
        periods: int = 4,
        price_per_gib: int = TOKEN,
        collateral_per_gib: int = 10 * TOKEN,
        expiry_blocks: int = 60,
    ) -> DealProposal:
        head = self.ledger.current_block()
        return DealProposal(
            client=self.ledger.address,
            provider=provider,
            piece_root=root,
            piece_size=size,
            price_per_period=price_for(size, price_per_gib),
            periods=periods,
            collateral=price_for(size, collateral_per_gib),
            nonce=new_nonce(),
            expiry_block=head + expiry_blocks,
        )

    async def deal(
        self,
        peer: tuple[bytes, tuple[str, int]],
        provider: str,
        piece: bytes,
        *,
        push: bool = True,
        proposal: DealProposal | None = None,
        signature: bytes | None = None,
        **kw: Any,
    ) -> object:
        """Propose, push, and return the provider's last answer (decision, activation, failure)."""
        root = self.store.add(piece)
        proposal = proposal or await asyncio.to_thread(
            self.proposal, provider, root, len(piece), **kw
        )
        signature = signature or self.ledger.sign_proposal(proposal)
        peer_id, addr = peer
        stream = await self.host.open_stream(peer_id, [addr], DEAL_PROTOCOL)
        try:
            await stream.send_msg(ProposeDeal.of(proposal, signature))
            decision = await asyncio.wait_for(stream.recv_msg("deal"), 30)
            assert isinstance(decision, DealDecision), decision
            if not decision.accepted or not push:
                return decision
            await self.swarm.push(peer_id, [addr], root)
            result = await asyncio.wait_for(stream.recv_msg("deal"), 60)
            assert isinstance(result, DealActivated | DealFailed), result
            return result
        finally:
            stream.reset("done")


def peer_of(info: dict[str, Any]) -> tuple[bytes, tuple[str, int]]:
    """(node id, address) of a daemon from its ready information."""
    host, _, port = info["p2p"].rpartition(":")
    return bytes.fromhex(info["node_id"]), (host, int(port))
