"""
The errors of ``node.pieces``: one root, ``PiecesError``, under ``node.errors.NodeError``.

Each error is also a ``LocalError`` (the caller asked for something impossible: a path
that cannot be read, a full disk, a wrong key) or a ``RemoteError`` (bytes that came from
elsewhere are damaged or forged: a share, a chunk, a manifest), so that code written
against the node's error tree handles them without knowing this package.
"""

from __future__ import annotations

from node.errors import BadSignature, LocalError, NodeError, RemoteError


class PiecesError(NodeError):
    """Root of every error raised by ``node.pieces``."""


class InvalidArgument(PiecesError, LocalError):
    """A parameter outside its domain: a secret of the wrong length, k > n, a bad index."""


class UnreadableInput(PiecesError, LocalError):
    """The input path does not exist, is not a regular file, cannot be read or changed size
    while it was read."""


class UnwritableOutput(PiecesError, LocalError):
    """The output directory or file cannot be created or written."""


class NoSpace(PiecesError, LocalError):
    """The destination's file system has less free space than the output needs."""

    def __init__(self, directory: str, needed: int, available: int) -> None:
        super().__init__(
            f"{directory}: {needed} bytes needed, only {available} bytes free; nothing written"
        )
        self.directory = directory
        self.needed = needed
        self.available = available

    def __reduce__(self) -> tuple[type, tuple[str, int, int]]:
        return type(self), (self.directory, self.needed, self.available)


class WrongKey(PiecesError, LocalError):
    """The secret does not open this manifest (its key check does not match)."""


class NotEnoughShares(PiecesError):
    """Fewer than ``k`` usable shares (or chunks of a stripe) to rebuild the file."""

    def __init__(self, message: str, excluded: dict[int, str] | None = None) -> None:
        super().__init__(message)
        self.excluded = dict(excluded or {})
        """Share index -> why that share was not used (corrupt, missing, wrong size)."""

    def __reduce__(self) -> tuple[type, tuple[str, dict[int, str]]]:
        return type(self), (str(self), self.excluded)


class Tampered(PiecesError, RemoteError):
    """Data failed authentication: an AEAD chunk, the keyed plaintext digest, or a chunk
    that does not match its layer. Never returns unauthenticated plaintext."""


class CorruptShare(PiecesError, RemoteError):
    """A share (piece) whose bytes do not match its committed root or layer."""

    def __init__(self, message: str, share_index: int | None = None) -> None:
        super().__init__(message)
        self.share_index = share_index

    def __reduce__(self) -> tuple[type, tuple[str, int | None]]:
        return type(self), (str(self), self.share_index)


class ManifestError(PiecesError, RemoteError):
    """A manifest that cannot be accepted."""


class ManifestMalformed(ManifestError):
    """Not a well-formed, canonically encoded version-1 manifest."""


class ManifestVersion(ManifestError):
    """A manifest written by a newer format version than this software reads."""

    def __init__(self, version: int, supported: int) -> None:
        super().__init__(
            f"manifest format version {version} is newer than the supported version "
            f"{supported}; upgrade Depot to read it"
        )
        self.version = version
        self.supported = supported

    def __reduce__(self) -> tuple[type, tuple[int, int]]:
        return type(self), (self.version, self.supported)


class ManifestSignature(ManifestError, BadSignature):
    """The manifest's signature is malformed or was not made by the owner it names."""
