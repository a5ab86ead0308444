"""
Node identity: an Ed25519 key kept in the node's data directory.

The node id is ``sha256(raw Ed25519 public key)`` (32 bytes). It is what the ledger records
for a provider and what Kademlia routes on, so a node id cannot be chosen freely: it is
bound to a key the node proves it holds (the Noise handshake, signed records).

Key file format: PKCS#8 PEM, unencrypted (``openssl pkey -in node.key`` reads it), written
atomically (temporary file, fsync, rename, fsync of the directory) with mode 0600. A file
that is readable by group or others is refused, as ssh does.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from node.errors import BadSignature, KeyFileError, LocalError

NODE_ID_LEN: Final = 32
PUBLIC_KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
SEED_LEN: Final = 32
SHORT_ID_HEX: Final = 8
"""Hex digits of a node id shown in logs (``peer_short``)."""
KEY_FILE_MODE: Final = 0o600


def node_id_of(public_key: bytes) -> bytes:
    """The node id of a raw 32-byte Ed25519 public key: ``sha256(public_key)``."""
    if len(public_key) != PUBLIC_KEY_LEN:
        raise LocalError(f"an Ed25519 public key has {PUBLIC_KEY_LEN} bytes, not {len(public_key)}")
    return hashlib.sha256(public_key).digest()


def verify(public_key: bytes, signature: bytes, data: bytes) -> None:
    """
    Check an Ed25519 signature (RFC 8032).

    Raises
    ------
    BadSignature
        If the key is malformed or the signature does not verify.
    """
    if len(public_key) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
        raise BadSignature("malformed public key or signature")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        raise BadSignature("signature does not verify") from None


def peer_hex(node_id: bytes) -> str:
    """Full hex form of a node id (the form used in config files and CLIs)."""
    return node_id.hex()


def peer_short(node_id: bytes | None) -> str:
    """Short form of a node id for logs: the first 8 hex digits."""
    if node_id is None:
        return "<unknown>"
    return node_id.hex()[:SHORT_ID_HEX]


def parse_peer_id(text: str) -> bytes:
    """Parse the full hex form of a node id; ``LocalError`` if it is not 64 hex digits."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise LocalError(f"not a hex node id: {text!r}") from None
    if len(raw) != NODE_ID_LEN:
        raise LocalError(f"a node id has {NODE_ID_LEN} bytes, got {len(raw)}")
    return raw


class NodeKey:
    """An Ed25519 identity key and the node id derived from it."""

    __slots__ = ("_private", "node_id", "public_key")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key: bytes = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.node_id: bytes = node_id_of(self.public_key)

    @classmethod
    def generate(cls) -> NodeKey:
        """A fresh random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        """The key with this 32-byte RFC 8032 seed (tests and simulations)."""
        if len(seed) != SEED_LEN:
            raise LocalError(f"an Ed25519 seed has {SEED_LEN} bytes, not {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NodeKey:
        """
        Read a key file written by ``save``.

        Raises
        ------
        KeyFileError
            If the file is missing, readable by others, or not an Ed25519 PKCS#8 PEM key.
        """
        p = Path(path)
        try:
            mode = p.stat().st_mode
            data = p.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read node key {p}: {exc.strerror}") from None
        if stat.S_IMODE(mode) & 0o077:
            raise KeyFileError(
                f"node key {p} is accessible by others (mode {stat.S_IMODE(mode):o}); "
                f"run `chmod 600 {p}`"
            )
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"node key {p} is corrupt or not a PEM key: {exc}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise KeyFileError(f"node key {p} is not an Ed25519 key")
        return cls(private)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> NodeKey:
        """Load the key at ``path``, or create, save and return a new one if there is none."""
        p = Path(path)
        if p.exists():
            return cls.load(p)
        key = cls.generate()
        key.save(p)
        return key

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key atomically with mode 0600 (the directory is created 0700)."""
        p = Path(path)
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature (64 bytes) over ``data``."""
        return self._private.sign(data)

    def __repr__(self) -> str:
        return f"NodeKey({peer_short(self.node_id)})"
