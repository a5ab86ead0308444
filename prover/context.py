"""
What the daemon's parts share: configuration, stores, the chain, the node, and the few facts
learnt at run time (our registry record, the mirror of our challenge set).

The parts (``deals``, ``follower``, ``rounds``, ``upkeep``, ``announce``, ``scrub``) each
take the ``Context``; ``daemon.ProverNode`` builds it and runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts.chain import ProviderInfo, ProviderStatus
from contracts.deployment import Deployment, MarketParams
from contracts.spec.schedule import Schedule
from node.identity import NodeKey
from prover.admission import Terms
from prover.blobstore import BlobStore
from prover.challenges import SlotMirror
from prover.config import ProverConfig
from prover.db import Database
from prover.errors import ChainUnavailable
from prover.home import Home
from prover.lifecycle import HOLDING_STATES, DealState, PieceState
from prover.metrics import ProverMetrics

if TYPE_CHECKING:
    from node.kademlia.service import KademliaService
    from prover.chain import Chain


@dataclass
class Context:
    """The daemon's shared state (one per ``prover run``)."""

    config: ProverConfig
    home: Home
    db: Database
    store: BlobStore
    metrics: ProverMetrics
    node_key: NodeKey
    account: LocalAccount
    deployment: Deployment
    endpoint: str
    """``host:port`` registered on chain and advertised to peers."""
    chain: Chain | None = None
    """Set once the RPC endpoint answered and the chain was checked."""
    kad: KademliaService | None = None
    provider: ProviderInfo | None = None
    """Our registry record as last read."""
    mirror: SlotMirror = field(default_factory=SlotMirror)
    chain_reset: str | None = None
    """Why the chain cannot be used (another chain answers at the URL), if so."""

    @property
    def address(self) -> str:
        return Web3.to_checksum_address(self.account.address)

    @property
    def schedule(self) -> Schedule:
        return self.deployment.schedule

    @property
    def params(self) -> MarketParams:
        return self.deployment.params

    def require_chain(self) -> Chain:
        """The chain, or ``ChainUnavailable`` while it is not connected or was reset."""
        if self.chain is None or self.chain_reset is not None:
            raise ChainUnavailable(self.chain_reset or "not connected to the chain yet")
        return self.chain

    @property
    def head(self) -> int:
        return self.chain.head if self.chain is not None else 0

    @property
    def period(self) -> int:
        """The current period (as of the last head read)."""
        return self.schedule.period_of(max(self.head, self.deployment.deploy_block))

    @property
    def taking_deals(self) -> bool:
        return (
            self.provider is not None
            and self.provider.status == ProviderStatus.ACTIVE
            and self.chain_reset is None
        )

    def release_piece(self, root: bytes, local_id: int, reason: str) -> bool:
        """
        Delete a piece, its DHT record and its layer unless a deal other than ``local_id``
        still needs it (a deal in a holding state); returns whether it was deleted.
        """
        others = [
            r
            for r in self.db.deals_of_root(root)
            if r.id != local_id and DealState(r.state) in HOLDING_STATES
        ]
        if others or not self.store.has(root):
            return False
        if self.kad is not None:
            self.kad.stop_providing(root)
        self.store.delete(root)
        self.db.set_piece_state(root, PieceState.DELETED, reason)
        return True

    def terms(self) -> Terms:
        offer = self.config.offer
        return Terms(
            provider=self.address,
            chain_id=self.deployment.chain_id,
            market=self.deployment.market,
            price_per_gib_period=offer.price_per_gib_period,
            collateral_per_gib=offer.collateral_per_gib,
            min_piece_size=offer.min_piece_size,
            max_piece_size=min(offer.max_piece_size, self.params.max_piece_size),
            max_periods=offer.max_periods,
            min_expiry_blocks=offer.min_expiry_blocks,
        )
