"""In-memory sources driving a ``DownloadCore``: no sockets, simulated time."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from dataclasses import dataclass, field

from contracts.spec.commitment import root_of_nodes
from node.swarm.bitfield import Bitfield
from node.swarm.events import ChunkVerified, Close, Dial, Send
from node.swarm.messages import (
    Cancel,
    GetLayer,
    Have,
    Interested,
    Layer,
    Refused,
    Reject,
    Request,
    Unchoke,
)
from node.swarm.session import DownloadCore, Source
from node.swarm.verify import CHUNK_SIZE, layer_of


def make_piece(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (fast enough for a few MiB)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed.to_bytes(8, "big") + counter.to_bytes(8, "big")).digest() * 64
        counter += 1
    return bytes(out[:size])


def root_of(piece: bytes) -> bytes:
    layer = layer_of(piece)
    return bytes(root_of_nodes([layer[i : i + 32] for i in range(0, len(layer), 32)]))  # type: ignore[misc]


@dataclass
class MemSource:
    """A well-behaved source unless told otherwise."""

    piece: bytes
    has: set[int] | None = None
    """Chunks it really holds (None: all)."""
    claims: set[int] | None = None
    """Chunks its bitfield claims (None: what it holds)."""
    corrupt: set[int] = field(default_factory=set)
    bad_layer: bool = False
    stall_after: int | None = None
    """Stop answering (without closing) after this many chunks."""
    die_after: int | None = None
    """Close the stream after this many chunks."""
    refuse: bool = False
    dead: bool = False
    sent_chunks: int = 0
    requests: list[int] = field(default_factory=list)
    cancels: list[int] = field(default_factory=list)
    queue: deque[tuple[str, object]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.layer = layer_of(self.piece)
        self.count = len(self.layer) // 32

    def on_message(self, msg: object) -> None:
        if isinstance(msg, Interested):
            if self.refuse:
                self.queue.append(("msg", Refused("no such piece")))
                return
            claims = self.claims if self.claims is not None else self.has
            field_ = Bitfield.full(self.count) if claims is None else Bitfield(self.count)
            for j in claims or ():
                field_.add(j)
            self.queue.append(("msg", Have(field_.to_bytes())))
            self.queue.append(("msg", Unchoke()))
        elif isinstance(msg, GetLayer):
            layer = self.layer
            if self.bad_layer:
                layer = bytes(32) + layer[32:]
            self.queue.append(
                ("msg", Layer(msg.start, layer[msg.start * 32 : (msg.start + msg.count) * 32]))
            )
        elif isinstance(msg, Request):
            self.requests.append(msg.index)
            if self.has is not None and msg.index not in self.has:
                self.queue.append(("msg", Reject(msg.index, "missing")))
            else:
                self.queue.append(("chunk", msg.index))
        elif isinstance(msg, Cancel):
            self.cancels.append(msg.index)
            for item in list(self.queue):
                if item == ("chunk", msg.index):
                    self.queue.remove(item)

    def next(self) -> tuple[str, object] | None:
        """The next thing this source puts on the wire, or None if it is silent."""
        if self.dead or not self.queue:
            return None
        if self.stall_after is not None and self.sent_chunks >= self.stall_after:
            return None
        if self.die_after is not None and self.sent_chunks >= self.die_after:
            self.dead = True
            return ("closed", "connection reset")
        kind, value = self.queue.popleft()
        if kind == "chunk":
            assert isinstance(value, int)
            self.sent_chunks += 1
            data = self.piece[value * CHUNK_SIZE : (value + 1) * CHUNK_SIZE]
            if value in self.corrupt:
                data = bytes([data[0] ^ 1]) + data[1:]
            return ("chunk", (value, data))
        return (kind, value)


@dataclass
class Harness:
    core: DownloadCore
    sources: list[MemSource]
    now: float = 0.0
    tick: float = 0.001
    written: dict[tuple[int, int], bytes] = field(default_factory=dict)
    events: list[object] = field(default_factory=list)
    closed: dict[int, str] = field(default_factory=dict)

    def step_commands(self) -> None:
        while cmds := self.core.commands():
            self._apply(cmds)
        self._drain_events()

    def _apply(self, cmds: list[object]) -> None:
        for cmd in cmds:
            if isinstance(cmd, Dial):
                src = self.sources[cmd.link]
                if src.dead:
                    self.core.link_closed(cmd.link, "connection refused", self.now)
                else:
                    self.closed.pop(cmd.link, None)
                    self.core.link_opened(cmd.link, self.now)
            elif isinstance(cmd, Send):
                if cmd.link not in self.closed:
                    self.sources[cmd.link].on_message(cmd.msg)
            elif isinstance(cmd, Close):
                self.closed[cmd.link] = cmd.reason
                self.sources[cmd.link].queue.clear()
        self._drain_events()

    def _drain_events(self) -> None:
        for ev in self.core.events():
            self.events.append(ev)
            if isinstance(ev, ChunkVerified):
                key = (ev.share, ev.index)
                assert key not in self.written, f"chunk {key} written twice"
                self.written[key] = bytes(ev.data)

    def run(self, max_steps: int = 100_000) -> None:
        self.step_commands()
        for _ in range(max_steps):
            if self.core.done:
                self.step_commands()
                return
            progressed = False
            for key, src in enumerate(self.sources):
                if key in self.closed:
                    continue
                item = src.next()
                if item is None:
                    continue
                progressed = True
                kind, value = item
                if kind == "msg":
                    self.core.message_received(key, value, self.now)
                elif kind == "chunk":
                    index, data = value  # type: ignore[misc]
                    if self.core.expected_length(key, index) == len(data):
                        self.core.chunk_received(key, index, data, self.now)
                    else:
                        self.core.protocol_error(key, f"unexpected chunk {index}", self.now)
                elif kind == "closed":
                    self.closed[key] = str(value)
                    self.core.link_closed(key, str(value), self.now)
                self.step_commands()
            self.now += self.tick
            timer = self.core.get_timer()
            if not progressed and timer is not None:
                self.now = max(self.now, timer)
            if timer is not None and self.now >= timer:
                self.core.handle_timer(self.now)
            self.step_commands()
        raise AssertionError("simulation did not finish")

    def of_type(self, cls: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events if isinstance(e, cls)]


def sources_for(pieces: list[bytes], peers_per_piece: int = 1) -> list[Source]:
    out = []
    for share, piece in enumerate(pieces):
        for p in range(peers_per_piece):
            out.append(
                Source(os.urandom(32), (("127.0.0.1", p),), root_of(piece), len(piece), share)
            )
    return out
