"""
The provider directory: which node ids are registered providers, read from the ledger.

Both the prover and the market run a Kademlia node whose record policy accepts only
records signed by a node id that some provider registered with stake (the Sybil defence
of docs/ARCHITECTURE.md). ``ProviderDirectory`` follows the registry's events
incrementally and re-reads the registry records of the providers it knows; the daemons
feed ``staked_node_ids()`` to their ``node.kademlia.records.StakedSigners`` policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.chain import LedgerClient, ProviderInfo, ProviderStatus
from contracts.events import EndpointUpdated, ProviderRegistered, StakeWithdrawn

_EVENTS = (ProviderRegistered, EndpointUpdated, StakeWithdrawn)


@dataclass
class ProviderDirectory:
    """
    Registered providers by address and node id, refreshed from the chain on demand.

    A provider counts as *staked* while it is registered (active or exiting, with deals to
    serve) and holds a positive stake; once it has withdrawn it is forgotten by the policy.
    """

    ledger: LedgerClient
    _next_block: int = -1
    _node_of: dict[str, bytes] = field(default_factory=dict)
    _info: dict[str, ProviderInfo] = field(default_factory=dict)

    def refresh(self) -> None:
        """Read new registry events and re-read every known provider's record."""
        start = self.ledger.deployment.deploy_block if self._next_block < 0 else self._next_block
        head = self.ledger.current_block()
        if head >= start:
            for event in self.ledger.events(start, head, kinds=_EVENTS):
                if isinstance(event, ProviderRegistered):
                    self._node_of[event.provider] = event.node_id
            self._next_block = head + 1
        self._info = {address: self.ledger.provider(address) for address in self._node_of}

    def staked_node_ids(self) -> set[bytes]:
        """Node ids whose records are accepted: registered providers that hold stake."""
        return {info.node_id for info in self._info.values() if _staked(info)}

    def providers(self) -> list[ProviderInfo]:
        """Every provider ever registered, with its current registry record."""
        return list(self._info.values())

    def by_node_id(self, node_id: bytes) -> ProviderInfo | None:
        """The provider that registered ``node_id``, if any."""
        for info in self._info.values():
            if info.node_id == node_id:
                return info
        return None

    def is_staked(self, node_id: bytes) -> bool:
        """Whether records signed by ``node_id`` are accepted."""
        info = self.by_node_id(node_id)
        return info is not None and _staked(info)


def _staked(info: ProviderInfo) -> bool:
    return bool(info.status & (ProviderStatus.ACTIVE | ProviderStatus.EXITING)) and info.stake > 0
