"""Events the Kademlia core reports to its adapter: frozen, past tense."""

from __future__ import annotations

from dataclasses import dataclass

from node.kademlia.lookup import LookupKind
from node.kademlia.messages import PeerInfo, ProviderRecord


@dataclass(frozen=True, slots=True)
class LookupFinished:
    """An application lookup (``find_node``, ``get_providers``, ``get_value``) is over."""

    op_id: int
    kind: LookupKind
    target: bytes
    ok: bool
    """FIND_NODE: some contact answered; GET_PROVIDERS: a provider (or ``want`` of them) was
    found; GET_VALUE: the value was found."""
    closest: tuple[PeerInfo, ...]
    """The k closest contacts that answered, nearest first."""
    records: tuple[ProviderRecord, ...]
    """Verified provider records accepted by the policy (GET_PROVIDERS)."""
    value: bytes | None
    """The value, checked against its key (GET_VALUE)."""
    hops: int
    """Depth of the node that returned the result (or of the closest node found)."""
    queried: int
    failed: int
    started: float
    finished: float


@dataclass(frozen=True, slots=True)
class StoreFinished:
    """An ``provide`` or ``put_value`` reached the k closest nodes of its key."""

    op_id: int
    key: bytes
    stored: int
    """Nodes that accepted the record or value."""
    attempted: int
    finished: float


Event = LookupFinished | StoreFinished
