"""
Noise_XX_25519_ChaChaPoly_SHA256 (Noise Protocol Framework, revision 34), sans-I/O.

Three layers, each in the words of the specification:

* ``CipherState``, ``SymmetricState``, ``HandshakeState`` (spec section 5) for the XX
  pattern only (section 7.5: ``-> e``, ``<- e, ee, s, es``, ``-> s, se``). They are checked
  against the cacophony test vectors (tests/node/vectors/).
* ``Handshake``: the Depot handshake around them. Every handshake message travels as
  ``u16 big-endian length || message``. The payloads of messages 2 and 3 carry the sender's
  Ed25519 identity key and its signature over ``"depot-noise-static-key:" || static key``
  (the construction of libp2p's noise spec), so each side learns and verifies the other's
  node id before any application byte; the dialer may insist on an expected node id.
* ``SecureChannel``: the transport phase. Each transport message is
  ``u16 big-endian length || ChaChaPoly(k, n, "", record)`` with ``n`` counting from 0 in
  each direction (nonce = 32 zero bits || 64-bit little-endian ``n``, spec section 12.3).
  A nonce is never reused: ``n`` only grows, and the channel refuses to pass 2**64 - 1.
  We do not rekey: at 1 GiB/s a 64-bit counter of 64 KiB messages lasts ~10^7 years, and
  ChaCha20-Poly1305 under one key is safe far beyond any connection's lifetime here.

Failures are typed: ``HandshakeFailed`` for anything during the handshake (bad lengths,
bad points, failed decryption, bad signature, unexpected node id), ``DecodeError`` for a
transport message that does not authenticate.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from node.errors import DecodeError, HandshakeFailed, LocalError, NodeError
from node.identity import NodeKey, node_id_of, peer_short, verify
from node.wire import ExactLen, decode, encode, message

PROTOCOL_NAME: Final = b"Noise_XX_25519_ChaChaPoly_SHA256"
DHLEN: Final = 32
HASHLEN: Final = 32
TAGLEN: Final = 16
MAX_MESSAGE_LEN: Final = 65535
MAX_NONCE: Final = 2**64 - 1
"""Spec section 5.1: nonce 2**64 - 1 is reserved (used by ``rekey``)."""
LENGTH_PREFIX: Final = 2
STATIC_KEY_DOMAIN: Final = b"depot-noise-static-key:"
_ZERO_LEN: Final = b""
_NONCE = struct.Struct("<4xQ")
_LEN = struct.Struct(">H")


# --------------------------------------------------------------------------------------
# Crypto functions (spec section 4) and the processing rules (section 5)
# --------------------------------------------------------------------------------------


def dh(private: X25519PrivateKey, public: bytes) -> bytes:
    """DH(key_pair, public_key): X25519 (RFC 7748); an all-zero result is refused."""
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # cryptography refuses low-order points (all-zero output)
        raise HandshakeFailed("invalid Diffie-Hellman public key") from None
    return shared


def public_bytes(private: X25519PrivateKey) -> bytes:
    """The 32-byte encoding of an X25519 public key."""
    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def hkdf(chaining_key: bytes, input_key_material: bytes, num_outputs: int) -> tuple[bytes, ...]:
    """HKDF as defined in spec section 4.3 (RFC 5869 with HMAC-SHA256, empty info)."""
    temp_key = hmac.digest(chaining_key, input_key_material, "sha256")
    output1 = hmac.digest(temp_key, b"\x01", "sha256")
    output2 = hmac.digest(temp_key, output1 + b"\x02", "sha256")
    if num_outputs == 2:
        return output1, output2
    output3 = hmac.digest(temp_key, output2 + b"\x03", "sha256")
    return output1, output2, output3


class CipherState:
    """Spec section 5.1: a key ``k`` (or none) and a nonce ``n``."""

    __slots__ = ("_aead", "k", "n")

    def __init__(self, key: bytes | None = None) -> None:
        self.k: bytes | None = None
        self.n = 0
        self._aead: ChaCha20Poly1305 | None = None
        self.initialize_key(key)

    def initialize_key(self, key: bytes | None) -> None:
        self.k = key
        self.n = 0
        self._aead = None if key is None else ChaCha20Poly1305(key)

    def has_key(self) -> bool:
        return self.k is not None

    def _next_nonce(self) -> bytes:
        if self.n >= MAX_NONCE:
            raise LocalError("Noise nonce exhausted; the connection must be closed")
        nonce = _NONCE.pack(self.n)
        self.n += 1
        return nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self._aead is None:
            return plaintext
        return self._aead.encrypt(self._next_nonce(), plaintext, ad)

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes | memoryview) -> bytes:
        """Decrypt; on failure ``n`` is not advanced (spec 5.1) and ``InvalidTag`` is raised."""
        if self._aead is None:
            return bytes(ciphertext)
        if self.n >= MAX_NONCE:
            raise LocalError("Noise nonce exhausted; the connection must be closed")
        plaintext = self._aead.decrypt(_NONCE.pack(self.n), ciphertext, ad)
        self.n += 1
        return plaintext


class SymmetricState:
    """Spec section 5.2: chaining key ``ck``, handshake hash ``h`` and a ``CipherState``."""

    def __init__(self, protocol_name: bytes = PROTOCOL_NAME) -> None:
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = hashlib.sha256(protocol_name).digest()
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, input_key_material: bytes) -> None:
        self.ck, temp_k = hkdf(self.ck, input_key_material, 2)
        self.cipher.initialize_key(temp_k)

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        try:
            plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        except InvalidTag:
            raise HandshakeFailed("handshake message does not authenticate") from None
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        """The two transport keys: (initiator to responder, responder to initiator)."""
        temp_k1, temp_k2 = hkdf(self.ck, _ZERO_LEN, 2)
        return temp_k1, temp_k2


class HandshakeState:
    """
    Spec section 5.3 for pattern XX (section 7.5) with no pre-messages.

    ``write_message``/``read_message`` return the message/payload; after the third message
    ``split()`` gives the transport keys and ``h`` the handshake hash (channel binding).
    """

    def __init__(
        self,
        initiator: bool,
        prologue: bytes,
        s: X25519PrivateKey,
        e: X25519PrivateKey | None = None,
    ) -> None:
        self.initiator = initiator
        self.ss = SymmetricState()
        self.ss.mix_hash(prologue)
        self.s = s
        self.e = e  # injected only by tests reproducing vectors
        self.rs: bytes | None = None
        self.re: bytes | None = None
        self.step = 0  # index of the next message pattern

    # XX message patterns: who writes, and the tokens.
    _PATTERNS: Final = (("e",), ("e", "ee", "s", "es"), ("s", "se"))

    def _writer_is_us(self) -> bool:
        return (self.step % 2 == 0) == self.initiator

    def write_message(self, payload: bytes) -> bytes:
        if self.step >= len(self._PATTERNS) or not self._writer_is_us():
            raise LocalError("not our turn to write a handshake message")
        out = bytearray()
        for token in self._PATTERNS[self.step]:
            if token == "e":
                if self.e is None:
                    self.e = X25519PrivateKey.generate()
                e_pub = public_bytes(self.e)
                out += e_pub
                self.ss.mix_hash(e_pub)
            elif token == "s":
                out += self.ss.encrypt_and_hash(public_bytes(self.s))
            else:
                self._mix_dh(token)
        out += self.ss.encrypt_and_hash(payload)
        self.step += 1
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        if self.step >= len(self._PATTERNS) or self._writer_is_us():
            raise LocalError("not our turn to read a handshake message")
        pos = 0
        for token in self._PATTERNS[self.step]:
            if token == "e":
                if len(message) - pos < DHLEN:
                    raise HandshakeFailed("handshake message too short")
                self.re = message[pos : pos + DHLEN]
                pos += DHLEN
                self.ss.mix_hash(self.re)
            elif token == "s":
                size = DHLEN + (TAGLEN if self.ss.cipher.has_key() else 0)
                if len(message) - pos < size:
                    raise HandshakeFailed("handshake message too short")
                self.rs = self.ss.decrypt_and_hash(message[pos : pos + size])
                pos += size
            else:
                self._mix_dh(token)
        if self.ss.cipher.has_key() and len(message) - pos < TAGLEN:
            raise HandshakeFailed("handshake message too short")
        payload = self.ss.decrypt_and_hash(message[pos:])
        self.step += 1
        return payload

    def _mix_dh(self, token: str) -> None:
        # "es": initiator uses e with rs, responder s with re; "se" the mirror image.
        local, remote = {
            "ee": (self.e, self.re),
            "es": (self.e, self.rs) if self.initiator else (self.s, self.re),
            "se": (self.s, self.re) if self.initiator else (self.e, self.rs),
        }[token]
        if local is None or remote is None:
            raise LocalError(f"handshake token {token} without keys")
        self.ss.mix_key(dh(local, remote))

    @property
    def finished(self) -> bool:
        return self.step == len(self._PATTERNS)

    def split(self) -> tuple[CipherState, CipherState]:
        """(send, receive) cipher states for this side."""
        k1, k2 = self.ss.split()
        i2r, r2i = CipherState(k1), CipherState(k2)
        return (i2r, r2i) if self.initiator else (r2i, i2r)


# --------------------------------------------------------------------------------------
# The Depot handshake: identity payloads, length framing, result
# --------------------------------------------------------------------------------------


@message(protocol="noise", tag=1)
@dataclass(frozen=True)
class IdentityPayload:
    """Payload of handshake messages 2 and 3: who holds the Noise static key."""

    identity_key: Annotated[bytes, ExactLen(32)]
    """The sender's raw Ed25519 public key; its node id is sha256 of it."""
    signature: Annotated[bytes, ExactLen(64)]
    """Ed25519 signature over ``STATIC_KEY_DOMAIN || noise static public key``."""


def sign_static_key(key: NodeKey, static_public: bytes) -> IdentityPayload:
    return IdentityPayload(key.public_key, key.sign(STATIC_KEY_DOMAIN + static_public))


def check_identity(payload_bytes: bytes, remote_static: bytes | None) -> IdentityPayload:
    """Verify an identity payload against the peer's static key (``HandshakeFailed``)."""
    if remote_static is None:
        raise HandshakeFailed("no remote static key")
    try:
        payload = decode(payload_bytes, "noise")
    except NodeError as exc:
        raise HandshakeFailed(f"bad identity payload: {exc}") from None
    if not isinstance(payload, IdentityPayload):
        raise HandshakeFailed("bad identity payload")
    try:
        verify(payload.identity_key, payload.signature, STATIC_KEY_DOMAIN + remote_static)
    except NodeError:
        raise HandshakeFailed("identity signature over the static key does not verify") from None
    return payload


class SecureChannel:
    """
    The transport phase: seal records into length-prefixed messages, open received ones.

    ``seal``/``seal_many`` encrypt in place into one new buffer (no copy besides the
    encryption itself). ``open`` takes the ciphertext of one message (without its prefix).
    """

    __slots__ = ("_recv", "_recv_n", "_send", "_send_n", "handshake_hash")

    def __init__(self, send_key: bytes, recv_key: bytes, handshake_hash: bytes) -> None:
        self._send = ChaCha20Poly1305(send_key)
        self._recv = ChaCha20Poly1305(recv_key)
        self._send_n = 0
        self._recv_n = 0
        self.handshake_hash = handshake_hash

    def seal(self, record: bytes | bytearray | memoryview) -> bytearray:
        """One transport message: ``u16 length || ciphertext``."""
        return self.seal_many((record,))

    def seal_many(self, records: Sequence[bytes | bytearray | memoryview]) -> bytearray:
        """Several transport messages encrypted into one buffer (one socket write)."""
        total = sum(len(r) for r in records) + len(records) * (LENGTH_PREFIX + TAGLEN)
        out = bytearray(total)
        view = memoryview(out)
        pos = 0
        encrypt_into = self._send.encrypt_into
        for record in records:
            size = len(record) + TAGLEN
            if size > MAX_MESSAGE_LEN:
                raise LocalError(f"record of {len(record)} bytes exceeds the Noise message limit")
            if self._send_n >= MAX_NONCE:
                raise LocalError("Noise nonce exhausted; the connection must be closed")
            _LEN.pack_into(out, pos, size)
            pos += LENGTH_PREFIX
            encrypt_into(_NONCE.pack(self._send_n), record, None, view[pos : pos + size])
            self._send_n += 1
            pos += size
        return out

    def open(self, ciphertext: bytes | bytearray | memoryview) -> bytes:
        if self._recv_n >= MAX_NONCE:
            raise LocalError("Noise nonce exhausted; the connection must be closed")
        try:
            plaintext = self._recv.decrypt(_NONCE.pack(self._recv_n), ciphertext, None)
        except (InvalidTag, ValueError):
            raise DecodeError("transport message does not authenticate") from None
        self._recv_n += 1
        return plaintext


@dataclass(frozen=True)
class HandshakeResult:
    """What a finished handshake established."""

    remote_node_id: bytes
    """sha256 of the peer's Ed25519 identity key, verified by its signature."""
    remote_identity_key: bytes
    channel: SecureChannel
    leftover: bytes
    """Bytes received after the last handshake message (the first transport messages)."""


class Handshake:
    """
    The Depot Noise XX handshake as a sans-I/O machine over a byte stream.

    Feed received bytes with ``receive_data``; send what ``data_to_send`` returns; when
    ``result`` is set the channel is ready. Any failure raises ``HandshakeFailed`` (the
    caller drops the connection). The initiator's first message is ready at construction.
    """

    def __init__(
        self,
        key: NodeKey,
        static: X25519PrivateKey,
        *,
        initiator: bool,
        prologue: bytes,
        expected_node_id: bytes | None = None,
        ephemeral: X25519PrivateKey | None = None,
    ) -> None:
        self._state = HandshakeState(initiator, prologue, static, ephemeral)
        self._payload = encode(sign_static_key(key, public_bytes(static)))
        self._expected = expected_node_id
        self._buffer = bytearray()
        self._out = bytearray()
        self._remote_identity: bytes | None = None
        self._remote_node_id: bytes | None = None
        self.result: HandshakeResult | None = None
        if initiator:
            self._write(b"")  # -> e (payload of message 1 is not encrypted: send nothing)

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def receive_data(self, data: bytes) -> None:
        if self.result is not None:
            raise LocalError("handshake already finished")
        self._buffer += data
        while self.result is None and len(self._buffer) >= LENGTH_PREFIX:
            (size,) = _LEN.unpack_from(self._buffer)
            if len(self._buffer) < LENGTH_PREFIX + size:
                return
            msg = bytes(self._buffer[LENGTH_PREFIX : LENGTH_PREFIX + size])
            del self._buffer[: LENGTH_PREFIX + size]
            self._read(msg)

    def _write(self, payload: bytes) -> None:
        msg = self._state.write_message(payload)
        self._out += _LEN.pack(len(msg)) + msg
        if self._state.finished:
            self._finish()

    def _read(self, msg: bytes) -> None:
        payload = self._state.read_message(msg)
        step = self._state.step  # number of messages processed so far
        if step == 1:
            if payload:
                raise HandshakeFailed("unexpected payload in the first handshake message")
            self._write(self._payload)  # <- e, ee, s, es + our identity
            return
        identity = check_identity(payload, self._state.rs).identity_key
        node_id = node_id_of(identity)
        if self._expected is not None and node_id != self._expected:
            raise HandshakeFailed(
                f"peer is {peer_short(node_id)}, expected {peer_short(self._expected)}"
            )
        self._remote_node_id = node_id
        self._remote_identity = identity
        if step == 2:
            self._write(self._payload)  # -> s, se + our identity
        else:
            self._finish()

    def _finish(self) -> None:
        if self._remote_node_id is None or self._remote_identity is None:
            raise LocalError("handshake finished without a verified peer")
        send, recv = self._state.split()
        assert send.k is not None and recv.k is not None
        self.result = HandshakeResult(
            remote_node_id=self._remote_node_id,
            remote_identity_key=self._remote_identity,
            channel=SecureChannel(send.k, recv.k, self._state.ss.h),
            leftover=bytes(self._buffer),
        )
        self._buffer.clear()
