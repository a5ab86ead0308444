"""
One command's view of the world: the home, the account, the ledger, the provider directory
and (for commands that talk to providers) the P2P node.

    async with open_session(home, account=account, network=True) as s:
        ...   # s.ledger, s.chain, s.directory, s.node, s.address, s.secret
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts.chain import LedgerClient
from contracts.directory import ProviderDirectory
from market.errors import ConfigError
from market.home import Home, file_secret
from market.ledger import Chain
from market.network import MarketNode

log = logging.getLogger("market.session")


@dataclass
class Session:
    home: Home
    ledger: LedgerClient
    chain: Chain
    directory: ProviderDirectory
    account: LocalAccount | None = None
    _node: MarketNode | None = field(default=None, repr=False)

    @property
    def node(self) -> MarketNode:
        if self._node is None:
            raise ConfigError("this command runs without the P2P node")
        return self._node

    @property
    def address(self) -> str:
        if self.account is None:
            raise ConfigError("this command needs the account (passphrase)")
        return Web3.to_checksum_address(self.account.address)

    @property
    def secret(self) -> bytes:
        if self.account is None:
            raise ConfigError("this command needs the account (passphrase)")
        return file_secret(self.account)


@asynccontextmanager
async def open_session(
    home: Home, *, account: LocalAccount | None, network: bool
) -> AsyncIterator[Session]:
    """
    With the unlocked ``account`` (or none, for read-only commands), connect to the ledger, read the
    provider registry, and start the P2P node (if ``network``); close everything on exit.
    """
    ledger = await asyncio.to_thread(LedgerClient, home.rpc_url, home.deployment, account)
    chain = Chain(ledger)
    directory = ProviderDirectory(ledger)
    node: MarketNode | None = None
    try:
        await chain.run(directory.refresh)
        if network:
            node = MarketNode(home.node_key(), home.config.node, table_path=home.paths.kad_table)
            await node.start(directory.staked_node_ids(), directory.providers())
        yield Session(home, ledger, chain, directory, account, node)
    finally:
        if node is not None:
            await node.close()
        chain.close()
