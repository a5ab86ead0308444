"""
Messages of ``/depot/swarm/1`` (wire codec: ``node.wire``; full protocol in docs/swarm.md).

One stream carries one piece between a *downloader* and a *source*. Who opened the stream
does not matter: for a download the downloader opens it with ``Interested``; for a push
the uploader opens it with ``Offer`` and then serves the receiver's requests on it.

Downloader → source: ``Interested``, ``GetLayer``, ``Request``, ``Cancel``.
Source → downloader: ``Have``, ``Choke``, ``Unchoke``, ``Layer``, ``Chunk`` (a header
followed on the stream by exactly ``length`` raw bytes, so that 256 KiB of data is never
copied through msgpack), ``Reject``.
Push: ``Offer`` (uploader → receiver, first message), ``Stored`` (receiver → uploader,
sent only after the piece is verified, fsynced and renamed into place), ``Refused``
(either side, then close).

A source answers requests in the order it received them (rejections included), so a
downloader may pipeline ``GetLayer`` and its first ``Request`` on one stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

from node.wire import ExactLen, MaxLen, message

PROTOCOL: Final = "/depot/swarm/1"
"""Protocol id the transport negotiates for swarm streams."""
WIRE: Final = "swarm"
"""``node.wire`` protocol name of the messages below."""
LAYER_PAGE: Final = 65536
"""Most layer hashes per ``Layer`` message (2 MiB: 16 GiB of piece)."""
MAX_BITFIELD: Final = 1 << 20
"""Largest have-bitfield in bytes (8 Mi chunks, 2 TiB pieces)."""

Root = Annotated[bytes, ExactLen(32)]


@message(WIRE, 1)
@dataclass(frozen=True)
class Interested:
    """Downloader: I want piece ``root`` of ``piece_size`` bytes (first message)."""

    root: Root
    piece_size: int


@message(WIRE, 2)
@dataclass(frozen=True)
class Have:
    """Source: the chunks I hold (BEP 3 bitfield); a later ``Have`` replaces it."""

    bitfield: Annotated[bytes, MaxLen(MAX_BITFIELD)]


@message(WIRE, 3)
@dataclass(frozen=True)
class Choke:
    """Source: I will not serve you now; your unanswered requests are dropped (BEP 3)."""


@message(WIRE, 4)
@dataclass(frozen=True)
class Unchoke:
    """Source: send requests, I will serve them in order."""


@message(WIRE, 5)
@dataclass(frozen=True)
class GetLayer:
    """Downloader: send layer hashes ``start`` to ``start + count``."""

    start: int
    count: int


@message(WIRE, 6)
@dataclass(frozen=True)
class Layer:
    """Source: layer hashes from ``start``, 32 bytes each, concatenated."""

    start: int
    hashes: Annotated[bytes, MaxLen(LAYER_PAGE * 32)]


@message(WIRE, 7)
@dataclass(frozen=True)
class Request:
    """Downloader: send chunk ``index``."""

    index: int


@message(WIRE, 8)
@dataclass(frozen=True)
class Cancel:
    """Downloader: I no longer need chunk ``index`` (it came from elsewhere)."""

    index: int


@message(WIRE, 9)
@dataclass(frozen=True)
class Chunk:
    """Source: chunk ``index`` follows as ``length`` raw bytes on the stream."""

    index: int
    length: int


@message(WIRE, 10)
@dataclass(frozen=True)
class Reject:
    """Source: I will not send chunk ``index`` (``reason``: "missing" or "choked")."""

    index: int
    reason: str


@message(WIRE, 11)
@dataclass(frozen=True)
class Offer:
    """Uploader: take piece ``root`` of ``piece_size`` bytes from me (first message)."""

    root: Root
    piece_size: int


@message(WIRE, 12)
@dataclass(frozen=True)
class Stored:
    """Receiver: piece ``root`` is verified and durably stored."""

    root: Root


@message(WIRE, 13)
@dataclass(frozen=True)
class Refused:
    """Either side: the stream's request cannot be served; the stream closes."""

    reason: str
