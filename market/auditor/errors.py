"""
The error tree of ``market.auditor``.

``LocalError``: our misuse or a bad local file (configuration, home directory, database).
``RemoteError``: the chain's RPC node or a provider misbehaved: it went away, answered
garbage, or served data that does not verify. A remote error is logged and retried; it
never stops the daemon and never reaches the database as data.
"""

from __future__ import annotations


class AuditorError(Exception):
    """Root of every error raised by ``market.auditor``."""


class LocalError(AuditorError):
    """We asked for something impossible: bad arguments, configuration or home directory."""


class ConfigError(LocalError):
    """``config.toml`` is missing, unreadable or has a bad value."""


class HomeError(LocalError):
    """The home directory is missing pieces (not initialised) or already initialised."""


class RemoteError(AuditorError):
    """The RPC node or a peer misbehaved."""


class RpcError(RemoteError):
    """The JSON-RPC endpoint is unreachable, or answered with an error."""


class RpcGarbage(RpcError):
    """The JSON-RPC endpoint answered something that is not a well-formed, consistent reply."""


class ReorgDetected(RemoteError):
    """The chain changed under a range being indexed (a block hash moved); retry the step."""


class MalformedProof(RemoteError):
    """A proof transaction whose calldata does not decode as ``submit_proof``."""
