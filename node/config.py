"""
Configuration of the transport: one documented, frozen dataclass per component.

Sizes are bytes, times are seconds. ``validate()`` is called by the component that takes
the config, so a bad value is a ``LocalError`` at start-up, not a surprise under load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Final

from node.errors import LocalError
from node.wire import MAX_MESSAGE

KIB: Final = 1024
MIB: Final = 1024 * KIB

NOISE_MAX_MESSAGE: Final = 65535
"""Noise spec rev 34 section 3: no Noise message is larger than 65535 bytes."""
NOISE_TAG_LEN: Final = 16
MAX_RECORD: Final = NOISE_MAX_MESSAGE - NOISE_TAG_LEN
"""Largest plaintext carried by one Noise transport message: one mux record."""
INITIAL_WINDOW: Final = 256 * KIB
"""Every stream starts with this much send credit in each direction (as in yamux)."""


@dataclass(frozen=True)
class MuxConfig:
    """The stream multiplexer of one connection (``node.mux``)."""

    stream_window: int = 4 * MIB
    """Receive window of each stream: how much a peer may send before we read it. The
    memory one connection can pin is at most ``max_streams * stream_window``."""
    max_streams: int = 128
    """Streams the peer may have open towards us at once; more are reset on arrival."""
    max_record: int = MAX_RECORD
    """Largest plaintext record handed to the encryption layer (whole frames only)."""
    max_protocol_len: int = 128
    """Longest protocol id accepted in a stream's opening frame."""
    keepalive_interval: float = 15.0
    """Send a ping after this long without hearing from the peer."""
    ping_timeout: float = 10.0
    """A ping not answered within this is a half-open connection: the connection is closed."""
    idle_timeout: float = 300.0
    """Close a connection that had no open stream for this long."""

    def validate(self) -> None:
        if self.stream_window < INITIAL_WINDOW or self.stream_window >= 2**31:
            raise LocalError(f"stream_window must be in [{INITIAL_WINDOW}, 2**31)")
        if not 64 <= self.max_record <= MAX_RECORD:
            raise LocalError(f"max_record must be in [64, {MAX_RECORD}]")
        if self.max_streams < 1 or self.max_protocol_len < 1:
            raise LocalError("max_streams and max_protocol_len must be positive")
        if min(self.keepalive_interval, self.ping_timeout, self.idle_timeout) <= 0:
            raise LocalError("mux timers must be positive")


@dataclass(frozen=True)
class TransportConfig:
    """A ``node.transport.Host``: sockets, limits and timeouts around Noise and the mux."""

    mux: MuxConfig = field(default_factory=MuxConfig)
    max_connections: int = 1024
    """Open connections (both directions); inbound ones above this are refused."""
    max_connections_per_ip: int = 32
    """Inbound connections from one IP address."""
    handshake_timeout: float = 10.0
    """Time for the TCP connect plus the whole Noise handshake."""
    write_timeout: float = 30.0
    """How long a writer may wait for a peer that does not read (socket buffer full, or
    no flow-control credit on a stream) before the connection or stream is dropped."""
    request_timeout: float = 30.0
    """Default timeout of ``Host.request``."""
    max_message: int = MAX_MESSAGE
    """Largest length-prefixed wire message accepted by ``Stream.recv_msg``."""
    read_buffer: int = 512 * KIB
    """Receive buffer of each authenticated connection (the socket is read straight into
    it). Unauthenticated connections use 16 KiB, so a flood of handshakes stays cheap."""
    write_buffer_high: int = 4 * MIB
    """Pause writers when this many bytes wait in the socket's send buffer."""
    prologue: bytes = b"depot/1"
    """Noise prologue: both sides must agree on it (it versions the whole transport)."""

    def validate(self) -> None:
        self.mux.validate()
        if self.max_connections < 1 or self.max_connections_per_ip < 1:
            raise LocalError("connection limits must be positive")
        if min(self.handshake_timeout, self.write_timeout, self.request_timeout) <= 0:
            raise LocalError("transport timeouts must be positive")
        if self.read_buffer < 2 * (NOISE_MAX_MESSAGE + 2):
            raise LocalError("read_buffer must hold at least two Noise messages")
        if self.max_message < 1 or self.write_buffer_high < 1:
            raise LocalError("max_message and write_buffer_high must be positive")

    def replace(self, **changes: object) -> TransportConfig:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
