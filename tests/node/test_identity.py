import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node.errors import BadSignature, KeyFileError, LocalError
from node.identity import NodeKey, node_id_of, parse_peer_id, peer_hex, peer_short, verify

# RFC 8032 section 7.1, TEST 1.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG_EMPTY = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_rfc8032_vector_and_node_id():
    key = NodeKey.from_seed(RFC8032_SEED)
    assert key.public_key == RFC8032_PUBLIC
    assert key.sign(b"") == RFC8032_SIG_EMPTY
    assert key.node_id == hashlib.sha256(RFC8032_PUBLIC).digest() == node_id_of(RFC8032_PUBLIC)
    verify(key.public_key, RFC8032_SIG_EMPTY, b"")


def test_verify_rejects_wrong_data_key_and_malformed():
    key = NodeKey.generate()
    sig = key.sign(b"hello")
    verify(key.public_key, sig, b"hello")
    with pytest.raises(BadSignature):
        verify(key.public_key, sig, b"hellp")
    with pytest.raises(BadSignature):
        verify(NodeKey.generate().public_key, sig, b"hello")
    with pytest.raises(BadSignature):
        verify(key.public_key[:31], sig, b"hello")
    with pytest.raises(BadSignature):
        verify(key.public_key, sig[:63], b"hello")


def test_load_or_create_roundtrip_and_mode(tmp_path):
    path = tmp_path / "home" / "node.key"
    key = NodeKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = NodeKey.load_or_create(path)
    assert again.node_id == key.node_id
    assert again.sign(b"x") == key.sign(b"x")  # Ed25519 is deterministic
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_key_file_is_a_clear_error(tmp_path):
    path = tmp_path / "node.key"
    NodeKey.generate().save(path)
    data = path.read_bytes()
    path.write_bytes(data[:40] + b"garbage" + data[60:])
    with pytest.raises(KeyFileError, match="corrupt"):
        NodeKey.load(path)
    path.write_bytes(b"")
    with pytest.raises(KeyFileError):
        NodeKey.load_or_create(path)


def test_key_file_open_to_others_is_refused(tmp_path):
    path = tmp_path / "node.key"
    NodeKey.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        NodeKey.load(path)


def test_non_ed25519_key_is_refused(tmp_path):
    path = tmp_path / "node.key"
    pem = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, pem)
    os.close(fd)
    with pytest.raises(KeyFileError, match="not an Ed25519"):
        NodeKey.load(path)


def test_missing_file_is_key_file_error(tmp_path):
    with pytest.raises(KeyFileError):
        NodeKey.load(tmp_path / "absent.key")


def test_peer_id_formatting():
    key = NodeKey.from_seed(RFC8032_SEED)
    assert parse_peer_id(peer_hex(key.node_id)) == key.node_id
    assert peer_short(key.node_id) == key.node_id.hex()[:8]
    assert peer_short(None) == "<unknown>"
    with pytest.raises(LocalError):
        parse_peer_id("zz")
    with pytest.raises(LocalError):
        parse_peer_id("00" * 31)
    with pytest.raises(LocalError):
        NodeKey.from_seed(b"short")
