"""
The off-chain half of a deal: provider asks and the deal negotiation protocol.

A provider advertises an *ask* as the payload of a signed provider record under the
well-known DHT key ``ASKS_KEY`` (node.kademlia); the record's signer is its node id, which
the ledger binds to the provider's address at registration, so an ask is trusted only
when the record policy finds that node id registered with stake.

A client makes a deal over the stream protocol ``DEAL_PROTOCOL``, one stream per deal:

    client                                  provider
      ProposeDeal(proposal, signature)  →
                                        ←   DealDecision(accepted, reason)
      (on acceptance: swarm push of the piece on its own stream; the provider verifies
       every chunk against the proposal's root before it stores and acknowledges it)
                                        ←   DealActivated(deal_id, tx_hash)   or DealFailed(reason)
      StoreManifest(manifest)           →   (optional, any time after activation)
                                        ←   ManifestStored(manifest_id)

A provider accepts on chain only after the piece is stored; escrow is pulled from the
client at that moment, so a deal that never started locks nothing.

Prices are in token base units. A deal's ``price_per_period`` for a piece of ``size``
bytes under an ask is ``price_for(size, ask.price_per_gib_period)`` (rounded up), its
collateral ``price_for(size, ask.collateral_per_gib)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Final

from eth_utils.address import to_checksum_address

from contracts.spec.deal import DealProposal
from node.wire import ExactLen, MaxLen, Uint, message

ASKS_KEY: Final = hashlib.sha256(b"depot/asks/v1").digest()
"""DHT key under which every provider publishes its ask as a provider record payload."""

DEAL_PROTOCOL: Final = "/depot/deal/1"
GIB: Final = 1 << 30

U256 = Annotated[int, Uint(256)]
"""A uint256 (token amount, nonce): sent as 32 bytes, since msgpack integers stop at 64 bits."""


def price_for(size: int, per_gib: int) -> int:
    """``ceil(size * per_gib / GiB)``: a per-GiB rate applied to a piece of ``size`` bytes."""
    return -(-size * per_gib // GIB)


@message("deal", 1)
@dataclass(frozen=True)
class Ask:
    """A provider's standing offer (the payload of its record under ``ASKS_KEY``)."""

    provider: Annotated[bytes, ExactLen(20)]
    """The provider's Ethereum address (the account registered on chain)."""
    chain_id: int
    market: Annotated[bytes, ExactLen(20)]
    """The StorageMarket contract the ask is valid for."""
    price_per_gib_period: U256
    """Tokens (base units) per GiB per proving period."""
    collateral_per_gib: U256
    """Stake the provider locks per GiB stored."""
    min_piece_size: int
    max_piece_size: int
    max_periods: int
    free_bytes: int
    issued_at: int
    """Unix time of publication; a newer ask replaces an older one."""


@message("deal", 2)
@dataclass(frozen=True)
class ProposeDeal:
    """A client's signed EIP-712 proposal, sent to the provider it names."""

    client: Annotated[bytes, ExactLen(20)]
    provider: Annotated[bytes, ExactLen(20)]
    piece_root: Annotated[bytes, ExactLen(32)]
    piece_size: int
    price_per_period: U256
    periods: int
    collateral: U256
    nonce: U256
    expiry_block: int
    signature: Annotated[bytes, ExactLen(65)]

    @classmethod
    def of(cls, proposal: DealProposal, signature: bytes) -> ProposeDeal:
        return cls(
            client=bytes.fromhex(proposal.client.removeprefix("0x")),
            provider=bytes.fromhex(proposal.provider.removeprefix("0x")),
            piece_root=proposal.piece_root,
            piece_size=proposal.piece_size,
            price_per_period=proposal.price_per_period,
            periods=proposal.periods,
            collateral=proposal.collateral,
            nonce=proposal.nonce,
            expiry_block=proposal.expiry_block,
            signature=signature,
        )

    def proposal(self) -> DealProposal:
        """The typed proposal, addresses checksummed (EIP-55, as web3.py requires of the
        ``accept_deal`` arguments); raises ``DealError`` for out-of-range fields."""
        return DealProposal(
            client=to_checksum_address(self.client),
            provider=to_checksum_address(self.provider),
            piece_root=self.piece_root,
            piece_size=self.piece_size,
            price_per_period=self.price_per_period,
            periods=self.periods,
            collateral=self.collateral,
            nonce=self.nonce,
            expiry_block=self.expiry_block,
        )


@message("deal", 3)
@dataclass(frozen=True)
class DealDecision:
    """The provider's answer to a proposal, before any byte of the piece moves."""

    accepted: bool
    reason: Annotated[str, MaxLen(512)]


@message("deal", 4)
@dataclass(frozen=True)
class DealActivated:
    """The piece is stored and the deal accepted on chain."""

    deal_id: int
    tx_hash: Annotated[bytes, ExactLen(32)]


@message("deal", 5)
@dataclass(frozen=True)
class DealFailed:
    """The provider could not complete an accepted proposal (bad upload, chain error)."""

    reason: Annotated[str, MaxLen(512)]


@message("deal", 6)
@dataclass(frozen=True)
class StoreManifest:
    """A signed file manifest, kept by the provider and served to anyone by id."""

    manifest: Annotated[bytes, MaxLen(64 * 1024)]


@message("deal", 7)
@dataclass(frozen=True)
class ManifestStored:
    manifest_id: Annotated[bytes, ExactLen(32)]


@message("deal", 8)
@dataclass(frozen=True)
class GetManifest:
    manifest_id: Annotated[bytes, ExactLen(32)]


@message("deal", 9)
@dataclass(frozen=True)
class ManifestReply:
    manifest: Annotated[bytes, MaxLen(64 * 1024)] | None
