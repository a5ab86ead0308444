"""
The market's events as frozen, past-tense dataclasses (one per event of
``contracts/src/events.vy``), decoded from logs by ``contracts.chain.LedgerClient.events``.

Every event carries where it happened (block, transaction, log index), so that an indexer
can order them and resume after the last one it saw. Field names are the contract's; byte
fields are ``bytes``, addresses checksummed strings, amounts in token base units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, kw_only=True)
class LedgerEvent:
    """Where an event was emitted."""

    block_number: int
    tx_hash: str
    """``0x``-prefixed hex."""
    log_index: int


@dataclass(frozen=True, kw_only=True)
class ProviderRegistered(LedgerEvent):
    """A provider registered with its node id, endpoint and initial stake."""

    provider: str
    node_id: bytes
    endpoint: str
    stake: int


@dataclass(frozen=True, kw_only=True)
class StakeAdded(LedgerEvent):
    """A provider topped up its stake (``stake`` is the new total)."""

    provider: str
    amount: int
    stake: int


@dataclass(frozen=True, kw_only=True)
class EndpointUpdated(LedgerEvent):
    """A provider changed the endpoint its node is reached at."""

    provider: str
    endpoint: str


@dataclass(frozen=True, kw_only=True)
class ExitRequested(LedgerEvent):
    """A provider stopped taking deals; it may withdraw after the unbonding periods."""

    provider: str
    period: int


@dataclass(frozen=True, kw_only=True)
class StakeWithdrawn(LedgerEvent):
    """An exited provider took its whole stake back."""

    provider: str
    amount: int


@dataclass(frozen=True, kw_only=True)
class DealAccepted(LedgerEvent):
    """A provider accepted a client's proposal; the deal covers periods [start, end)."""

    deal_id: int
    client: str
    provider: str
    piece_root: bytes
    piece_size: int
    price_per_period: int
    collateral: int
    start: int
    end: int
    epoch: int
    slot: int
    """The piece's slot in the provider's sum tree (challenge walk order)."""
    nonce: int


@dataclass(frozen=True, kw_only=True)
class NonceCancelled(LedgerEvent):
    """A client revoked an unused proposal nonce."""

    client: str
    nonce: int


@dataclass(frozen=True, kw_only=True)
class PeriodRolled(LedgerEvent):
    """A provider's bookkeeping moved to ``period``: the challenge range of that period."""

    provider: str
    period: int
    epoch: int
    live_leaves: int
    retired_slots: int


@dataclass(frozen=True, kw_only=True)
class SlotRetired(LedgerEvent):
    """A deal's slot leaves the challenge set from ``from_period`` on."""

    provider: str
    deal_id: int
    epoch: int
    slot: int
    from_period: int


@dataclass(frozen=True, kw_only=True)
class ProofSubmitted(LedgerEvent):
    """A provider proved ``period`` over ``live_leaves`` leaves with ``seed``."""

    provider: str
    period: int
    epoch: int
    live_leaves: int
    seed: bytes


@dataclass(frozen=True, kw_only=True)
class FaultReported(LedgerEvent):
    """Someone reported that ``provider`` missed ``period`` and was paid ``bounty``."""

    provider: str
    period: int
    reporter: str
    bounty: int


@dataclass(frozen=True, kw_only=True)
class ProviderTerminated(LedgerEvent):
    """Too many consecutive misses: every deal of ``epoch`` ends at ``end_period``."""

    provider: str
    epoch: int
    end_period: int


@dataclass(frozen=True, kw_only=True)
class LossDeclared(LedgerEvent):
    """A provider declared a deal's piece lost; the deal ends at ``end_period``."""

    deal_id: int
    provider: str
    end_period: int


@dataclass(frozen=True, kw_only=True)
class DealSettled(LedgerEvent):
    """Periods [from_period, to_period) of a deal were paid out (``final``: it closed)."""

    deal_id: int
    from_period: int
    to_period: int
    proven: int
    missed: int
    reported: int
    provider_paid: int
    client_refund: int
    client_compensation: int
    slashed: int
    final: bool


EVENT_TYPES: Final[dict[str, type[LedgerEvent]]] = {
    cls.__name__: cls
    for cls in (
        ProviderRegistered,
        StakeAdded,
        EndpointUpdated,
        ExitRequested,
        StakeWithdrawn,
        DealAccepted,
        NonceCancelled,
        PeriodRolled,
        SlotRetired,
        ProofSubmitted,
        FaultReported,
        ProviderTerminated,
        LossDeclared,
        DealSettled,
    )
}
"""Every market event by its contract name."""
