"""Misbehaving sources that speak /depot/swarm/1 over a real transport (test only)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from node import errors
from node.swarm.bitfield import Bitfield
from node.swarm.messages import (
    WIRE,
    Chunk,
    GetLayer,
    Have,
    Interested,
    Layer,
    Reject,
    Request,
    Unchoke,
)
from node.swarm.verify import CHUNK_SIZE, layer_of
from node.transport import Stream


@dataclass
class FakeSource:
    """Serves ``piece`` with faults: stalls after ``stall_after`` chunks, lies about
    chunks it lacks (``has``), or flips a byte in the ``corrupt`` chunks."""

    piece: bytes
    has: set[int] | None = None
    stall_after: int | None = None
    corrupt: set[int] = field(default_factory=set)
    sent: int = 0

    def __post_init__(self) -> None:
        self.layer = layer_of(self.piece)
        self.count = len(self.layer) // 32

    async def handle(self, stream: Stream) -> None:
        with contextlib.suppress(errors.RemoteError, asyncio.CancelledError):
            first = await stream.recv_msg(WIRE)
            assert isinstance(first, Interested)
            await stream.send_msg(Have(Bitfield.full(self.count).to_bytes()))  # claims all
            await stream.send_msg(Unchoke())
            while True:
                msg = await stream.recv_msg(WIRE)
                if isinstance(msg, GetLayer):
                    page = self.layer[msg.start * 32 : (msg.start + msg.count) * 32]
                    await stream.send_msg(Layer(msg.start, page))
                elif isinstance(msg, Request):
                    if self.stall_after is not None and self.sent >= self.stall_after:
                        continue  # silent, connection kept open
                    if self.has is not None and msg.index not in self.has:
                        await stream.send_msg(Reject(msg.index, "missing"))
                        continue
                    data = self.piece[msg.index * CHUNK_SIZE : (msg.index + 1) * CHUNK_SIZE]
                    if msg.index in self.corrupt:
                        data = bytes([data[0] ^ 0xFF]) + data[1:]
                    await stream.send_msg(Chunk(msg.index, len(data)))
                    await stream.write(data)
                    self.sent += 1
