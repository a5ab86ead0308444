"""The one configuration dataclass of the Kademlia node (every number the core uses)."""

from __future__ import annotations

from dataclasses import dataclass

from node.errors import LocalError
from node.kademlia.messages import MAX_CONTACTS, MAX_RECORDS

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class KademliaConfig:
    """
    Parameters of a Kademlia node. Defaults follow the paper (Maymounkov & Mazières 2002)
    where it gives a number, S/Kademlia (Baumgart & Mies 2007) for disjoint paths, and
    docs/node-dht.md for the rest.
    """

    k: int = 20
    """Bucket size and replication factor (section 2.2: k = 20)."""
    alpha: int = 3
    """Concurrent requests per lookup path (section 2.3: alpha = 3)."""
    disjoint_paths: int = 3
    """d disjoint lookup paths for GET_PROVIDERS and GET_VALUE (S/Kademlia section 4.4);
    FIND_NODE for our own maintenance uses one path."""
    rpc_timeout: float = 5.0
    """Seconds after which an unanswered request fails and counts against the contact."""
    initial_stall: float = 1.0
    """Seconds before an unanswered lookup request stops counting against alpha, until the
    node has RTT samples (section 2.3: "nodes that fail to respond quickly are removed from
    consideration until and unless they do respond")."""
    stall_granularity: float = 0.05
    """G of RFC 6298 section 2: the stall timeout is SRTT + max(G, 4 * RTTVAR)."""
    max_failures: int = 5
    """Consecutive failed requests after which a contact is removed even if no replacement
    is waiting (section 4.1)."""
    ping_grace: float = 600.0
    """A full bucket pings its least-recently seen contact for a newcomer only if that
    contact has been silent this long (docs/node-dht.md: section 2.2 tempered by 4.1)."""
    replacement_cache: int = 20
    """Recently seen contacts kept per full bucket to replace failed ones (section 4.1)."""
    refresh_interval: float = HOUR
    """A bucket with no lookup in this long is refreshed (section 2.3)."""
    maintenance_interval: float = 60.0
    """How often the node checks for due refreshes, republishing and expiry."""

    # Eclipse defences: IP-prefix limits on routing table entries (docs/node-dht.md).
    ipv4_prefix: int = 24
    ipv6_prefix: int = 48
    max_per_prefix_bucket: int = 2
    max_per_prefix_table: int = 10
    exempt_loopback: bool = False
    """Loopback addresses bypass the prefix limits. For tests and local benchmarks only:
    in production every node on one host would share one prefix."""

    # Records and values.
    record_ttl: float = 6 * HOUR
    """Lifetime we give our own provider records."""
    republish_interval: float = HOUR
    """We re-sign and re-announce our own records this often (section 2.5: hourly)."""
    max_record_ttl: float = 48 * HOUR
    """Records and values expiring further in the future than this are refused."""
    max_records_per_key: int = 1024
    max_records_per_signer: int = 16_384
    max_records: int = 262_144
    max_values: int = 65_536
    max_store_bytes: int = 256 * 1024 * 1024
    """Bytes of records and values stored for others, all keys together."""
    max_providers_per_reply: int = MAX_RECORDS
    """Records in one GET_PROVIDERS reply; a random sample above this."""
    value_republish_interval: float = HOUR
    """A node holding a value re-stores it at the k closest nodes this often, unless
    someone stored it at this node in that time (section 2.5)."""

    def __post_init__(self) -> None:
        if not 1 <= self.k <= MAX_CONTACTS:
            raise LocalError(f"k must be in 1..{MAX_CONTACTS}")
        if self.alpha < 1 or self.disjoint_paths < 1:
            raise LocalError("alpha and disjoint_paths must be at least 1")
        if not 0 < self.initial_stall <= self.rpc_timeout:
            raise LocalError("need 0 < initial_stall <= rpc_timeout")
        if not 0 < self.max_providers_per_reply <= MAX_RECORDS:
            raise LocalError(f"max_providers_per_reply must be in 1..{MAX_RECORDS}")
        if self.republish_interval >= self.record_ttl or self.record_ttl > self.max_record_ttl:
            raise LocalError("need republish_interval < record_ttl <= max_record_ttl")
