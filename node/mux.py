"""
Stream multiplexer, sans-I/O: many streams over one encrypted connection.

Modelled on yamux (hashicorp/yamux ``spec.md``), with two changes that suit a transport
whose unit is the Noise message:

* Frames travel in *records* (one record = the plaintext of one Noise transport message,
  at most ``MuxConfig.max_record`` bytes) and a frame never crosses a record boundary, so
  a received record is parsed in place and stream data is handed out as zero-copy views
  of the decrypted record.
* A stream opens with a DATA frame flagged SYN whose payload is the protocol id, and a
  reset (RST) may carry a UTF-8 reason as payload.

Frame header, 12 bytes, big-endian (as yamux)::

    version u8 (0) | type u8 | flags u16 | stream id u32 | length u32

======  ==============  ============================================================
type    name            ``length`` means
======  ==============  ============================================================
0       DATA            payload bytes that follow (data, protocol id on SYN, reason on RST)
1       WINDOW_UPDATE   credit added to the stream's send window
2       PING            opaque value echoed back (stream id 0; SYN asks, ACK answers)
3       GO_AWAY         reason code (stream id 0): no new streams on this connection
======  ==============  ============================================================

Flags: SYN 1 (open), ACK 2 (accept), FIN 4 (half-close), RST 8 (abort). Stream ids: the
dialer uses odd ids, the listener even ids, each strictly increasing; 0 is the session.

Flow control: each stream starts with ``INITIAL_WINDOW`` of credit in each direction; once
the application first reads a stream, its receiver raises the window to the configured
``stream_window``; from then on credit is returned as the application *consumes* data. A
peer that sends beyond its credit commits a ``ProtocolViolation`` and loses the connection.
A reader that stops reading therefore stalls only its own stream: the connection keeps
carrying every other stream. The memory a peer can pin is bounded by ``max_streams *
INITIAL_WINDOW`` for streams nobody reads, ``stream_window`` for a stream being read.

Time is passed in (``now``); ``get_timer()`` / ``handle_timer(now)`` drive keepalive pings,
half-open detection (an unanswered ping) and the idle timeout.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

from node.config import INITIAL_WINDOW, MuxConfig
from node.errors import DecodeError, FrameTooLarge, LocalError, ProtocolViolation

VERSION: Final = 0
HEADER = struct.Struct(">BBHII")
HEADER_LEN: Final = HEADER.size
MAX_WINDOW: Final = 2**31 - 1
MAX_REASON: Final = 256
WINDOW_UPDATE_FRACTION: Final = 2
"""Return credit once half the window has been consumed (as yamux)."""


class FrameType:
    """Frame types (plain ints, not an enum: they are tested per frame on the hot path)."""

    DATA: Final = 0
    WINDOW_UPDATE: Final = 1
    PING: Final = 2
    GO_AWAY: Final = 3


class Flag:
    """Frame flags, a bit set."""

    NONE: Final = 0
    SYN: Final = 1
    ACK: Final = 2
    FIN: Final = 4
    RST: Final = 8


class GoAwayCode(enum.IntEnum):
    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


# --------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamOpened:
    """The peer opened a stream."""

    stream_id: int
    protocol: str
    """The protocol id from the opening frame."""


@dataclass(frozen=True)
class DataReceived:
    """Stream data arrived. Give credit back with ``Mux.consumed`` once it is read."""

    stream_id: int
    data: memoryview
    """A view into the decrypted record (no copy)."""


@dataclass(frozen=True)
class StreamEnded:
    """The peer half-closed the stream (FIN): no more data will arrive on it."""

    stream_id: int


@dataclass(frozen=True)
class StreamReset:
    """The peer aborted the stream (RST)."""

    stream_id: int
    reason: str


@dataclass(frozen=True)
class WindowIncreased:
    """The peer granted more send credit on a stream: blocked writers may continue."""

    stream_id: int
    window: int
    """The stream's send window now."""


@dataclass(frozen=True)
class PingAcknowledged:
    """A ping we sent was answered."""

    rtt: float


@dataclass(frozen=True)
class GoAwayReceived:
    """The peer will accept no new streams; existing streams go on."""

    code: int


@dataclass(frozen=True)
class ConnectionTerminated:
    """The connection is finished: the adapter closes it."""

    reason: str
    idle: bool
    """True for a clean close after the idle timeout (GO_AWAY is queued); False when the
    peer stopped answering pings (a half-open connection)."""


MuxEvent = (
    StreamOpened
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowIncreased
    | PingAcknowledged
    | GoAwayReceived
    | ConnectionTerminated
)


# --------------------------------------------------------------------------------------
# The state machine
# --------------------------------------------------------------------------------------


class _Stream:
    __slots__ = (
        "grown",
        "local_fin",
        "pending_credit",
        "recv_window",
        "remote_fin",
        "send_window",
    )

    def __init__(self) -> None:
        self.send_window = INITIAL_WINDOW
        self.recv_window = INITIAL_WINDOW
        self.pending_credit = 0
        self.grown = False  # has the receive window been raised to ``stream_window``?
        self.local_fin = False
        self.remote_fin = False


_Frame = tuple[bytes, "bytes | memoryview | None"]


class Mux:
    """
    One connection's multiplexer. ``initiator`` is the dialer (odd stream ids).

    Inbound: ``receive_record(record, now)`` then ``next_event()`` until ``None``.
    Outbound: ``open_stream``, ``send_data``, ``end_stream``, ``reset_stream``, ``consumed``,
    ``ping``, ``go_away``; then ``records_to_send()`` gives the plaintext records to seal.
    A ``RemoteError`` from ``receive_record`` means the peer broke the protocol: drop it.
    """

    def __init__(self, config: MuxConfig, *, initiator: bool, now: float) -> None:
        config.validate()
        self.config = config
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1 if initiator else 2
        self._peer_parity = 0 if initiator else 1
        self._peer_max_id = 0
        self._peer_streams = 0
        self._events: deque[MuxEvent] = deque()
        self._out: list[_Frame] = []
        self._max_payload = config.max_record - HEADER_LEN
        self._last_received = now
        self._idle_since: float | None = now
        self._ping_sent_at: float | None = None
        self._ping_value = 0
        self._ping_deadline: float | None = None
        self.local_going_away = False
        self.peer_going_away = False
        self.terminated = False

    # -- outbound API -------------------------------------------------------------------

    def open_stream(self, protocol: str) -> int:
        """Open a stream for ``protocol``; returns its id. Data may be sent at once."""
        if self.terminated or self.local_going_away or self.peer_going_away:
            raise LocalError("connection is going away: no new streams")
        raw = protocol.encode()
        if not raw or len(raw) > self.config.max_protocol_len:
            raise LocalError(f"protocol id must be 1..{self.config.max_protocol_len} bytes")
        sid = self._next_id
        self._next_id += 2
        if sid > 0xFFFFFFFF:
            raise LocalError("stream ids exhausted on this connection")
        self._streams[sid] = _Stream()
        self._idle_since = None
        self._frame(FrameType.DATA, Flag.SYN, sid, raw)
        return sid

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """
        Queue as much of ``data`` as the stream's send window allows; return that count.

        The mux keeps views of ``data`` until ``records_to_send()``: do not mutate it before.
        """
        st = self._writable(stream_id)
        n = min(len(data), st.send_window)
        if n == 0:
            return 0
        st.send_window -= n
        view = memoryview(data)
        step = self._max_payload
        for off in range(0, n, step):
            chunk = view[off : min(off + step, n)]
            self._out.append(
                (HEADER.pack(VERSION, FrameType.DATA, 0, stream_id, len(chunk)), chunk)
            )
        return n

    def send_window(self, stream_id: int) -> int:
        """Bytes ``send_data`` would accept now (0 for a closed stream)."""
        st = self._streams.get(stream_id)
        return 0 if st is None or st.local_fin else st.send_window

    def end_stream(self, stream_id: int) -> None:
        """Half-close: we send no more data on this stream (FIN)."""
        st = self._writable(stream_id)
        st.local_fin = True
        self._frame(FrameType.DATA, Flag.FIN, stream_id, b"")
        self._maybe_forget(stream_id, st)

    def reset_stream(self, stream_id: int, reason: str = "") -> None:
        """Abort a stream in both directions (RST). Unknown or finished streams are ignored."""
        if self._streams.pop(stream_id, None) is None:
            return
        self._on_forget(stream_id)
        payload = reason.encode()[:MAX_REASON]
        self._frame(FrameType.DATA, Flag.RST, stream_id, payload)

    def consumed(self, stream_id: int, n: int) -> None:
        """
        The application read ``n`` bytes of the stream: return credit to the peer.

        The first call (even with ``n == 0``) also raises the window from
        ``INITIAL_WINDOW`` to ``stream_window``: a stream nobody reads pins little memory.
        """
        st = self._streams.get(stream_id)
        if st is None or st.remote_fin:
            return
        st.pending_credit += n
        if not st.grown:
            st.grown = True
            st.pending_credit += self.config.stream_window - INITIAL_WINDOW
        elif st.pending_credit < self.config.stream_window // WINDOW_UPDATE_FRACTION:
            return
        if st.pending_credit:
            delta, st.pending_credit = st.pending_credit, 0
            st.recv_window += delta
            self._frame(FrameType.WINDOW_UPDATE, Flag.NONE, stream_id, delta)

    def ping(self, now: float) -> None:
        """Send a ping (keepalive and RTT); answered by ``PingAcknowledged``."""
        if self._ping_sent_at is not None:
            return
        self._ping_value = (self._ping_value + 1) & 0xFFFFFFFF
        self._ping_sent_at = now
        self._ping_deadline = now + self.config.ping_timeout
        self._frame(FrameType.PING, Flag.SYN, 0, self._ping_value)

    def go_away(self, code: GoAwayCode = GoAwayCode.NORMAL) -> None:
        """Tell the peer we accept no new streams (clean close starts here)."""
        if not self.local_going_away:
            self.local_going_away = True
            self._frame(FrameType.GO_AWAY, Flag.NONE, 0, int(code))

    def records_to_send(self) -> list[bytearray]:
        """Pack queued frames into records of at most ``max_record`` bytes."""
        if not self._out:
            return []
        records: list[bytearray] = []
        record = bytearray()
        limit = self.config.max_record
        for header, payload in self._out:
            size = HEADER_LEN + (len(payload) if payload is not None else 0)
            if len(record) + size > limit:
                records.append(record)
                record = bytearray()
            record += header
            if payload:
                record += payload
        records.append(record)
        self._out.clear()
        return records

    # -- inbound ------------------------------------------------------------------------

    def receive_record(self, record: bytes, now: float) -> None:
        """
        Parse one record (whole frames). Raises ``DecodeError``, ``FrameTooLarge`` or
        ``ProtocolViolation`` when the peer breaks the protocol.
        """
        if self.terminated:
            return
        self._last_received = now
        view = memoryview(record)
        end = len(record)
        if end > self.config.max_record:
            raise FrameTooLarge(f"record of {end} bytes exceeds {self.config.max_record}")
        pos = 0
        while pos < end:
            if end - pos < HEADER_LEN:
                raise DecodeError("truncated frame header")
            version, ftype, flags, sid, length = HEADER.unpack_from(record, pos)
            pos += HEADER_LEN
            if version != VERSION:
                raise DecodeError(f"unsupported mux version {version}")
            if ftype == FrameType.DATA:
                if length > end - pos:
                    raise DecodeError("data frame crosses its record")
                st = self._streams.get(sid) if not flags else None
                if st is not None and 0 < length <= st.recv_window and not st.remote_fin:
                    # The bulk case, inlined: plain data within the window of an open stream.
                    st.recv_window -= length
                    self._events.append(DataReceived(sid, view[pos : pos + length]))
                else:
                    self._on_data(sid, flags, view[pos : pos + length])
                pos += length
            elif ftype == FrameType.WINDOW_UPDATE:
                self._on_window_update(sid, flags, length)
            elif ftype == FrameType.PING:
                self._on_ping(sid, flags, length, now)
            elif ftype == FrameType.GO_AWAY:
                if sid != 0:
                    raise ProtocolViolation("GO_AWAY on a stream")
                self.peer_going_away = True
                self._events.append(GoAwayReceived(length))
            else:
                raise DecodeError(f"unknown frame type {ftype}")

    def next_event(self) -> MuxEvent | None:
        return self._events.popleft() if self._events else None

    # -- timers -------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must next be called (``None``: never)."""
        if self.terminated:
            return None
        deadlines = [
            self._ping_deadline
            if self._ping_deadline is not None
            else self._last_received + self.config.keepalive_interval
        ]
        if self._idle_since is not None:
            deadlines.append(self._idle_since + self.config.idle_timeout)
        return min(deadlines)

    def handle_timer(self, now: float) -> None:
        if self.terminated:
            return
        if self._ping_deadline is not None and now >= self._ping_deadline:
            self._terminate(
                "ping timeout: the peer stopped answering (half-open connection)", idle=False
            )
        elif self._idle_since is not None and now >= self._idle_since + self.config.idle_timeout:
            self.go_away()
            self._terminate("idle timeout", idle=True)
        elif (
            self._ping_sent_at is None
            and now >= self._last_received + self.config.keepalive_interval
        ):
            self.ping(now)

    # -- internals ----------------------------------------------------------------------

    def _frame(self, ftype: int, flags: int, sid: int, value: bytes | int) -> None:
        if isinstance(value, int):
            self._out.append((HEADER.pack(VERSION, ftype, flags, sid, value), None))
        else:
            self._out.append((HEADER.pack(VERSION, ftype, flags, sid, len(value)), value))

    def _writable(self, stream_id: int) -> _Stream:
        st = self._streams.get(stream_id)
        if st is None:
            raise LocalError(f"stream {stream_id} is not open")
        if st.local_fin:
            raise LocalError(f"stream {stream_id} is closed for writing")
        return st

    def _terminate(self, reason: str, *, idle: bool) -> None:
        self.terminated = True
        self._events.append(ConnectionTerminated(reason, idle))

    def _maybe_forget(self, sid: int, st: _Stream) -> None:
        if st.local_fin and st.remote_fin:
            del self._streams[sid]
            self._on_forget(sid)

    def _on_forget(self, sid: int) -> None:
        if (sid & 1) == self._peer_parity:
            self._peer_streams -= 1
        if not self._streams:
            self._idle_since = self._last_received

    def _known_closed(self, sid: int) -> bool:
        """A stream id that was opened once and is finished (late frames are ignored)."""
        if (sid & 1) == self._peer_parity:
            return 0 < sid <= self._peer_max_id
        return 0 < sid < self._next_id

    def _on_data(self, sid: int, flags: int, payload: memoryview) -> None:
        if flags & Flag.SYN:
            self._on_syn(sid, payload)
            return
        st = self._streams.get(sid)
        if st is None:
            if self._known_closed(sid):
                return
            raise ProtocolViolation(f"data on stream {sid} that was never opened")
        if flags & Flag.RST:
            self._on_rst(sid, payload)
            return
        if payload:
            if st.remote_fin:
                raise ProtocolViolation(f"data after FIN on stream {sid}")
            if len(payload) > st.recv_window:
                raise ProtocolViolation(
                    f"stream {sid} exceeded its window ({len(payload)} > {st.recv_window})"
                )
            st.recv_window -= len(payload)
            self._events.append(DataReceived(sid, payload))
        if flags & Flag.FIN:
            self._on_fin(sid, st)

    def _on_syn(self, sid: int, payload: memoryview) -> None:
        if (sid & 1) != self._peer_parity or sid <= self._peer_max_id:
            raise ProtocolViolation(f"peer opened stream {sid} out of order or with our parity")
        self._peer_max_id = sid
        if self.local_going_away:
            self._frame(FrameType.DATA, Flag.RST, sid, b"going away")
            return
        if self._peer_streams >= self.config.max_streams:
            self._frame(FrameType.DATA, Flag.RST, sid, b"too many streams")
            return
        if len(payload) > self.config.max_protocol_len:
            self._frame(FrameType.DATA, Flag.RST, sid, b"protocol id too long")
            return
        try:
            protocol = bytes(payload).decode()
        except UnicodeDecodeError:
            self._frame(FrameType.DATA, Flag.RST, sid, b"protocol id is not UTF-8")
            return
        self._streams[sid] = _Stream()
        self._peer_streams += 1
        self._idle_since = None
        self._frame(FrameType.WINDOW_UPDATE, Flag.ACK, sid, 0)
        self._events.append(StreamOpened(sid, protocol))

    def _on_rst(self, sid: int, payload: memoryview) -> None:
        del self._streams[sid]
        self._on_forget(sid)
        reason = bytes(payload[:MAX_REASON]).decode(errors="replace")
        self._events.append(StreamReset(sid, reason))

    def _on_fin(self, sid: int, st: _Stream) -> None:
        if st.remote_fin:
            raise ProtocolViolation(f"second FIN on stream {sid}")
        st.remote_fin = True
        self._events.append(StreamEnded(sid))
        self._maybe_forget(sid, st)

    def _on_window_update(self, sid: int, flags: int, delta: int) -> None:
        if flags & Flag.SYN:
            raise ProtocolViolation("a stream opens with a DATA frame, not WINDOW_UPDATE")
        st = self._streams.get(sid)
        if st is None:
            if self._known_closed(sid):
                return
            raise ProtocolViolation(f"window update on stream {sid} that was never opened")
        if flags & Flag.RST:
            self._on_rst(sid, memoryview(b""))
            return
        if delta:
            st.send_window += delta
            if st.send_window > MAX_WINDOW:
                raise ProtocolViolation(f"stream {sid} send window overflow")
            if not st.local_fin:
                self._events.append(WindowIncreased(sid, st.send_window))
        if flags & Flag.FIN:
            self._on_fin(sid, st)

    def _on_ping(self, sid: int, flags: int, value: int, now: float) -> None:
        if sid != 0:
            raise ProtocolViolation("PING on a stream")
        if flags & Flag.SYN:
            self._frame(FrameType.PING, Flag.ACK, 0, value)
        elif flags & Flag.ACK:
            if self._ping_sent_at is not None and value == self._ping_value:
                self._events.append(PingAcknowledged(now - self._ping_sent_at))
                self._ping_sent_at = None
                self._ping_deadline = None
        else:
            raise ProtocolViolation("PING without SYN or ACK")
