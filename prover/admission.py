"""
Deal admission: whether to take a client's proposal (sans-I/O).

Two pure steps, so that the cheap checks refuse junk before any chain read:

1. ``check_terms(msg, terms, free_bytes, duplicate)``: the proposal is well formed, names
   this provider, fits the ask (size, periods, price, collateral), leaves time to upload
   (expiry), is signed by its client (EIP-712 digest recovered exactly as
   ``contracts/src/deals.vy`` does, EIP-2 low-s and v in {27, 28}), and fits the free space.
2. ``check_chain(proposal, view, terms)``: with facts read from the chain just before (head
   block, the client's balance and allowance, the nonce, our registry record), the escrow
   can be pulled, the nonce is unused, the provider may take deals and has the free stake
   for the collateral.

Each failure is a ``ProposalRefused`` whose reason goes back to the client verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_checksum_address

from contracts.offers import ProposeDeal, price_for
from contracts.spec.deal import DealError, DealProposal, signing_digest
from prover.errors import ProposalRefused

SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
"""Signatures with ``s`` above ``n / 2`` are the malleable twins of valid ones (EIP-2)."""
SIGNATURE_LENGTH = 65


@dataclass(frozen=True)
class Terms:
    """What this provider offers: its ask, plus where it is."""

    provider: str
    """Our checksummed address."""
    chain_id: int
    market: str
    price_per_gib_period: int
    collateral_per_gib: int
    min_piece_size: int
    max_piece_size: int
    """The smaller of our limit and the contract's."""
    max_periods: int
    min_expiry_blocks: int
    """Blocks the proposal must stay acceptable beyond the current head (upload time)."""


@dataclass(frozen=True)
class ChainView:
    """Chain facts read just before ``check_chain``."""

    head: int
    client_balance: int
    client_allowance: int
    nonce_used: bool
    provider_active: bool
    """Registered and not exiting (only an ACTIVE provider may open deals)."""
    free_stake: int
    """Our stake minus what open deals lock."""
    min_stake: int


def recover_signer(proposal: DealProposal, signature: bytes, chain_id: int, market: str) -> str:
    """
    The address that signed ``proposal``'s EIP-712 digest, with the contract's rules
    (``deals.vy`` ``_recover``): 65 bytes r || s || v, v in {27, 28}, s <= n/2 (EIP-2).
    """
    if len(signature) != SIGNATURE_LENGTH:
        raise ProposalRefused("signature must be 65 bytes")
    r = int.from_bytes(signature[0:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if s > SECP256K1_HALF_N:
        raise ProposalRefused("signature s too high (EIP-2)")
    if v not in (27, 28):
        raise ProposalRefused("signature v must be 27 or 28")
    digest = signing_digest(proposal, chain_id, market)
    try:
        public = Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
    except (BadSignature, ValueError):
        raise ProposalRefused("invalid signature") from None
    return str(public.to_checksum_address())


def check_terms(
    msg: ProposeDeal, terms: Terms, *, free_bytes: int, duplicate: bool, head: int
) -> DealProposal:
    """
    The local checks of a proposal, cheapest first; returns the typed proposal.

    Parameters
    ----------
    msg :
        The client's message.
    terms :
        Our ask and identity.
    free_bytes :
        Space a new piece may take (capacity and disk).
    duplicate :
        The piece root is already stored or expected here.
    head :
        The latest block we know (for the expiry check).

    Raises
    ------
    ProposalRefused
        With the reason for the client.
    """
    try:
        raw = msg.proposal()
        # Checksummed addresses: what web3 takes for the accept transaction.
        proposal = replace(
            raw,
            client=to_checksum_address(raw.client),
            provider=to_checksum_address(raw.provider),
        )
    except DealError as exc:
        raise ProposalRefused(f"malformed proposal: {exc}") from None
    if proposal.provider != terms.provider:
        raise ProposalRefused(f"proposal is for provider {proposal.provider}, not {terms.provider}")
    size = proposal.piece_size
    if not terms.min_piece_size <= size <= terms.max_piece_size:
        raise ProposalRefused(
            f"piece size {size} outside [{terms.min_piece_size}, {terms.max_piece_size}]"
        )
    if not 1 <= proposal.periods <= terms.max_periods:
        raise ProposalRefused(f"{proposal.periods} periods outside [1, {terms.max_periods}]")
    price = price_for(size, terms.price_per_gib_period)
    if proposal.price_per_period < price:
        raise ProposalRefused(
            f"underpriced: {proposal.price_per_period} per period < {price} for {size} bytes"
        )
    collateral = price_for(size, terms.collateral_per_gib)
    if proposal.collateral > collateral:
        raise ProposalRefused(
            f"collateral {proposal.collateral} above the ask's {collateral} for {size} bytes"
        )
    if proposal.expiry_block < head + terms.min_expiry_blocks:
        raise ProposalRefused(
            f"proposal expires at block {proposal.expiry_block}, need at least "
            f"{head + terms.min_expiry_blocks} (head {head} + {terms.min_expiry_blocks})"
        )
    signer = recover_signer(proposal, msg.signature, terms.chain_id, terms.market)
    if signer != proposal.client:
        raise ProposalRefused(f"signature is by {signer}, not the client {proposal.client}")
    if duplicate:
        raise ProposalRefused("this piece is already stored or being received here")
    if size > free_bytes:
        raise ProposalRefused(f"no space: piece of {size} bytes, {free_bytes} bytes free")
    return proposal


def check_chain(proposal: DealProposal, view: ChainView, terms: Terms) -> None:
    """
    The checks that need the chain, against ``view`` (read just before).

    Raises
    ------
    ProposalRefused
        With the reason for the client.
    """
    if proposal.expiry_block < view.head + terms.min_expiry_blocks:
        raise ProposalRefused(
            f"proposal expires at block {proposal.expiry_block} (head {view.head})"
        )
    if view.nonce_used:
        raise ProposalRefused(f"nonce {proposal.nonce} already used or cancelled")
    escrow = proposal.escrow()
    if view.client_balance < escrow:
        raise ProposalRefused(f"client balance {view.client_balance} < escrow {escrow}")
    if view.client_allowance < escrow:
        raise ProposalRefused(
            f"client allowance to the market {view.client_allowance} < escrow {escrow}"
        )
    if not view.provider_active:
        raise ProposalRefused("this provider is not taking deals (not registered or exiting)")
    if view.free_stake < proposal.collateral + view.min_stake:
        raise ProposalRefused(
            f"provider stake too low for collateral {proposal.collateral} "
            f"(free {view.free_stake}, minimum {view.min_stake})"
        )
