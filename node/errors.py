"""
The error tree of ``node``.

``LocalError``: we misused an API or broke our own invariant (a bug here).
``RemoteError``: a peer sent something malformed, oversized, unsigned or out of protocol.
A ``RemoteError`` is answered or logged and the offending connection or stream is dropped;
it never takes the node down.
"""


class NodeError(Exception):
    """Root of every error raised by ``node``."""


class LocalError(NodeError):
    """We asked for something impossible: a misuse of the API or a broken invariant."""


class RemoteError(NodeError):
    """A peer misbehaved. Carries no blame beyond the connection it came from."""


class DecodeError(RemoteError):
    """Bytes from the network that do not decode to a known, well-formed message."""


class ProtocolViolation(RemoteError):
    """A well-formed message that is not allowed in the current state."""


class FrameTooLarge(RemoteError):
    """A frame or message above the configured size limit."""


class BadSignature(RemoteError):
    """A signature that does not verify, or a record signed by the wrong key."""


class HandshakeFailed(RemoteError):
    """The Noise handshake failed or the peer's identity did not match."""


class PeerTimeout(RemoteError):
    """A peer did not answer, or stopped reading, within the configured time."""


class StreamReset(RemoteError):
    """The peer (or the connection's end) reset a stream before it was done."""


class KeyFileError(LocalError):
    """A node key file that cannot be read: corrupt, wrong format or too open permissions."""


class ConnectionClosed(RemoteError):
    """The connection went away (peer closed, reset or timed out) while an operation used it."""


class EndOfStream(RemoteError):
    """The peer half-closed a stream before the data we needed (``readexactly``)."""
