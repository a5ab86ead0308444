"""
Kademlia wire messages (protocol ``"kad"``, carried on the stream protocol ``/depot/kad/1``).

Every request carries ``sender``: the addresses the sender accepts connections on. The
sender's node id is not in the message: the transport authenticated it (Noise handshake), so
it cannot be forged. A request with no addresses comes from a node in *client mode* (a market
client behind NAT); it is answered but never added to a routing table.

The RPCs are those of Maymounkov & Mazières 2002, section 2.3 (PING, STORE, FIND_NODE,
FIND_VALUE), with STORE split into ADD_PROVIDER (signed provider records) and PUT_VALUE
(immutable content-addressed values), and FIND_VALUE into GET_PROVIDERS and GET_VALUE.
Every reply that can help a lookup carries the k closest contacts the responder knows.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated, Final

from node.wire import ExactLen, MaxLen, message

PROTOCOL: Final = "kad"
STREAM_PROTOCOL: Final = "/depot/kad/1"

ID_LEN: Final = 32
PUBLIC_KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
MAX_ADDRS: Final = 4
"""Addresses per contact or record: enough for IPv4 + IPv6 on two ports."""
MAX_HOST_LEN: Final = 45
"""Longest textual IP address (IPv6 with an embedded IPv4). Host names are not accepted."""
MAX_CONTACTS: Final = 20
"""Contacts per reply: k (section 2.3)."""
MAX_PAYLOAD: Final = 2048
"""Opaque application payload of a provider record (a provider's ask)."""
MAX_RECORDS: Final = 256
"""Provider records per GET_PROVIDERS reply (about 600 KiB at most)."""
MAX_VALUE: Final = 64 * 1024
"""Largest content-addressed value (a file manifest)."""
MAX_REASON: Final = 200


@message(PROTOCOL, 1)
@dataclass(frozen=True, slots=True)
class Address:
    """A dialable TCP endpoint: a literal IPv4/IPv6 address and a port."""

    host: Annotated[str, MaxLen(MAX_HOST_LEN)]
    port: int

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} out of range")
        ipaddress.ip_address(self.host)  # ValueError for a host name or garbage


Addrs = Annotated[tuple[Address, ...], MaxLen(MAX_ADDRS)]


@message(PROTOCOL, 2)
@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A contact: a node id and where to reach it (the paper's <IP, port, node id> triple)."""

    node_id: Annotated[bytes, ExactLen(ID_LEN)]
    addrs: Addrs


Contacts = Annotated[tuple[PeerInfo, ...], MaxLen(MAX_CONTACTS)]


@message(PROTOCOL, 3)
@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """
    A signed statement "node ``node_id`` provides ``key``" (see ``node.kademlia.records``).

    ``node_id`` must equal ``sha256(public_key)``, and ``signature`` is the Ed25519 signature
    by ``public_key`` over the record's canonical encoding. ``seq`` orders the records of one
    node for one key (only a higher one replaces a stored record); ``expiry`` is in Unix
    seconds.
    """

    key: Annotated[bytes, ExactLen(ID_LEN)]
    node_id: Annotated[bytes, ExactLen(ID_LEN)]
    public_key: Annotated[bytes, ExactLen(PUBLIC_KEY_LEN)]
    addrs: Addrs
    payload: Annotated[bytes, MaxLen(MAX_PAYLOAD)]
    seq: int
    expiry: int
    signature: Annotated[bytes, ExactLen(SIGNATURE_LEN)]


# --- requests ---------------------------------------------------------------------------


@message(PROTOCOL, 10)
@dataclass(frozen=True, slots=True)
class Ping:
    """PING (section 2.3): is the recipient alive? Answered by ``Pong``."""

    sender: Addrs


@message(PROTOCOL, 11)
@dataclass(frozen=True, slots=True)
class FindNode:
    """FIND_NODE (section 2.3): the k contacts closest to ``target`` the recipient knows."""

    sender: Addrs
    target: Annotated[bytes, ExactLen(ID_LEN)]


@message(PROTOCOL, 12)
@dataclass(frozen=True, slots=True)
class AddProvider:
    """Store a signed provider record (STORE, section 2.3). Answered by ``Stored``."""

    sender: Addrs
    record: ProviderRecord


@message(PROTOCOL, 13)
@dataclass(frozen=True, slots=True)
class GetProviders:
    """The records stored under ``key`` and the k closest contacts (FIND_VALUE, 2.3)."""

    sender: Addrs
    key: Annotated[bytes, ExactLen(ID_LEN)]


@message(PROTOCOL, 14)
@dataclass(frozen=True, slots=True)
class PutValue:
    """Store an immutable value under ``sha256(value)`` until ``expiry`` (Unix seconds)."""

    sender: Addrs
    value: Annotated[bytes, MaxLen(MAX_VALUE)]
    expiry: int


@message(PROTOCOL, 15)
@dataclass(frozen=True, slots=True)
class GetValue:
    """The value stored under ``key``, or the k closest contacts (FIND_VALUE, 2.3)."""

    sender: Addrs
    key: Annotated[bytes, ExactLen(ID_LEN)]


# --- replies ----------------------------------------------------------------------------


@message(PROTOCOL, 20)
@dataclass(frozen=True, slots=True)
class Pong:
    """Reply to ``Ping``."""


@message(PROTOCOL, 21)
@dataclass(frozen=True, slots=True)
class Nodes:
    """Reply to ``FindNode``: up to k contacts, closest first."""

    closer: Contacts


@message(PROTOCOL, 22)
@dataclass(frozen=True, slots=True)
class Stored:
    """Reply to ``AddProvider`` and ``PutValue``: whether the record was kept, and why not."""

    ok: bool
    reason: Annotated[str, MaxLen(MAX_REASON)]


@message(PROTOCOL, 23)
@dataclass(frozen=True, slots=True)
class Providers:
    """Reply to ``GetProviders``: stored records (a sample if there are many) and contacts."""

    records: Annotated[tuple[ProviderRecord, ...], MaxLen(MAX_RECORDS)]
    closer: Contacts


@message(PROTOCOL, 24)
@dataclass(frozen=True, slots=True)
class Value:
    """Reply to ``GetValue``: the value if stored, else ``None`` and contacts."""

    value: Annotated[bytes, MaxLen(MAX_VALUE)] | None
    expiry: int
    closer: Contacts


@message(PROTOCOL, 25)
@dataclass(frozen=True, slots=True)
class Error:
    """Reply to a request that could not be served (malformed, unknown, refused)."""

    reason: Annotated[str, MaxLen(MAX_REASON)]


Request = Ping | FindNode | AddProvider | GetProviders | PutValue | GetValue
Reply = Pong | Nodes | Stored | Providers | Value | Error

REPLY_TYPE: Final[dict[type, type]] = {
    Ping: Pong,
    FindNode: Nodes,
    AddProvider: Stored,
    GetProviders: Providers,
    PutValue: Stored,
    GetValue: Value,
}
"""The reply each request expects (an ``Error`` is always allowed)."""
