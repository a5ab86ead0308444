# pragma version ~=0.4.3
"""
@title Depot ledger events
@license MIT
@notice Every state change of the market emits one of these (docs/protocol-ledger.md,
        "Events"). contracts/chain.py decodes each into a frozen dataclass of the same name.
"""


event ProviderRegistered:
    provider: indexed(address)
    node_id: indexed(bytes32)
    endpoint: String[256]
    stake: uint256


event StakeAdded:
    provider: indexed(address)
    amount: uint256
    stake: uint256


event EndpointUpdated:
    provider: indexed(address)
    endpoint: String[256]


event ExitRequested:
    provider: indexed(address)
    period: uint256


event StakeWithdrawn:
    provider: indexed(address)
    amount: uint256


event DealAccepted:
    deal_id: indexed(uint256)
    client: indexed(address)
    provider: indexed(address)
    piece_root: bytes32
    piece_size: uint256
    price_per_period: uint256
    collateral: uint256
    start: uint256
    end: uint256
    epoch: uint256
    slot: uint256
    nonce: uint256


event NonceCancelled:
    client: indexed(address)
    nonce: uint256


event PeriodRolled:
    provider: indexed(address)
    period: uint256
    epoch: uint256
    live_leaves: uint256
    retired_slots: uint256


event SlotRetired:
    provider: indexed(address)
    deal_id: indexed(uint256)
    epoch: uint256
    slot: uint256
    from_period: uint256


event ProofSubmitted:
    provider: indexed(address)
    period: indexed(uint256)
    epoch: uint256
    live_leaves: uint256
    seed: bytes32


event FaultReported:
    provider: indexed(address)
    period: indexed(uint256)
    reporter: indexed(address)
    bounty: uint256


event ProviderTerminated:
    provider: indexed(address)
    epoch: uint256
    end_period: uint256


event LossDeclared:
    deal_id: indexed(uint256)
    provider: indexed(address)
    end_period: uint256


event DealSettled:
    deal_id: indexed(uint256)
    from_period: uint256
    to_period: uint256
    proven: uint256
    missed: uint256
    reported: uint256
    provider_paid: uint256
    client_refund: uint256
    client_compensation: uint256
    slashed: uint256
    final: bool
