"""
Deal proposals: the EIP-712 typed data a client signs, as the reference specification.

A client proposes a deal off chain by signing a ``DealProposal`` under EIP-712
(https://eips.ethereum.org/EIPS/eip-712); the provider submits it with
``accept_deal(proposal, signature)``. The contract (``contracts/src/deals.vy``) computes the
same digest and recovers the signer with ``ecrecover``, rejecting high-``s`` signatures
(EIP-2). The domain binds the signature to one market on one chain:

    EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)
    name = "Depot", version = "1", chainId, verifyingContract = the market's address

    digest = keccak256(0x19 0x01 || domainSeparator || hashStruct(proposal))

Nonces are single-use per client. They need not be sequential: a client draws random
256-bit nonces so that it can propose to many providers at once, and may revoke an unused
one with ``cancel_nonce``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eth_hash.auto import keccak

DOMAIN_NAME: Final = "Depot"
DOMAIN_VERSION: Final = "1"

EIP712_DOMAIN_TYPE: Final = (
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
DEAL_PROPOSAL_TYPE: Final = (
    "DealProposal(address client,address provider,bytes32 pieceRoot,uint64 pieceSize,"
    "uint256 pricePerPeriod,uint32 periods,uint256 collateral,uint256 nonce,uint64 expiryBlock)"
)

EIP712_DOMAIN_TYPEHASH: Final = keccak(EIP712_DOMAIN_TYPE.encode())
DEAL_PROPOSAL_TYPEHASH: Final = keccak(DEAL_PROPOSAL_TYPE.encode())

UINT32_MAX: Final = 2**32 - 1
UINT64_MAX: Final = 2**64 - 1
UINT256_MAX: Final = 2**256 - 1


class DealError(ValueError):
    """A proposal field outside its EIP-712 type (bad address, overflowing integer...)."""


def _address_bytes(address: str) -> bytes:
    """The 20 bytes of a ``0x``-prefixed hex address (checksum not required)."""
    raw = address.removeprefix("0x")
    if len(raw) != 40:
        raise DealError(f"not a 20-byte hex address: {address!r}")
    try:
        return bytes.fromhex(raw)
    except ValueError as exc:
        raise DealError(f"not a hex address: {address!r}") from exc


def _word(value: int, bits: int = 256) -> bytes:
    """ABI encoding of an unsigned integer of ``bits`` bits: one big-endian 32-byte word."""
    if not 0 <= value < 2**bits:
        raise DealError(f"{value} does not fit in uint{bits}")
    return value.to_bytes(32, "big")


@dataclass(frozen=True)
class DealProposal:
    """A client's offer to one provider; every field is signed."""

    client: str
    """The client's address: it signs, pays the escrow and receives refunds."""
    provider: str
    """The only address that may accept the proposal."""
    piece_root: bytes
    """The piece's 32-byte Merkle root (contracts.spec.commitment.merkle_root)."""
    piece_size: int
    """The piece's size in bytes (uint64); its leaf count is ceil(size / 1024)."""
    price_per_period: int
    """Tokens paid to the provider per proven period (uint256)."""
    periods: int
    """Number of proving periods the deal lasts (uint32)."""
    collateral: int
    """Provider stake locked for the deal and slashed on faults (uint256)."""
    nonce: int
    """Single-use per client (uint256); random so that proposals can be made in parallel."""
    expiry_block: int
    """Last block in which the proposal may be accepted (uint64)."""

    def __post_init__(self) -> None:
        _address_bytes(self.client)
        _address_bytes(self.provider)
        if len(self.piece_root) != 32:
            raise DealError(f"piece root must be 32 bytes, not {len(self.piece_root)}")
        _word(self.piece_size, 64)
        _word(self.price_per_period)
        _word(self.periods, 32)
        _word(self.collateral)
        _word(self.nonce)
        _word(self.expiry_block, 64)

    def as_tuple(self) -> tuple[str, str, bytes, int, int, int, int, int, int]:
        """The ABI tuple for ``accept_deal`` and ``proposal_digest``, in field order."""
        return (
            self.client,
            self.provider,
            self.piece_root,
            self.piece_size,
            self.price_per_period,
            self.periods,
            self.collateral,
            self.nonce,
            self.expiry_block,
        )

    def escrow(self) -> int:
        """Tokens the client must allow the market to pull: price per period x periods."""
        return self.price_per_period * self.periods


def domain_separator(chain_id: int, market: str) -> bytes:
    """
    ``hashStruct(EIP712Domain)`` for the market at ``market`` on chain ``chain_id``.

    Parameters
    ----------
    chain_id :
        The chain's EIP-155 id.
    market :
        The StorageMarket contract's address.
    """
    return keccak(
        EIP712_DOMAIN_TYPEHASH
        + keccak(DOMAIN_NAME.encode())
        + keccak(DOMAIN_VERSION.encode())
        + _word(chain_id)
        + _word(int.from_bytes(_address_bytes(market), "big"))
    )


def struct_hash(proposal: DealProposal) -> bytes:
    """``hashStruct(DealProposal)``: the type hash and every field, one 32-byte word each."""
    return keccak(
        DEAL_PROPOSAL_TYPEHASH
        + _word(int.from_bytes(_address_bytes(proposal.client), "big"))
        + _word(int.from_bytes(_address_bytes(proposal.provider), "big"))
        + proposal.piece_root
        + _word(proposal.piece_size, 64)
        + _word(proposal.price_per_period)
        + _word(proposal.periods, 32)
        + _word(proposal.collateral)
        + _word(proposal.nonce)
        + _word(proposal.expiry_block, 64)
    )


def signing_digest(proposal: DealProposal, chain_id: int, market: str) -> bytes:
    """
    The 32-byte digest the client signs (EIP-712 §"Specification of the eth_signTypedData").

    Returns
    -------
    digest : bytes
        ``keccak256(0x1901 || domain_separator || struct_hash)``.
    """
    return keccak(b"\x19\x01" + domain_separator(chain_id, market) + struct_hash(proposal))


def typed_data(proposal: DealProposal, chain_id: int, market: str) -> dict[str, Any]:
    """
    The proposal as EIP-712 JSON typed data (what ``eth_signTypedData_v4`` and
    ``eth_account.messages.encode_typed_data(full_message=...)`` take).
    """
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "DealProposal": [
                {"name": "client", "type": "address"},
                {"name": "provider", "type": "address"},
                {"name": "pieceRoot", "type": "bytes32"},
                {"name": "pieceSize", "type": "uint64"},
                {"name": "pricePerPeriod", "type": "uint256"},
                {"name": "periods", "type": "uint32"},
                {"name": "collateral", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "expiryBlock", "type": "uint64"},
            ],
        },
        "primaryType": "DealProposal",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": market,
        },
        "message": {
            "client": proposal.client,
            "provider": proposal.provider,
            "pieceRoot": proposal.piece_root,
            "pieceSize": proposal.piece_size,
            "pricePerPeriod": proposal.price_per_period,
            "periods": proposal.periods,
            "collateral": proposal.collateral,
            "nonce": proposal.nonce,
            "expiryBlock": proposal.expiry_block,
        },
    }
