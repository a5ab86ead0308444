# pragma version ~=0.4.3
"""
@title Depot ledger types
@license MIT
@notice Structs and flags shared by the market's modules. Kept apart from the logic so
        that every module, the interface file and the off-chain ABI agree on one
        definition (docs/protocol-ledger.md, "Types").
"""

# Bounds shared by the types below (contracts/spec/commitment.py).
LEAF_SIZE: constant(uint256) = 1024
MAX_PROOF_DEPTH: constant(uint256) = 40
MAX_CHALLENGES: constant(uint256) = 64
MAX_ENDPOINT: constant(uint256) = 256


flag ProviderStatus:
    ACTIVE
    EXITING
    WITHDRAWN


struct Provider:
    # Registration record of a storage provider (registry.vy).
    node_id: bytes32
    stake: uint256
    locked: uint256
    open_deals: uint256
    status: ProviderStatus
    exit_period: uint256


struct DealProposal:
    # EIP-712 typed data signed by the client (contracts/spec/deal.py).
    client: address
    provider: address
    pieceRoot: bytes32
    pieceSize: uint64
    pricePerPeriod: uint256
    periods: uint32
    collateral: uint256
    nonce: uint256
    expiryBlock: uint64


struct Deal:
    # An accepted deal (deals.vy). Periods are proving periods (clock.vy).
    client: address
    provider: address
    price_per_period: uint256
    collateral: uint256
    slashed: uint256
    start: uint256
    end: uint256
    epoch: uint256
    slot: uint256
    settled_through: uint256
    loss_end: uint256
    closed: bool


struct Slot:
    # One piece in a provider's challenge set (proving.vy); index = position in the sum tree.
    piece_root: bytes32
    piece_size: uint256
    deal_id: uint256
    retired_from: uint256


struct ProvingState:
    # A provider's proving bookkeeping, rolled lazily to the current period (proving.vy).
    epoch: uint256
    rolled_period: uint256
    live_leaves: uint256
    live_bounty: uint256
    pending_leaves: uint256
    pending_bounty: uint256
    retiring_leaves: uint256
    retiring_bounty: uint256
    retiring_count: uint256
    prev_leaves: uint256
    prev_bounty: uint256
    active_since: uint256


struct LeafProof:
    # Answer to one challenge: the whole 1 KiB leaf and its RFC 9162 audit path.
    leaf: Bytes[LEAF_SIZE]
    path: DynArray[bytes32, MAX_PROOF_DEPTH]
