"""
Client-side encryption of a file: ChaCha20-Poly1305 (RFC 8439) over fixed-size chunks.

Keys. Everything is derived with HKDF-SHA256 (RFC 5869) from the client's 32-byte secret,
salted with 32 random bytes drawn per prepared file and stored in the manifest, under a
label per purpose: one chunk key per ciphertext *stream* (the one stream of an
erasure-coded file, or each copy of a replicated one, so that copies are distinct bytes),
a key for the keyed plaintext digest, a key for the file name, and a public key check.

Chunks. The construction is STREAM (Hoang, Reyhanitabar, Rogaway, Vizár, "Online
Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015, §7): the
nonce of chunk ``i`` is ``i`` (88 bits, big-endian) followed by a last-chunk flag byte, so
nonces never repeat under one key, and chunks can be neither reordered (the index is in the
nonce) nor dropped from the end (only the real last chunk opens with the flag set). The
associated data repeats the file salt, the stream, the index and the flag, so a chunk
also cannot move between files or copies even if two keys ever collided.
"""

from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass
from hashlib import sha256
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from node.pieces.errors import InvalidArgument, Tampered
from node.pieces.layout import TAG_SIZE

CIPHER_NAME: Final = "chacha20-poly1305"
KDF_NAME: Final = "hkdf-sha256"
SECRET_SIZE: Final = 32
SALT_SIZE: Final = 32
KEY_SIZE: Final = 32
KEY_CHECK_SIZE: Final = 16
MAC_SIZE: Final = 32
MAX_NAME_SIZE: Final = 1024
"""Longest file name (UTF-8 bytes) a manifest carries."""
NAME_PAD: Final = 32
"""Names are zero-padded to a multiple of this before encryption, hiding their length."""
DOMAIN: Final = b"depot/pieces/v1"
_AD: Final = struct.Struct(">15s32sIQ?")
"""Associated data: domain, file salt, stream, chunk index, last-chunk flag."""
_NAME_NONCE: Final = bytes(12)
"""The name key encrypts exactly one message, so a constant nonce is unique."""


def new_salt() -> bytes:
    """A fresh random per-file salt."""
    return os.urandom(SALT_SIZE)


def check_secret(secret: bytes) -> None:
    """Raise ``InvalidArgument`` unless ``secret`` is ``SECRET_SIZE`` bytes."""
    if not isinstance(secret, bytes) or len(secret) != SECRET_SIZE:
        raise InvalidArgument(f"the client secret must be {SECRET_SIZE} bytes")


def derive_key(secret: bytes, salt: bytes, label: bytes, length: int = KEY_SIZE) -> bytes:
    """HKDF-SHA256(secret, salt, info = DOMAIN || "/" || label) (RFC 5869)."""
    check_secret(secret)
    if len(salt) != SALT_SIZE:
        raise InvalidArgument(f"the file salt must be {SALT_SIZE} bytes")
    return HKDF(SHA256(), length, salt, DOMAIN + b"/" + label).derive(secret)


@dataclass(frozen=True, repr=False)
class FileKeys:
    """All keys of one prepared file."""

    stream_keys: tuple[bytes, ...]
    """Chunk key of each ciphertext stream (copy ``i`` of a replicated file uses stream
    ``i``; an erasure-coded file has the single stream 0)."""
    mac_key: bytes
    """Key of the plaintext digest, HMAC-SHA256 (RFC 2104)."""
    name_key: bytes
    """Key of the encrypted file name."""
    key_check: bytes
    """Public value in the manifest telling a wrong secret from damaged data."""

    @classmethod
    def derive(cls, secret: bytes, salt: bytes, streams: int) -> FileKeys:
        """Derive the keys of a file with ``streams`` ciphertext streams."""
        return cls(
            stream_keys=tuple(
                derive_key(secret, salt, b"chunk-key/" + struct.pack(">I", s))
                for s in range(streams)
            ),
            mac_key=derive_key(secret, salt, b"plaintext-mac"),
            name_key=derive_key(secret, salt, b"name-key"),
            key_check=derive_key(secret, salt, b"key-check", KEY_CHECK_SIZE),
        )

    def matches(self, key_check: bytes) -> bool:
        """True iff these keys come from the secret that wrote ``key_check``."""
        return hmac.compare_digest(self.key_check, key_check)

    def plaintext_mac(self) -> hmac.HMAC:
        """A fresh HMAC-SHA256 under the plaintext-digest key, to feed the plaintext."""
        return hmac.new(self.mac_key, digestmod=sha256)

    def seal_name(self, name: str) -> bytes:
        """Encrypt a file name (padded to a multiple of ``NAME_PAD`` bytes)."""
        raw = name.encode("utf-8")
        if not raw or len(raw) > MAX_NAME_SIZE or b"\x00" in raw:
            raise InvalidArgument(f"a file name must be 1..{MAX_NAME_SIZE} bytes without NUL")
        padded = raw + bytes(-len(raw) % NAME_PAD)
        return ChaCha20Poly1305(self.name_key).encrypt(_NAME_NONCE, padded, DOMAIN + b"/name")

    def open_name(self, sealed: bytes) -> str:
        """Decrypt a file name sealed by ``seal_name``."""
        try:
            padded = ChaCha20Poly1305(self.name_key).decrypt(_NAME_NONCE, sealed, DOMAIN + b"/name")
        except InvalidTag as exc:
            raise Tampered("the encrypted file name does not authenticate") from exc
        try:
            return padded.rstrip(b"\x00").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Tampered("the decrypted file name is not UTF-8") from exc


class ChunkCipher:
    """Seals and opens the chunks of one ciphertext stream (STREAM, see module doc)."""

    def __init__(self, key: bytes, salt: bytes, stream: int) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._salt = salt
        self._stream = stream

    def _nonce_and_ad(self, index: int, last: bool) -> tuple[bytes, bytes]:
        nonce = index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        return nonce, _AD.pack(DOMAIN, self._salt, self._stream, index, last)

    def seal(self, index: int, last: bool, plaintext: bytes | memoryview) -> bytes:
        """Ciphertext chunk ``index``: the plaintext followed by its 16-byte tag."""
        nonce, ad = self._nonce_and_ad(index, last)
        return self._aead.encrypt(nonce, plaintext, ad)

    def open(self, index: int, last: bool, ciphertext: bytes | bytearray | memoryview) -> bytes:
        """The plaintext of ciphertext chunk ``index``; ``Tampered`` if it does not
        authenticate (changed bytes, another position, another file or key)."""
        if len(ciphertext) < TAG_SIZE:
            raise Tampered(f"chunk {index} is shorter than its tag")
        nonce, ad = self._nonce_and_ad(index, last)
        try:
            return self._aead.decrypt(nonce, ciphertext, ad)
        except InvalidTag as exc:
            raise Tampered(
                f"ciphertext chunk {index} of stream {self._stream} does not authenticate"
            ) from exc
