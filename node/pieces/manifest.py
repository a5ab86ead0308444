"""
The manifest: the small signed record of how a file became pieces.

Encoding (docs/pieces.md has the field table). The unsigned *body* is a CBOR map in the
core deterministic encoding of RFC 8949 §4.2.1 (definite lengths, shortest integers, map
keys sorted bytewise; every key is a text string shorter than 24 bytes, for which that
order is also RFC 7049's length-first canonical order that ``cbor2`` implements). The
*signed manifest* is the deterministic CBOR map ``{"body": bstr, "signature": bstr}``, the
signature being the owner's EIP-191 ``personal_sign`` over the body bytes (65 bytes,
``r || s || v``, low ``s`` as EIP-2 requires). The manifest id is the hex SHA-256 of the
signed encoding: what a user keeps to get the file back.

Decoding accepts only what encoding produces: a non-canonical encoding (duplicate keys,
unsorted maps, long-form integers), an unknown or missing field, a value outside its
domain or a signature by anyone but the named owner raise ``ManifestMalformed`` or
``ManifestSignature``; a body whose ``version`` is above ``MANIFEST_VERSION`` raises
``ManifestVersion`` before any other field is looked at, so that future formats are told
apart from garbage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

import cbor2
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_checksum_address, to_checksum_address

from node.pieces.crypto import (
    CIPHER_NAME,
    KDF_NAME,
    KEY_CHECK_SIZE,
    MAC_SIZE,
    MAX_NAME_SIZE,
    NAME_PAD,
    SALT_SIZE,
    FileKeys,
)
from node.pieces.errors import (
    InvalidArgument,
    ManifestMalformed,
    ManifestSignature,
    ManifestVersion,
    WrongKey,
)
from node.pieces.layout import (
    CHUNK_SIZE,
    MAX_PIECE_SIZE,
    TAG_SIZE,
    block_size,
    ciphertext_size,
    share_size,
    stripe_count,
)
from node.pieces.merkle import HASH_SIZE
from node.pieces.modes import Mode, mode_from

MANIFEST_VERSION: Final = 1
MAX_MANIFEST_SIZE: Final = 64 * 1024
"""Largest encoded manifest accepted (256 shares take about 14 KiB)."""
SIGNATURE_SIZE: Final = 65
SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""Order of secp256k1; EIP-2 accepts only ``s <= n / 2``."""

_REQUIRED: Final = frozenset(
    {
        "version",
        "file_size",
        "chunk_size",
        "cipher",
        "kdf",
        "salt",
        "mode",
        "k",
        "n",
        "shares",
        "plaintext_mac",
        "key_check",
        "created",
        "owner",
    }
)
_OPTIONAL: Final = frozenset({"name"})
_SHARE_KEYS: Final = frozenset({"index", "root", "size"})


@dataclass(frozen=True)
class ShareEntry:
    """One share (piece) of the file, in share order."""

    index: int
    root: bytes
    """The piece's Merkle root (``contracts.spec.commitment``)."""
    size: int
    """The piece's size in bytes, committed beside the root in a deal."""


@dataclass(frozen=True)
class Manifest:
    """
    The unsigned content of a manifest. Construction checks every invariant, so that a
    ``Manifest`` object is always one this software could have written.
    """

    file_size: int
    """Plaintext bytes."""
    mode: str
    """``"copies"`` or ``"ec"``."""
    k: int
    """Shares needed to rebuild the file."""
    n: int
    """Shares made (``len(shares)``)."""
    salt: bytes
    """Random per-file HKDF salt."""
    shares: tuple[ShareEntry, ...]
    plaintext_mac: bytes
    """HMAC-SHA256 of the plaintext under a key derived from the client's secret: checks
    the rebuilt file end to end without letting anyone confirm a guess of its content."""
    key_check: bytes
    """Derived from the client's secret: tells a wrong secret from damaged data."""
    created: int
    """Unix time, seconds."""
    owner: str
    """Checksummed Ethereum address of the signer."""
    name: bytes | None = None
    """The file name, encrypted (``FileKeys.seal_name``), if the client kept one."""
    chunk_size: int = CHUNK_SIZE
    cipher: str = CIPHER_NAME
    kdf: str = KDF_NAME
    version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        _check(self.version == MANIFEST_VERSION, f"unsupported version {self.version}")
        _check(_is_int(self.file_size) and self.file_size >= 0, "bad file_size")
        _check(self.chunk_size == CHUNK_SIZE, f"unsupported chunk size {self.chunk_size}")
        _check(self.cipher == CIPHER_NAME, f"unsupported cipher {self.cipher!r}")
        _check(self.kdf == KDF_NAME, f"unsupported KDF {self.kdf!r}")
        _check(_is_int(self.k) and _is_int(self.n), "k and n must be integers")
        try:
            mode_from(self.mode, self.k, self.n)
        except InvalidArgument as exc:
            raise ManifestMalformed(str(exc)) from exc
        _check(_is_bytes(self.salt, SALT_SIZE), "bad salt")
        _check(_is_bytes(self.plaintext_mac, MAC_SIZE), "bad plaintext_mac")
        _check(_is_bytes(self.key_check, KEY_CHECK_SIZE), "bad key_check")
        _check(_is_int(self.created) and self.created >= 0, "bad created time")
        _check(isinstance(self.owner, str) and is_checksum_address(self.owner), "bad owner")
        size = share_size(self.file_size, self.k)
        _check(size <= MAX_PIECE_SIZE, "file too large for the ledger's pieces")
        _check(len(self.shares) == self.n, f"{len(self.shares)} shares listed, n = {self.n}")
        for i, share in enumerate(self.shares):
            _check(
                isinstance(share, ShareEntry)
                and share.index == i
                and _is_bytes(share.root, HASH_SIZE)
                and share.size == size,
                f"share entry {i} is inconsistent",
            )
        if self.name is not None:
            body = len(self.name) - TAG_SIZE if isinstance(self.name, bytes) else 0
            _check(
                0 < body <= MAX_NAME_SIZE and body % NAME_PAD == 0,
                "bad encrypted name",
            )

    @property
    def redundancy(self) -> Mode:
        """The mode as an object: ``Copies(r)`` or ``ErasureCode(k, n)``."""
        return mode_from(self.mode, self.k, self.n)

    @property
    def stripes(self) -> int:
        """Stripes of the file, also the chunk count of every share."""
        return stripe_count(self.file_size, self.k)

    @property
    def share_size(self) -> int:
        """Bytes of every share."""
        return share_size(self.file_size, self.k)

    @property
    def ciphertext_size(self) -> int:
        """Bytes of the (one, or each copy's) ciphertext."""
        return ciphertext_size(self.file_size)

    def block_size(self, stripe: int) -> int:
        """Bytes of chunk ``stripe`` of every share."""
        return block_size(self.file_size, self.k, stripe)

    def keys(self, secret: bytes) -> FileKeys:
        """This file's keys from the client's secret; ``WrongKey`` if it is not the secret
        that prepared the file."""
        keys = FileKeys.derive(secret, self.salt, self.redundancy.streams)
        if not keys.matches(self.key_check):
            raise WrongKey("this secret did not prepare the file (key check mismatch)")
        return keys

    def file_name(self, secret: bytes) -> str | None:
        """The decrypted file name, if the manifest carries one."""
        return None if self.name is None else self.keys(secret).open_name(self.name)

    def encode_body(self) -> bytes:
        """The unsigned, deterministic CBOR body (what the owner signs)."""
        body: dict[str, Any] = {
            "version": self.version,
            "file_size": self.file_size,
            "chunk_size": self.chunk_size,
            "cipher": self.cipher,
            "kdf": self.kdf,
            "salt": self.salt,
            "mode": self.mode,
            "k": self.k,
            "n": self.n,
            "shares": [{"index": s.index, "root": s.root, "size": s.size} for s in self.shares],
            "plaintext_mac": self.plaintext_mac,
            "key_check": self.key_check,
            "created": self.created,
            "owner": bytes.fromhex(self.owner[2:]),
        }
        if self.name is not None:
            body["name"] = self.name
        return _dumps(body)

    def sign(self, account: LocalAccount) -> SignedManifest:
        """Sign with the owner's key (EIP-191 personal message over the body)."""
        if account.address != self.owner:
            raise InvalidArgument(f"{account.address} is not the manifest's owner {self.owner}")
        body = self.encode_body()
        signature = bytes(account.sign_message(encode_defunct(primitive=body)).signature)
        encoded = _dumps({"body": body, "signature": signature})
        return SignedManifest(self, signature, encoded)


@dataclass(frozen=True)
class SignedManifest:
    """A manifest with its owner's signature and its exact encoding."""

    manifest: Manifest
    signature: bytes
    encoded: bytes
    """The signed encoding: what is stored, published and hashed into the id."""

    @property
    def id(self) -> str:
        """Content address: hex SHA-256 of the signed encoding."""
        return manifest_id(self.encoded)

    @classmethod
    def decode(cls, data: bytes) -> SignedManifest:
        """Decode and verify a signed manifest (see the module doc for what is refused)."""
        return decode_manifest(data)


def manifest_id(encoded: bytes) -> str:
    """The id of a signed manifest encoding."""
    return hashlib.sha256(encoded).hexdigest()


def decode_manifest(data: bytes) -> SignedManifest:
    """
    Decode a signed manifest and check its signature.

    Raises
    ------
    ManifestVersion
        The body declares a newer format version.
    ManifestMalformed
        Anything else that is not a canonical, consistent version-1 manifest.
    ManifestSignature
        The signature is malformed, high-``s``, or not the named owner's.
    """
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_MANIFEST_SIZE:
        raise ManifestMalformed(f"a manifest is bytes of at most {MAX_MANIFEST_SIZE}")
    data = bytes(data)
    outer = _loads(data)
    _check(
        isinstance(outer, dict) and set(outer) == {"body", "signature"},
        "not a signed manifest",
    )
    body_bytes, signature = outer["body"], outer["signature"]
    _check(isinstance(body_bytes, bytes) and isinstance(signature, bytes), "not a manifest")
    body = _loads(body_bytes)
    _check(isinstance(body, dict), "the manifest body is not a map")
    version = body.get("version")
    _check(_is_int(version), "the manifest body has no version")
    if version > MANIFEST_VERSION:
        raise ManifestVersion(version, MANIFEST_VERSION)
    keys = set(body)
    if not _REQUIRED <= keys <= _REQUIRED | _OPTIONAL:
        unknown = sorted(map(repr, keys - _REQUIRED - _OPTIONAL))
        missing = sorted(_REQUIRED - keys)
        raise ManifestMalformed(f"unknown fields {unknown}, missing fields {missing}")
    shares = body["shares"]
    _check(isinstance(shares, list), "shares is not a list")
    entries = []
    for s in shares:
        _check(isinstance(s, dict) and set(s) == _SHARE_KEYS, "bad share entry")
        _check(_is_int(s["index"]) and _is_int(s["size"]), "bad share entry")
        entries.append(ShareEntry(s["index"], s["root"], s["size"]))
    owner = body["owner"]
    _check(_is_bytes(owner, 20), "owner is not a 20-byte address")
    for field in ("mode", "cipher", "kdf"):
        _check(isinstance(body[field], str), f"{field} is not text")
    manifest = Manifest(
        file_size=body["file_size"],
        mode=body["mode"],
        k=body["k"],
        n=body["n"],
        salt=body["salt"],
        shares=tuple(entries),
        plaintext_mac=body["plaintext_mac"],
        key_check=body["key_check"],
        created=body["created"],
        owner=to_checksum_address(owner),
        name=body.get("name"),
        chunk_size=body["chunk_size"],
        cipher=body["cipher"],
        kdf=body["kdf"],
        version=version,
    )
    # Only our own encoding is accepted, so that one manifest has exactly one id.
    _check(manifest.encode_body() == body_bytes, "the body is not canonically encoded")
    _check(_dumps(outer) == data, "the envelope is not canonically encoded")
    _verify_signature(body_bytes, signature, manifest.owner)
    return SignedManifest(manifest, signature, data)


def _verify_signature(body: bytes, signature: bytes, owner: str) -> None:
    if len(signature) != SIGNATURE_SIZE or signature[64] not in (27, 28):
        raise ManifestSignature("the signature is not 65 bytes r || s || v with v in {27, 28}")
    if int.from_bytes(signature[32:64], "big") > SECP256K1_N // 2:
        raise ManifestSignature("high-s signature (EIP-2)")
    try:
        signer = Account.recover_message(encode_defunct(primitive=body), signature=signature)
    except Exception as exc:  # eth-keys raises several types for unrecoverable signatures
        raise ManifestSignature(f"unrecoverable signature: {exc}") from exc
    if signer != owner:
        raise ManifestSignature(f"signed by {signer}, not by the owner {owner}")


def _dumps(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


def _loads(data: bytes) -> Any:
    try:
        return cbor2.loads(data)
    except Exception as exc:  # cbor2 raises many types on hostile input; none may escape
        raise ManifestMalformed(f"not CBOR: {exc}") from exc


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ManifestMalformed(message)


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_bytes(value: object, size: int) -> bool:
    return isinstance(value, bytes) and len(value) == size
