"""
The asyncio adapter: TCP + Noise (``node.noise``) + multiplexer (``node.mux``).

This module only pumps: it owns the sockets, timers and tasks, feeds received bytes to the
sans-I/O cores and writes what they produce. Every task it starts is kept and cancelled on
``Host.close()``; nothing a peer sends can raise out of a callback or a task: a
``RemoteError`` drops the offending stream or connection with a logged reason and a metric.

    host = Host(NodeKey.load_or_create(home / "node.key"), TransportConfig())
    await host.listen("127.0.0.1", 0)
    host.set_handler("/depot/echo/1", handler)           # async def handler(stream) -> None
    stream = await host.open_stream(peer_id, [("127.0.0.1", port)], "/depot/echo/1")

Receive path (the hot one): the socket is read straight into one preallocated buffer
(``asyncio.BufferedProtocol``); each complete Noise message is decrypted from a view of
that buffer, the mux parses the plaintext record in place, and stream data is queued as
views of it. The only copies after the kernel's are the decryption and the final
``bytes`` handed to the application.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Final, cast

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node import errors, wire
from node.config import TransportConfig
from node.identity import NodeKey, peer_short
from node.metrics import Registry
from node.mux import (
    ConnectionTerminated,
    DataReceived,
    GoAwayReceived,
    Mux,
    PingAcknowledged,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowIncreased,
)
from node.noise import LENGTH_PREFIX, Handshake, SecureChannel

log = logging.getLogger("node.transport")

Addr = tuple[str, int]
Handler = Callable[["Stream"], Awaitable[None]]
PeerCallback = Callable[[bytes, Addr], None]
MSG_LENGTH_BYTES: Final = 4
MAX_LOGGED_REASON: Final = 200
HANDSHAKE_BUFFER: Final = 16 * 1024
"""Read buffer of a connection until it is authenticated (handshake messages are small)."""


class TransportMetrics:
    """The transport's counters and gauges in a ``Registry`` (shared with the daemon)."""

    def __init__(self, registry: Registry) -> None:
        r = registry
        self.bytes_received = r.counter(
            "depot_transport_received_bytes_total", "Bytes read from peer sockets"
        )
        self.bytes_sent = r.counter(
            "depot_transport_sent_bytes_total", "Bytes written to peer sockets"
        )
        self.connections = r.gauge(
            "depot_transport_connections", "Open authenticated connections", ("direction",)
        )
        self.connections_opened = r.counter(
            "depot_transport_connections_opened_total",
            "Connections that completed the handshake",
            ("direction",),
        )
        self.handshake_failures = r.counter(
            "depot_transport_handshake_failures_total", "Failed handshakes", ("reason",)
        )
        self.dropped = r.counter(
            "depot_transport_connections_dropped_total",
            "Connections dropped because of the peer or a limit",
            ("reason",),
        )
        self.streams = r.gauge("depot_transport_streams", "Open streams")
        self.streams_opened = r.counter(
            "depot_transport_streams_opened_total", "Streams opened", ("direction",)
        )
        self.stream_resets = r.counter(
            "depot_transport_stream_resets_total", "Streams reset", ("by",)
        )


_REASON_CODES: Final[dict[type[BaseException], str]] = {
    errors.HandshakeFailed: "handshake",
    errors.BadSignature: "bad_signature",
    errors.DecodeError: "malformed",
    errors.FrameTooLarge: "oversized",
    errors.ProtocolViolation: "protocol_violation",
    errors.PeerTimeout: "timeout",
}


def _reason_code(exc: BaseException) -> str:
    """A low-cardinality metric label for an error."""
    return _REASON_CODES.get(type(exc), "other")


class Stream:
    """
    One multiplexed stream: an ordered, flow-controlled byte pipe in each direction.

    ``read``/``readexactly`` return ``bytes``; ``write`` waits for flow-control credit
    (and for the socket to drain). ``close()`` half-closes (the peer reads EOF), ``reset()``
    aborts both directions. Errors: ``StreamReset`` (the peer aborted), ``EndOfStream``
    (EOF before the data needed), ``ConnectionClosed``, ``PeerTimeout``.
    """

    def __init__(self, conn: _Connection, stream_id: int, protocol: str) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.protocol = protocol
        self.peer_id: bytes = conn.peer_id or b""
        self.remote_addr: Addr = conn.remote_addr
        self._chunks: collections.deque[memoryview] = collections.deque()
        self._buffered = 0
        self._eof = False
        self._closed = False  # we sent FIN
        self._reading = False  # has the application started reading?
        self._error: errors.NodeError | None = None
        self._data = asyncio.Event()
        self._credit = asyncio.Event()

    def __repr__(self) -> str:
        return f"Stream({peer_short(self.peer_id)} #{self.stream_id} {self.protocol})"

    # -- reading ------------------------------------------------------------------------

    def _start_reading(self) -> None:
        """The first read raises the stream's receive window to ``stream_window``."""
        if not self._reading:
            self._reading = True
            self._conn.consumed(self.stream_id, 0)

    async def _wait_data(self) -> None:
        self._start_reading()
        while not self._chunks and not self._eof:
            if self._error is not None:
                raise self._error
            self._data.clear()
            await self._data.wait()

    def _take(self, n: int) -> bytes:
        """Remove ``n`` buffered bytes (one copy) and return their credit to the peer."""
        chunks = self._chunks
        first = chunks[0]
        if len(first) >= n:
            if len(first) == n:
                chunks.popleft()
                out = bytes(first)
            else:
                out = bytes(first[:n])
                chunks[0] = first[n:]
        else:
            parts: list[memoryview] = []
            size = 0
            while size < n:
                chunk = chunks[0]
                need = n - size
                if len(chunk) <= need:
                    chunks.popleft()
                else:
                    chunks[0] = chunk[need:]
                    chunk = chunk[:need]
                parts.append(chunk)
                size += len(chunk)
            out = b"".join(parts)
        self._buffered -= n
        self._conn.consumed(self.stream_id, n)
        return out

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (at least one unless at EOF, then ``b""``); ``-1``: until EOF."""
        if n < 0:
            parts: list[bytes] = []
            while True:
                await self._wait_data()
                if not self._chunks:
                    return b"".join(parts)
                parts.append(self._take(self._buffered))
        if n == 0:
            return b""
        await self._wait_data()
        if not self._chunks:
            return b""
        return self._take(min(n, self._buffered))

    async def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` with what is available (at least one byte unless at EOF: 0).
        Like ``read`` without allocating: for consumers with their own buffers."""
        target = memoryview(buffer).cast("B")
        if not len(target):
            return 0
        await self._wait_data()
        chunks = self._chunks
        pos, want = 0, min(len(target), self._buffered)
        while pos < want:
            chunk = chunks[0]
            k = min(len(chunk), want - pos)
            target[pos : pos + k] = chunk[:k]
            if k == len(chunk):
                chunks.popleft()
            else:
                chunks[0] = chunk[k:]
            pos += k
        self._buffered -= pos
        if pos:
            self._conn.consumed(self.stream_id, pos)
        return pos

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``EndOfStream`` if the peer half-closes before."""
        self._start_reading()
        if n > self._conn.host.config.mux.stream_window // 2:
            # Waiting for all of it before consuming could exceed the credit we granted
            # (a deadlock): move it out as it arrives instead.
            out = bytearray(n)
            view = memoryview(out)
            got = 0
            while got < n:
                k = await self.readinto(view[got:])
                if k == 0:
                    raise errors.EndOfStream(f"stream ended after {got} of {n} bytes")
                got += k
            return bytes(out)
        while self._buffered < n:
            if self._eof:
                raise errors.EndOfStream(f"stream ended after {self._buffered} of {n} bytes")
            if self._error is not None:
                raise self._error
            self._data.clear()
            await self._data.wait()
        return self._take(n) if n else b""

    async def recv_msg(self, protocol: str | None = None) -> Any:
        """The next length-prefixed ``node.wire`` message (u32 big-endian length)."""
        header = await self.readexactly(MSG_LENGTH_BYTES)
        size = int.from_bytes(header, "big")
        if size > self._conn.host.config.max_message:
            raise errors.FrameTooLarge(f"message of {size} bytes exceeds the limit")
        return wire.decode(await self.readexactly(size), protocol)

    # -- writing ------------------------------------------------------------------------

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``, waiting for flow-control credit and socket drain."""
        conn = self._conn
        view = memoryview(data).cast("B")
        off, total = 0, len(view)
        while off < total:
            self._check_writable()
            if not conn.writable.is_set():
                await conn.writable.wait()  # socket buffer full; the connection times out
                continue
            n = conn.send(self.stream_id, view[off:])
            if n:
                off += n
                continue
            self._credit.clear()  # no await since ``send``: no credit can be missed
            try:
                await asyncio.wait_for(self._credit.wait(), conn.host.config.write_timeout)
            except TimeoutError:
                self.reset("peer stopped reading (no flow-control credit)")
                raise errors.PeerTimeout(f"{self}: no flow-control credit in time") from None

    async def send_msg(self, msg: object) -> None:
        """Send one ``node.wire`` message, length-prefixed."""
        data = wire.encode(msg)
        await self.write(len(data).to_bytes(MSG_LENGTH_BYTES, "big") + data)

    def _check_writable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise errors.LocalError(f"{self} is closed for writing")

    async def close(self) -> None:
        """Half-close: the peer reads EOF after our data. Idempotent."""
        if self._closed or self._error is not None:
            return
        self._closed = True
        self._conn.end_stream(self)

    def reset(self, reason: str = "") -> None:
        """Abort the stream in both directions. Idempotent."""
        if self._error is None:
            self._conn.reset_stream(self, reason)
            self._fail(errors.StreamReset(f"reset locally: {reason or 'no reason'}"))

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.reset(type(exc).__name__)
        else:
            await self.close()

    # -- fed by the connection ----------------------------------------------------------

    def _feed(self, data: memoryview) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self._data.set()

    def _feed_eof(self) -> None:
        self._eof = True
        self._data.set()

    def _fail(self, error: errors.NodeError) -> None:
        if self._error is None:
            self._error = error
            self._chunks.clear()
            self._buffered = 0
        self._data.set()
        self._credit.set()


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection: handshake, then records in and out of the mux."""

    def __init__(self, host: Host, *, initiator: bool, expected_peer: bytes | None = None) -> None:
        self.host = host
        self.initiator = initiator
        self.direction = "outbound" if initiator else "inbound"
        cfg = host.config
        self._handshake: Handshake | None = Handshake(
            host.key,
            host.static_key,
            initiator=initiator,
            prologue=cfg.prologue,
            expected_node_id=expected_peer,
        )
        self.channel: SecureChannel | None = None
        self.mux: Mux | None = None
        self.transport: asyncio.Transport | None = None
        self.peer_id: bytes | None = None
        self.remote_addr: Addr = ("?", 0)
        self.ready: asyncio.Future[None] = host.loop.create_future()
        self.streams: dict[int, Stream] = {}
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = False
        self.rtt: float | None = None
        self._set_buffer(HANDSHAKE_BUFFER)  # the full read buffer only once authenticated
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        host, port = self.remote_addr
        return f"{self.direction} {peer_short(self.peer_id)}@{host}:{port}"

    def _set_buffer(self, size: int, initial: bytes = b"") -> None:
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._buf_addr = ctypes.addressof((ctypes.c_char * size).from_buffer(self._buf))
        self._buf[: len(initial)] = initial
        self._start, self._end = 0, len(initial)

    # -- asyncio protocol callbacks -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.remote_addr = (str(peer[0]), int(peer[1]))
        self.transport.set_write_buffer_limits(high=self.host.config.write_buffer_high)
        refusal = self.host.admit(self)
        if refusal is not None:
            self.abort("limit", refusal, handshake=False)
            return
        self._handshake_timer = self.host.loop.call_later(
            self.host.config.handshake_timeout, self._on_handshake_timeout
        )
        assert self._handshake is not None
        self._write_raw(self._handshake.data_to_send())

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._end == len(self._buf):  # only happens if a message is still incomplete
            self._compact()
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        self.host.metrics.bytes_received.inc(nbytes)
        try:
            if self._handshake is not None:
                self._on_handshake_bytes()
            if self.channel is not None and not self.closed:
                self._on_transport_bytes()
        except errors.RemoteError as exc:
            self.abort(_reason_code(exc), str(exc), handshake=self._handshake is not None)
        except Exception as exc:  # a bug of ours must not kill the event loop
            log.exception("connection %r: internal error", self)
            self.abort("internal", f"internal error: {exc!r}", handshake=False)

    def eof_received(self) -> bool:
        return False  # close the transport: a half-closed TCP connection is useless to us

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            reason = f"connection lost: {exc}" if exc else "peer closed the connection"
            if self._handshake is not None:
                self.host.metrics.handshake_failures.labels(reason="eof").inc()
                log.info("connection %r: handshake failed: %s", self, reason)
            else:
                log.debug("connection %r: %s", self, reason)
        self._shutdown(errors.ConnectionClosed(f"connection to {self!r} closed"))

    def pause_writing(self) -> None:
        self.writable.clear()
        self._stall_timer = self.host.loop.call_later(
            self.host.config.write_timeout, self._on_write_stall
        )

    def resume_writing(self) -> None:
        self.writable.set()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    # -- handshake ----------------------------------------------------------------------

    def _on_handshake_bytes(self) -> None:
        hs = self._handshake
        assert hs is not None
        data = bytes(self._view[self._start : self._end])
        self._start = self._end = 0
        hs.receive_data(data)
        self._write_raw(hs.data_to_send())
        result = hs.result
        if result is None:
            return
        self._handshake = None
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self.peer_id = result.remote_node_id
        self.channel = result.channel
        self.mux = Mux(self.host.config.mux, initiator=self.initiator, now=self.host.loop.time())
        self._set_buffer(self.host.config.read_buffer, result.leftover)
        refusal = self.host.register(self)
        if refusal is not None:
            self.abort("limit", refusal, handshake=False)
            return
        if not self.ready.done():
            self.ready.set_result(None)
        self._schedule_timer()

    def _on_handshake_timeout(self) -> None:
        if self._handshake is not None and not self.closed:
            self.abort("timeout", "handshake timed out", handshake=True)

    # -- transport phase ----------------------------------------------------------------

    def _on_transport_bytes(self) -> None:
        channel, mux = self.channel, self.mux
        assert channel is not None and mux is not None
        buf, view = self._buf, self._view
        pos, end = self._start, self._end
        now = self.host.loop.time()
        while end - pos >= LENGTH_PREFIX:
            size = (buf[pos] << 8) | buf[pos + 1]
            if end - pos - LENGTH_PREFIX < size:
                break
            pos += LENGTH_PREFIX
            record = channel.open(view[pos : pos + size])
            pos += size
            mux.receive_record(record, now)
        self._start = pos
        if pos == end:
            self._start = self._end = 0
        elif len(buf) - end < LENGTH_PREFIX + 65535:
            self._compact()
        self._process_events()
        self.flush()
        self._schedule_timer()

    def _compact(self) -> None:
        size = self._end - self._start
        # memmove: the regions may overlap (slice assignment would be a memcpy).
        ctypes.memmove(self._buf_addr, self._buf_addr + self._start, size)
        self._start, self._end = 0, size

    def _process_events(self) -> None:
        mux = self.mux
        assert mux is not None
        streams = self.streams
        while (ev := mux.next_event()) is not None:
            if type(ev) is DataReceived:  # the hot path first
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream._feed(ev.data)
            elif isinstance(ev, WindowIncreased):
                stream = self.streams.get(ev.stream_id)
                if stream is not None:
                    stream._credit.set()
            elif isinstance(ev, StreamOpened):
                self._on_stream_opened(ev.stream_id, ev.protocol)
            elif isinstance(ev, StreamEnded):
                stream = self.streams.get(ev.stream_id)
                if stream is not None:
                    stream._feed_eof()
                    if stream._closed:
                        self._forget(stream)
            elif isinstance(ev, StreamReset):
                stream = self.streams.pop(ev.stream_id, None)
                self.host.metrics.stream_resets.labels(by="peer").inc()
                if stream is not None:
                    self.host.metrics.streams.dec()
                    reason = ev.reason[:MAX_LOGGED_REASON]
                    stream._fail(errors.StreamReset(f"reset by peer: {reason}"))
            elif isinstance(ev, PingAcknowledged):
                self.rtt = ev.rtt
            elif isinstance(ev, GoAwayReceived):
                log.debug("connection %r: peer is going away (code %d)", self, ev.code)
            elif isinstance(ev, ConnectionTerminated):
                if ev.idle:
                    log.debug("connection %r: closing after the idle timeout", self)
                    self.close()
                else:
                    self.abort("timeout", ev.reason)
                return

    def _on_stream_opened(self, stream_id: int, protocol: str) -> None:
        assert self.mux is not None
        handler = self.host.handler_for(protocol)
        if handler is None:
            log.info("connection %r: reset stream for unknown protocol %r", self, protocol)
            self.mux.reset_stream(stream_id, f"unknown protocol {protocol[:MAX_LOGGED_REASON]}")
            self.host.metrics.stream_resets.labels(by="us").inc()
            return
        stream = Stream(self, stream_id, protocol)
        self.streams[stream_id] = stream
        self.host.metrics.streams.inc()
        self.host.metrics.streams_opened.labels(direction="inbound").inc()
        self.host.spawn(self.host.run_handler(handler, stream), f"handler {stream!r}")

    def _schedule_timer(self) -> None:
        mux = self.mux
        if mux is None or self.closed:
            return
        deadline = mux.get_timer()
        if deadline is None:
            return
        if self._timer is not None:
            if self._timer_at <= deadline:
                return  # firing early is harmless: the mux checks its own deadlines
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.host.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.mux is None or self.closed:
            return
        self.mux.handle_timer(self.host.loop.time())
        self._process_events()
        self.flush()
        self._schedule_timer()

    def _on_write_stall(self) -> None:
        self._stall_timer = None
        if not self.writable.is_set() and not self.closed:
            self.abort("write_timeout", "peer stopped reading (send buffer full)")

    # -- used by streams and the host ---------------------------------------------------

    def _write_raw(self, data: bytes | bytearray) -> None:
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)
            self.host.metrics.bytes_sent.inc(len(data))

    def flush(self) -> None:
        """Seal and write every record the mux has queued."""
        if self.mux is None or self.channel is None or self.closed or self.transport is None:
            return
        records = self.mux.records_to_send()
        if not records:
            return
        sealed = self.channel.seal_many(records)
        self.transport.write(sealed)
        self.host.metrics.bytes_sent.inc(len(sealed))

    def _live_mux(self) -> Mux:
        if self.closed or self.mux is None:
            raise errors.ConnectionClosed(f"connection to {self!r} is closed")
        return self.mux

    def open_stream(self, protocol: str) -> Stream:
        sid = self._live_mux().open_stream(protocol)
        stream = Stream(self, sid, protocol)
        self.streams[sid] = stream
        self.host.metrics.streams.inc()
        self.host.metrics.streams_opened.labels(direction="outbound").inc()
        self.flush()
        return stream

    def send(self, stream_id: int, data: memoryview) -> int:
        n = self._live_mux().send_data(stream_id, data)
        if n:
            self.flush()
        return n

    def consumed(self, stream_id: int, n: int) -> None:
        if self.mux is not None and not self.closed:
            self.mux.consumed(stream_id, n)
            self.flush()

    def end_stream(self, stream: Stream) -> None:
        self._live_mux().end_stream(stream.stream_id)
        self.flush()
        if stream._eof:
            self._forget(stream)

    def reset_stream(self, stream: Stream, reason: str) -> None:
        if self.streams.pop(stream.stream_id, None) is not None:
            self.host.metrics.streams.dec()
        if self.mux is not None and not self.closed:
            self.mux.reset_stream(stream.stream_id, reason)
            self.host.metrics.stream_resets.labels(by="us").inc()
            self.flush()

    def _forget(self, stream: Stream) -> None:
        if self.streams.pop(stream.stream_id, None) is not None:
            self.host.metrics.streams.dec()

    @property
    def usable(self) -> bool:
        mux = self.mux
        return (
            not self.closed
            and mux is not None
            and not mux.peer_going_away
            and not mux.local_going_away
        )

    def close(self) -> None:
        """Clean close: GO_AWAY, flush, close the socket after the buffer drains."""
        if self.closed:
            return
        if self.mux is not None:
            self.mux.go_away()
            self.flush()
        if self.transport is not None:
            self.transport.close()
        self._shutdown(errors.ConnectionClosed("host closed the connection"))

    def abort(self, code: str, reason: str, *, handshake: bool = False) -> None:
        """Drop the connection because of the peer (or a limit), with a logged reason."""
        if self.closed:
            return
        reason = reason[:MAX_LOGGED_REASON]
        if handshake:
            self.host.metrics.handshake_failures.labels(reason=code).inc()
            log.warning("connection %r: handshake failed: %s", self, reason)
        else:
            self.host.metrics.dropped.labels(reason=code).inc()
            log.warning("connection %r dropped: %s", self, reason)
        error: errors.NodeError
        if code in ("timeout", "write_timeout"):
            error = errors.PeerTimeout(reason)
        elif handshake:
            error = errors.HandshakeFailed(reason)
        else:
            error = errors.ConnectionClosed(reason)
        if self.transport is not None:
            self.transport.abort()
        self._shutdown(error)

    def _shutdown(self, error: errors.NodeError) -> None:
        if self.closed:
            return
        self.closed = True
        for handle in (self._timer, self._handshake_timer, self._stall_timer):
            if handle is not None:
                handle.cancel()
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # retrieved: nobody may be waiting (inbound)
        for stream in list(self.streams.values()):
            stream._fail(error)
        self.host.metrics.streams.dec(len(self.streams))
        self.streams.clear()
        self.writable.set()  # wake writers; they see ``closed``
        self.host.unregister(self)


class Host:
    """
    A node's transport endpoint: listens, dials, authenticates and multiplexes.

    ``open_stream`` reuses an authenticated connection to the peer when there is one.
    """

    def __init__(
        self,
        key: NodeKey,
        config: TransportConfig | None = None,
        *,
        registry: Registry | None = None,
    ) -> None:
        self.config = config or TransportConfig()
        self.config.validate()
        self.key = key
        self.node_id = key.node_id
        self.static_key = X25519PrivateKey.generate()
        self.registry = registry or Registry()
        self.metrics = TransportMetrics(self.registry)
        self.listen_addrs: list[Addr] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers: dict[str, Handler] = {}
        self._servers: list[asyncio.Server] = []
        self._conns: set[_Connection] = set()
        self._by_peer: dict[bytes, list[_Connection]] = {}
        self._inbound_per_ip: collections.Counter[str] = collections.Counter()
        self._dialing: dict[bytes, asyncio.Future[_Connection]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_connected: list[PeerCallback] = []
        self._on_disconnected: list[PeerCallback] = []
        self._closing = False

    def __repr__(self) -> str:
        return f"Host({peer_short(self.node_id)})"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- public API ---------------------------------------------------------------------

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> Addr:
        """Accept connections on ``host:port`` (0: an ephemeral port); returns the address."""
        self._check_open()
        server = await self.loop.create_server(
            lambda: _Connection(self, initiator=False), host, port
        )
        self._servers.append(server)
        addr: Addr = ("?", 0)
        for sock in server.sockets:
            name = sock.getsockname()
            addr = (str(name[0]), int(name[1]))
            self.listen_addrs.append(addr)
        log.info("%r listening on %s", self, ", ".join(f"{h}:{p}" for h, p in self.listen_addrs))
        return addr

    def set_handler(self, protocol: str, handler: Handler) -> None:
        """Serve streams of ``protocol`` with ``handler(stream)`` (one task per stream)."""
        self._handlers[protocol] = handler

    def remove_handler(self, protocol: str) -> None:
        self._handlers.pop(protocol, None)

    def on_peer_connected(self, callback: PeerCallback) -> None:
        """Call ``callback(peer_id, remote_addr)`` when the first connection to a peer opens."""
        self._on_connected.append(callback)

    def on_peer_disconnected(self, callback: PeerCallback) -> None:
        """Call ``callback(peer_id, remote_addr)`` when the last connection to a peer closes."""
        self._on_disconnected.append(callback)

    def connected_peers(self) -> list[bytes]:
        """Node ids with at least one authenticated, open connection."""
        return [p for p, conns in self._by_peer.items() if any(c.usable for c in conns)]

    async def open_stream(
        self, peer_id: bytes | None, addrs: Sequence[Addr], protocol: str
    ) -> Stream:
        """
        A new stream to ``peer_id`` for ``protocol``, over an existing connection or a new
        one dialled to ``addrs`` in order. If ``peer_id`` is given the handshake must prove
        it (``HandshakeFailed`` otherwise).
        """
        self._check_open()
        conn = self._usable_connection(peer_id) if peer_id is not None else None
        if conn is None:
            conn = await self._dial(peer_id, addrs)
        return conn.open_stream(protocol)

    async def request(
        self,
        peer_id: bytes | None,
        addrs: Sequence[Addr],
        protocol: str,
        msg: object,
        timeout: float | None = None,  # noqa: ASYNC109 (the documented API)
    ) -> Any:
        """Send one message on a new stream and return the one-message reply."""
        limit = self.config.request_timeout if timeout is None else timeout
        stream: Stream | None = None
        try:
            async with asyncio.timeout(limit):
                stream = await self.open_stream(peer_id, addrs, protocol)
                await stream.send_msg(msg)
                await stream.close()
                reply = await stream.recv_msg()
        except TimeoutError:
            if stream is not None:
                stream.reset("request timed out")
            raise errors.PeerTimeout(f"{protocol} request timed out after {limit}s") from None
        except BaseException:
            if stream is not None:
                stream.reset("request failed")
            raise
        return reply

    async def close(self) -> None:
        """Stop listening, GO_AWAY and close every connection, cancel every task."""
        if self._closing:
            return
        self._closing = True
        for server in self._servers:
            server.close()
        for conn in list(self._conns):
            conn.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()

    # -- internals used by connections --------------------------------------------------

    def _check_open(self) -> None:
        if self._closing:
            raise errors.LocalError(f"{self!r} is closed")

    def handler_for(self, protocol: str) -> Handler | None:
        return None if self._closing else self._handlers.get(protocol)

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = self.loop.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run_handler(self, handler: Handler, stream: Stream) -> None:
        try:
            await handler(stream)
        except asyncio.CancelledError:
            stream.reset("host closing")
            raise
        except errors.RemoteError as exc:
            log.warning("peer %s on %s: %s", peer_short(stream.peer_id), stream.protocol, exc)
            stream.reset(type(exc).__name__)
        except Exception:
            log.exception("handler for %s failed on %r", stream.protocol, stream)
            stream.reset("internal error")
        else:
            with contextlib.suppress(errors.NodeError):
                await stream.close()

    def admit(self, conn: _Connection) -> str | None:
        """Connection limits at TCP accept/connect time: a refusal reason or ``None``."""
        if self._closing:
            return "host is closing"
        if len(self._conns) >= self.config.max_connections:
            return f"connection limit ({self.config.max_connections}) reached"
        if not conn.initiator:
            ip = conn.remote_addr[0]
            if self._inbound_per_ip[ip] >= self.config.max_connections_per_ip:
                return f"per-IP limit ({self.config.max_connections_per_ip}) reached for {ip}"
            self._inbound_per_ip[ip] += 1
        self._conns.add(conn)
        return None

    def register(self, conn: _Connection) -> str | None:
        """An authenticated connection: index it by peer, tell the listeners."""
        peer = conn.peer_id
        assert peer is not None
        if peer == self.node_id:
            return "connected to ourselves"
        conns = self._by_peer.setdefault(peer, [])
        conns.append(conn)
        self.metrics.connections.labels(direction=conn.direction).inc()
        self.metrics.connections_opened.labels(direction=conn.direction).inc()
        log.debug("connection %r authenticated", conn)
        if len(conns) == 1:
            self._notify(self._on_connected, peer, conn.remote_addr)
        return None

    def unregister(self, conn: _Connection) -> None:
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        if not conn.initiator:
            ip = conn.remote_addr[0]
            self._inbound_per_ip[ip] -= 1
            if self._inbound_per_ip[ip] <= 0:
                del self._inbound_per_ip[ip]
        peer = conn.peer_id
        conns = self._by_peer.get(peer) if peer is not None else None
        if peer is None or conns is None or conn not in conns:
            return
        conns.remove(conn)
        self.metrics.connections.labels(direction=conn.direction).dec()
        if not conns:
            del self._by_peer[peer]
            self._notify(self._on_disconnected, peer, conn.remote_addr)

    def _notify(self, callbacks: list[PeerCallback], peer: bytes, addr: Addr) -> None:
        for callback in callbacks:
            try:
                callback(peer, addr)
            except Exception:
                log.exception("peer callback %r failed", callback)

    def _usable_connection(self, peer_id: bytes) -> _Connection | None:
        for conn in self._by_peer.get(peer_id, ()):
            if conn.usable:
                return conn
        return None

    async def _dial(self, peer_id: bytes | None, addrs: Sequence[Addr]) -> _Connection:
        if peer_id is not None:
            pending = self._dialing.get(peer_id)
            if pending is not None:
                try:
                    return await asyncio.shield(pending)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if not pending.cancelled() or (task is not None and task.cancelling()):
                        raise  # we are being cancelled ourselves
                    # The dial we joined was given up by its owner (its own timeout or
                    # cancellation), not by us: dial again under our own deadline.
                    return await self._dial(peer_id, addrs)
            future: asyncio.Future[_Connection] = self.loop.create_future()
            self._dialing[peer_id] = future
            try:
                conn = await self._dial_addrs(peer_id, addrs)
            except asyncio.CancelledError:
                future.cancel()
                raise
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # retrieved even if nobody else waits
                raise
            else:
                future.set_result(conn)
                return conn
            finally:
                del self._dialing[peer_id]
        return await self._dial_addrs(None, addrs)

    async def _dial_addrs(self, peer_id: bytes | None, addrs: Sequence[Addr]) -> _Connection:
        if not addrs:
            raise errors.LocalError("no address to dial")
        last: errors.NodeError | None = None
        for host, port in addrs:
            try:
                return await self._connect(host, port, peer_id)
            except errors.RemoteError as exc:
                last = exc
                log.info("dial %s:%d (%s) failed: %s", host, port, peer_short(peer_id), exc)
        assert last is not None
        raise last

    async def _connect(self, host: str, port: int, peer_id: bytes | None) -> _Connection:
        timeout = self.config.handshake_timeout
        conn: _Connection | None = None

        def factory() -> _Connection:
            nonlocal conn
            conn = _Connection(self, initiator=True, expected_peer=peer_id)
            return conn

        try:
            async with asyncio.timeout(timeout):
                await self.loop.create_connection(factory, host, port)
                assert conn is not None
                await conn.ready
        except TimeoutError:
            if conn is not None:
                conn.abort("timeout", f"dial timed out after {timeout}s", handshake=True)
            raise errors.PeerTimeout(f"dial {host}:{port} timed out after {timeout}s") from None
        except OSError as exc:
            raise errors.ConnectionClosed(f"cannot connect to {host}:{port}: {exc}") from None
        except asyncio.CancelledError:
            if conn is not None:
                conn.abort("cancelled", "dial cancelled", handshake=True)
            raise
        assert conn is not None
        return conn
