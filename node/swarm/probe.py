"""
A retrieval probe: fetch one chunk of one piece from one peer and verify it (docs/swarm.md).

An auditor (or a client checking a provider before a deal) asks a single source for a
single chunk over ``/depot/swarm/1``, exactly as a downloader would, and checks it the same
way: the layer against the piece root, then the chunk against its layer entry
(``node.swarm.verify``). Nothing is written anywhere. The outcome says whether the peer
served, refused, sent data that does not verify, or did not answer in time::

    probe = await fetch_chunk(host, peer_id, addrs, root, piece_size, index=3, timeout=20)
    probe.elapsed, probe.ttfb                       # seconds

Raises ``ProbeRefused`` (the peer said no: no such piece, a missing chunk), ``ProbeBadData``
(a layer or chunk that does not verify, or a message out of protocol) and ``PeerTimeout``;
dialling failures surface as the transport's own ``RemoteError``s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from node import errors
from node.swarm.bitfield import Bitfield
from node.swarm.messages import (
    LAYER_PAGE,
    PROTOCOL,
    WIRE,
    Choke,
    Chunk,
    GetLayer,
    Have,
    Interested,
    Layer,
    Refused,
    Reject,
    Request,
    Unchoke,
)
from node.swarm.verify import HASH_SIZE, chunk_count, chunk_length, verify_chunk, verify_layer
from node.transport import Host, Stream


class ProbeRefused(errors.RemoteError):
    """The peer declined to serve the piece or the chunk (``reason`` is its word)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProbeBadData(errors.RemoteError):
    """The peer sent a layer or chunk that does not verify against the root, or broke the
    protocol."""


@dataclass(frozen=True)
class ChunkProbe:
    """A chunk fetched and verified."""

    index: int
    data: bytes
    ttfb: float
    """Seconds from opening the stream to the peer's first answer."""
    elapsed: float
    """Seconds from opening the stream to the verified chunk."""


async def fetch_chunk(
    host: Host,
    peer_id: bytes,
    addrs: Sequence[tuple[str, int]],
    root: bytes,
    piece_size: int,
    *,
    index: int,
    timeout: float = 20.0,  # noqa: ASYNC109 (the documented API: dial and exchange together)
) -> ChunkProbe:
    """
    Fetch chunk ``index`` of piece ``root`` from ``peer_id`` and verify it.

    Parameters
    ----------
    host :
        Our transport (no handler needed: we only dial).
    peer_id, addrs :
        The peer and where to dial it.
    root, piece_size :
        The piece as committed (the deal's root and size).
    index :
        The chunk (``CHUNK_SIZE`` bytes, the last one may be short).
    timeout :
        Seconds for the whole exchange, dial included.
    """
    count = chunk_count(piece_size)
    if not 0 <= index < count:
        raise errors.LocalError(f"chunk {index} out of range for {count} chunks")
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            stream = await host.open_stream(peer_id, addrs, PROTOCOL)
            try:
                return await _exchange(stream, root, piece_size, index=index, start=start)
            finally:
                stream.reset("probe done")
    except TimeoutError:
        raise errors.PeerTimeout(f"no verified chunk within {timeout}s") from None


async def _exchange(
    stream: Stream, root: bytes, piece_size: int, *, index: int, start: float
) -> ChunkProbe:
    count = chunk_count(piece_size)
    await stream.send_msg(Interested(root, piece_size))
    for first in range(0, count, LAYER_PAGE):
        await stream.send_msg(GetLayer(first, min(LAYER_PAGE, count - first)))
    await stream.send_msg(Request(index))
    layer = bytearray()
    verified_layer: bytes | None = None
    ttfb: float | None = None
    waiting_unchoke = False
    while True:
        msg = await stream.recv_msg(WIRE)
        if ttfb is None:
            ttfb = time.monotonic() - start
        if isinstance(msg, Refused):
            raise ProbeRefused(msg.reason or "refused")
        if isinstance(msg, Have):
            try:
                held = Bitfield(count, msg.bitfield)
            except errors.ProtocolViolation as exc:
                raise ProbeBadData(f"bad bitfield: {exc}") from None
            if index not in held:
                raise ProbeRefused("chunk not held")
        elif isinstance(msg, Layer):
            if msg.start != len(layer) // HASH_SIZE:
                raise ProbeBadData("layer pages out of order")
            layer += msg.hashes
            if len(layer) >= count * HASH_SIZE:
                if not verify_layer(root, piece_size, bytes(layer)):
                    raise ProbeBadData("the layer does not match the root")
                verified_layer = bytes(layer)
        elif isinstance(msg, Chunk):
            if msg.index != index or msg.length != chunk_length(piece_size, index):
                raise ProbeBadData(f"unrequested chunk {msg.index} of {msg.length} bytes")
            data = await stream.readexactly(msg.length)
            if verified_layer is None:
                raise ProbeBadData("a chunk before the layer")
            if not verify_chunk(verified_layer, index, data):
                raise ProbeBadData(f"chunk {index} does not match the layer")
            return ChunkProbe(index, data, ttfb, time.monotonic() - start)
        elif isinstance(msg, Reject):
            if msg.reason != "choked":
                raise ProbeRefused(f"chunk {msg.index}: {msg.reason}")
            waiting_unchoke = True  # BEP 3: ask again once unchoked
        elif isinstance(msg, Unchoke):
            if waiting_unchoke:
                waiting_unchoke = False
                await stream.send_msg(Request(index))
        elif not isinstance(msg, Choke):
            raise ProbeBadData(f"unexpected {type(msg).__name__}")
