"""
The error tree of ``prover``.

``LocalError``: our configuration, our files or our own misuse (a bad config value, a home
directory that was never initialised, a full disk, an illegal state transition).
``RemoteError``: a client or the chain misbehaved or is unreachable (a malformed or
underpriced proposal, a piece whose bytes do not match its root, an RPC endpoint that is
down). A remote error is answered (``DealFailed``, a refusal) or retried; it never takes the
daemon down.

The command line maps each branch onto its own exit code (``prover.cli``).
"""

from __future__ import annotations


class ProverError(Exception):
    """Root of every error raised by ``prover``."""


class LocalError(ProverError):
    """Something on our side is wrong: configuration, files, or a bug."""


class ConfigError(LocalError):
    """A configuration file or option that is missing, malformed or out of range."""


class HomeError(LocalError):
    """The data directory is missing, not initialised, or initialised twice."""


class StorageError(LocalError):
    """The blob store cannot hold or read a piece (full disk, missing or rotten file)."""


class NoSpace(StorageError):
    """Not enough capacity or disk space for a piece."""


class PieceMissing(StorageError):
    """A piece we should hold is not on disk, or its bytes no longer match its root."""

    def __init__(self, root: bytes, reason: str) -> None:
        super().__init__(f"piece {root.hex()[:16]}: {reason}")
        self.root = root
        self.reason = reason


class IllegalTransition(LocalError):
    """A state machine (deal lifecycle, proving round) was driven through a missing edge."""


class DatabaseError(LocalError):
    """The metadata database cannot be opened, migrated or written."""


class RemoteError(ProverError):
    """A peer or the chain misbehaved or could not be reached."""


class ProposalRefused(RemoteError):
    """A deal proposal that fails an admission check; ``reason`` is sent to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DealAborted(RemoteError):
    """An admitted deal that could not be completed (no upload, bad upload, chain refusal)."""


class ChainUnavailable(RemoteError):
    """The chain's RPC endpoint is unreachable, or the chain is not the one we know."""
