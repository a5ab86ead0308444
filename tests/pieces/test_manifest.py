"""Manifests: deterministic encoding, signature, content id, and typed errors on bad input."""

import dataclasses
import hashlib

import cbor2
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import BadSignature, RemoteError
from node.pieces.crypto import FileKeys
from node.pieces.errors import (
    InvalidArgument,
    ManifestError,
    ManifestMalformed,
    ManifestSignature,
    ManifestVersion,
    WrongKey,
)
from node.pieces.layout import share_size
from node.pieces.manifest import (
    MANIFEST_VERSION,
    MAX_MANIFEST_SIZE,
    SECP256K1_N,
    Manifest,
    ShareEntry,
    SignedManifest,
    decode_manifest,
    manifest_id,
)
from node.pieces.modes import Copies, ErasureCode

OWNER = Account.from_key(b"\x01" * 32)
OTHER = Account.from_key(b"\x02" * 32)
SECRET = b"\x07" * 32
SALT = b"\x03" * 32


def manifest(mode=None, file_size=1000, name="notes.txt", **changes):
    mode = mode or ErasureCode(3, 5)
    keys = FileKeys.derive(SECRET, SALT, mode.streams)
    size = share_size(file_size, mode.k)
    m = Manifest(
        file_size=file_size,
        mode=mode.name,
        k=mode.k,
        n=mode.n,
        salt=SALT,
        shares=tuple(
            ShareEntry(i, hashlib.sha256(bytes([i])).digest(), size) for i in range(mode.n)
        ),
        plaintext_mac=b"\x09" * 32,
        key_check=keys.key_check,
        created=1_700_000_000,
        owner=OWNER.address,
        name=None if name is None else keys.seal_name(name),
    )
    return dataclasses.replace(m, **changes) if changes else m


def envelope(body: bytes, signature: bytes) -> bytes:
    return cbor2.dumps({"body": body, "signature": signature}, canonical=True)


def sign_body(body: bytes, account=OWNER) -> bytes:
    return bytes(account.sign_message(encode_defunct(primitive=body)).signature)


@pytest.mark.parametrize("mode", [Copies(3), ErasureCode(3, 5), ErasureCode(29, 80)])
def test_round_trip(mode):
    signed = manifest(mode).sign(OWNER)
    decoded = decode_manifest(signed.encoded)
    assert decoded == signed
    assert decoded.manifest.redundancy == mode
    assert decoded.id == hashlib.sha256(signed.encoded).hexdigest() == manifest_id(signed.encoded)
    assert SignedManifest.decode(signed.encoded).id == signed.id
    assert decoded.manifest.file_name(SECRET) == "notes.txt"


def test_encoding_is_deterministic_and_sorted():
    a = manifest().encode_body()
    assert a == manifest().encode_body()
    keys = list(cbor2.loads(a))
    assert keys == sorted(keys, key=lambda k: (len(k), k))  # RFC 8949 §4.2.1 for short text
    assert manifest(name=None).sign(OWNER).manifest.name is None


def test_geometry_helpers():
    m = manifest(ErasureCode(3, 5), file_size=10 * 262_144)
    assert m.stripes == 4
    assert m.share_size == share_size(m.file_size, 3)
    assert m.ciphertext_size == m.file_size + 16 * 11


def test_wrong_key():
    m = manifest()
    assert m.keys(SECRET).key_check == m.key_check
    with pytest.raises(WrongKey):
        m.keys(b"\x08" * 32)
    with pytest.raises(WrongKey):
        m.file_name(b"\x08" * 32)


def test_only_the_owner_signs():
    with pytest.raises(InvalidArgument):
        manifest().sign(OTHER)


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_any_flipped_bit_is_refused(data):
    encoded = bytearray(manifest().sign(OWNER).encoded)
    bit = data.draw(st.integers(0, 8 * len(encoded) - 1))
    encoded[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ManifestError):
        decode_manifest(bytes(encoded))


def test_newer_version_is_a_clear_error():
    body = cbor2.dumps({"version": MANIFEST_VERSION + 1, "whatever": "new"}, canonical=True)
    with pytest.raises(ManifestVersion) as info:
        decode_manifest(envelope(body, sign_body(body)))
    assert info.value.version == MANIFEST_VERSION + 1
    assert "newer" in str(info.value)


def test_signature_by_someone_else():
    body = manifest().encode_body()
    with pytest.raises(ManifestSignature) as info:
        decode_manifest(envelope(body, sign_body(body, OTHER)))
    assert isinstance(info.value, BadSignature)
    assert isinstance(info.value, RemoteError)


def test_high_s_signature_is_refused():
    # (r, n - s, v ^ 1) recovers the same signer: accepting it would give one manifest two ids.
    body = manifest().encode_body()
    sig = sign_body(body)
    s = int.from_bytes(sig[32:64], "big")
    flipped = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([sig[64] ^ 1])
    with pytest.raises(ManifestSignature):
        decode_manifest(envelope(body, flipped))


@pytest.mark.parametrize(
    "signature", [b"", b"\x00" * 64, b"\x00" * 64 + b"\x1b", b"\x01" * 64 + b"\x05"]
)
def test_malformed_signatures(signature):
    with pytest.raises(ManifestSignature):
        decode_manifest(envelope(manifest().encode_body(), signature))


def body_with(**changes):
    fields = cbor2.loads(manifest().encode_body())
    for key, value in changes.items():
        if value is None:
            del fields[key]
        else:
            fields[key] = value
    return cbor2.dumps(fields, canonical=True)


@pytest.mark.parametrize(
    "changes",
    [
        {"extra": 1},
        {"salt": None},
        {"version": 0},
        {"version": "1"},
        {"file_size": -1},
        {"file_size": True},
        {"chunk_size": 1024},
        {"cipher": "aes-128-ctr"},
        {"kdf": 5},
        {"mode": "raid"},
        {"k": 6},
        {"n": 4},
        {"salt": b"short"},
        {"shares": []},
        {"shares": "x"},
        {"shares": [{"index": 0}]},
        {"plaintext_mac": b"\x00" * 31},
        {"key_check": 5},
        {"created": -5},
        {"owner": b"\x00" * 19},
        {"name": b"\x00" * 20},
    ],
)
def test_malformed_fields(changes):
    body = body_with(**changes)
    with pytest.raises(ManifestMalformed):
        decode_manifest(envelope(body, sign_body(body)))


def test_inconsistent_shares():
    fields = cbor2.loads(manifest().encode_body())
    for bad in (
        [dict(s, index=4 - s["index"]) for s in fields["shares"]],
        [dict(s, size=s["size"] + 1) for s in fields["shares"]],
        [dict(s, root=b"\x00") for s in fields["shares"]],
    ):
        body = cbor2.dumps(dict(fields, shares=bad), canonical=True)
        with pytest.raises(ManifestMalformed):
            decode_manifest(envelope(body, sign_body(body)))


def test_non_canonical_encodings_are_refused():
    fields = cbor2.loads(manifest().encode_body())
    unsorted = cbor2.dumps(dict(reversed(list(fields.items()))))
    with pytest.raises(ManifestMalformed):
        decode_manifest(envelope(unsorted, sign_body(unsorted)))
    # The envelope with its keys in insertion order (signature first).
    signed = manifest().sign(OWNER)
    swapped = cbor2.dumps({"signature": signed.signature, "body": signed.manifest.encode_body()})
    assert swapped != signed.encoded
    with pytest.raises(ManifestMalformed):
        decode_manifest(swapped)
    # ``created`` as an 8-byte integer (0x1b) although it fits in 4 (0x1a).
    body = manifest().encode_body()
    short = b"\x1a" + (1_700_000_000).to_bytes(4, "big")
    long = b"\x1b" + (1_700_000_000).to_bytes(8, "big")
    assert body.count(short) == 1
    padded = body.replace(short, long)
    assert cbor2.loads(padded) == cbor2.loads(body)
    with pytest.raises(ManifestMalformed):
        decode_manifest(envelope(padded, sign_body(padded)))
    # Duplicate keys decode to one (last wins) in cbor2: the re-encoding check catches it.
    duplicated = bytes([0xA3]) + signed.encoded[1:] + cbor2.dumps("body") + cbor2.dumps(body)
    with pytest.raises(ManifestMalformed):
        decode_manifest(duplicated)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        b"\x9f" * 10_000,
        cbor2.dumps([1, 2]),
        cbor2.dumps({"body": 1, "signature": b""}),
        cbor2.dumps({"body": cbor2.dumps([1]), "signature": b""}),
        cbor2.dumps({"body": cbor2.dumps({"k": 1}), "signature": b""}),
        b"\x00" * (MAX_MANIFEST_SIZE + 1),
        "text",
    ],
)
def test_garbage(data):
    with pytest.raises(ManifestMalformed):
        decode_manifest(data)


def test_constructor_checks_invariants():
    with pytest.raises(ManifestMalformed):
        manifest(owner=OWNER.address.lower())
    with pytest.raises(ManifestMalformed):
        manifest(Copies(2), k=2)


CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(max_size=40) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(CBOR_VALUES, CBOR_VALUES)
@settings(max_examples=100, deadline=None)
def test_arbitrary_cbor_raises_only_manifest_errors(body, signature):
    for data in (cbor2.dumps(body), envelope(cbor2.dumps(body, canonical=True), b"\x00" * 65)):
        with pytest.raises(ManifestError):
            decode_manifest(data)
    if isinstance(signature, bytes):
        with pytest.raises(ManifestError):
            decode_manifest(envelope(manifest().encode_body(), signature))


@given(
    st.dictionaries(
        st.sampled_from(sorted(cbor2.loads(manifest().encode_body()))), CBOR_VALUES, min_size=1
    )
)
@settings(max_examples=100, deadline=None)
def test_any_field_of_the_wrong_shape_is_malformed(changes):
    fields = dict(cbor2.loads(manifest().encode_body()), **changes)
    if fields == cbor2.loads(manifest().encode_body()):
        return
    body = cbor2.dumps(fields, canonical=True)
    with pytest.raises(ManifestError):
        decode_manifest(envelope(body, sign_body(body)))
