import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from noise.connection import Keypair, NoiseConnection

from node.errors import DecodeError, HandshakeFailed, LocalError, RemoteError
from node.identity import NodeKey
from node.noise import (
    STATIC_KEY_DOMAIN,
    Handshake,
    HandshakeState,
    IdentityPayload,
    SecureChannel,
    public_bytes,
)
from node.wire import encode

VECTORS = Path(__file__).parent / "vectors" / "noise_xx_25519_chachapoly_sha256.json"
PROLOGUE = b"depot/1"


def load_vectors():
    return json.loads(VECTORS.read_text())["vectors"]


@pytest.mark.parametrize("vector", load_vectors(), ids=lambda v: v["name"])
def test_cacophony_vectors(vector):
    """The spec-level state machine reproduces every handshake and transport message."""
    h = bytes.fromhex
    init = HandshakeState(
        True,
        h(vector["init_prologue"]),
        X25519PrivateKey.from_private_bytes(h(vector["init_static"])),
        X25519PrivateKey.from_private_bytes(h(vector["init_ephemeral"])),
    )
    resp = HandshakeState(
        False,
        h(vector["resp_prologue"]),
        X25519PrivateKey.from_private_bytes(h(vector["resp_static"])),
        X25519PrivateKey.from_private_bytes(h(vector["resp_ephemeral"])),
    )
    messages = vector["messages"]
    for i, m in enumerate(messages[:3]):
        writer, reader = (init, resp) if i % 2 == 0 else (resp, init)
        ct = writer.write_message(h(m["payload"]))
        assert ct.hex() == m["ciphertext"]
        assert reader.read_message(ct) == h(m["payload"])
    assert init.finished and resp.finished
    assert init.ss.h == resp.ss.h
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    for i, m in enumerate(messages[3:]):
        # After XX the responder speaks first (message 4 is responder -> initiator).
        send, recv = (r_send, i_recv) if i % 2 == 0 else (i_send, r_recv)
        ct = send.encrypt_with_ad(b"", h(m["payload"]))
        assert ct.hex() == m["ciphertext"]
        assert recv.decrypt_with_ad(b"", ct) == h(m["payload"])


def test_secure_channel_matches_vector_transport_messages():
    vector = load_vectors()[0]
    h = bytes.fromhex
    init = HandshakeState(
        True,
        h(vector["init_prologue"]),
        X25519PrivateKey.from_private_bytes(h(vector["init_static"])),
        X25519PrivateKey.from_private_bytes(h(vector["init_ephemeral"])),
    )
    resp = HandshakeState(
        False,
        h(vector["resp_prologue"]),
        X25519PrivateKey.from_private_bytes(h(vector["resp_static"])),
        X25519PrivateKey.from_private_bytes(h(vector["resp_ephemeral"])),
    )
    for i, m in enumerate(vector["messages"][:3]):
        writer, reader = (init, resp) if i % 2 == 0 else (resp, init)
        reader.read_message(writer.write_message(h(m["payload"])))
    (i_send, i_recv), (r_send, r_recv) = init.split(), resp.split()
    responder = SecureChannel(r_send.k, r_recv.k, resp.ss.h)
    initiator = SecureChannel(i_send.k, i_recv.k, init.ss.h)
    for i, m in enumerate(vector["messages"][3:]):
        send, recv = (responder, initiator) if i % 2 == 0 else (initiator, responder)
        sealed = send.seal(h(m["payload"]))
        (size,) = struct.unpack(">H", sealed[:2])
        assert size == len(sealed) - 2
        assert bytes(sealed[2:]).hex() == m["ciphertext"]
        assert recv.open(memoryview(sealed)[2:]) == h(m["payload"])


def make_pair(expected=None, key_i=None, key_r=None):
    key_i = key_i or NodeKey.generate()
    key_r = key_r or NodeKey.generate()
    init = Handshake(
        key_i,
        X25519PrivateKey.generate(),
        initiator=True,
        prologue=PROLOGUE,
        expected_node_id=expected,
    )
    resp = Handshake(key_r, X25519PrivateKey.generate(), initiator=False, prologue=PROLOGUE)
    return key_i, key_r, init, resp


def run_handshake(init, resp):
    resp.receive_data(init.data_to_send())
    init.receive_data(resp.data_to_send())
    resp.receive_data(init.data_to_send())
    return init.result, resp.result


def test_handshake_learns_both_node_ids_and_channels_work():
    key_i, key_r, init, resp = make_pair()
    ri, rr = run_handshake(init, resp)
    assert ri.remote_node_id == key_r.node_id and rr.remote_node_id == key_i.node_id
    assert ri.remote_identity_key == key_r.public_key
    assert ri.channel.handshake_hash == rr.channel.handshake_hash
    for n in range(3):
        msg = ri.channel.seal(b"ping %d" % n)
        assert rr.channel.open(msg[2:]) == b"ping %d" % n
        back = rr.channel.seal(b"pong")
        assert ri.channel.open(back[2:]) == b"pong"


def test_expected_node_id_mismatch_fails_the_dialer():
    _, _, init, resp = make_pair(expected=NodeKey.generate().node_id)
    resp.receive_data(init.data_to_send())
    with pytest.raises(HandshakeFailed, match="expected"):
        init.receive_data(resp.data_to_send())


def test_expected_node_id_match_passes():
    key_r = NodeKey.generate()
    _, _, init, resp = make_pair(expected=key_r.node_id, key_r=key_r)
    ri, _ = run_handshake(init, resp)
    assert ri.remote_node_id == key_r.node_id


class ForgingHandshake(Handshake):
    """A responder whose identity signature covers a different static key."""

    def __init__(self, key, *args, **kwargs):
        super().__init__(key, *args, **kwargs)
        other = public_bytes(X25519PrivateKey.generate())
        self._payload = encode(IdentityPayload(key.public_key, key.sign(STATIC_KEY_DOMAIN + other)))


def test_signature_over_another_static_key_is_refused():
    key_i = NodeKey.generate()
    init = Handshake(key_i, X25519PrivateKey.generate(), initiator=True, prologue=PROLOGUE)
    resp = ForgingHandshake(
        NodeKey.generate(), X25519PrivateKey.generate(), initiator=False, prologue=PROLOGUE
    )
    resp.receive_data(init.data_to_send())
    with pytest.raises(HandshakeFailed, match="does not verify"):
        init.receive_data(resp.data_to_send())


def test_prologue_mismatch_fails():
    init = Handshake(
        NodeKey.generate(), X25519PrivateKey.generate(), initiator=True, prologue=b"depot/1"
    )
    resp = Handshake(
        NodeKey.generate(), X25519PrivateKey.generate(), initiator=False, prologue=b"depot/2"
    )
    resp.receive_data(init.data_to_send())
    with pytest.raises(HandshakeFailed):
        init.receive_data(resp.data_to_send())


def test_leftover_bytes_after_last_message_are_kept():
    _, _, init, resp = make_pair()
    resp.receive_data(init.data_to_send())
    init.receive_data(resp.data_to_send())
    early = init.result.channel.seal(b"early data")
    resp.receive_data(init.data_to_send() + bytes(early))
    assert resp.result.channel.open(resp.result.leftover[2:]) == b"early data"


def test_tampered_transport_message_is_decode_error():
    _, _, init, resp = make_pair()
    ri, rr = run_handshake(init, resp)
    sealed = ri.channel.seal(b"secret")
    sealed[5] ^= 1
    with pytest.raises(DecodeError):
        rr.channel.open(sealed[2:])
    # A failed open does not advance the nonce: the genuine next message still opens.
    good = ri.channel.seal(b"next")
    with pytest.raises(DecodeError):  # but it was sealed under nonce 1, receiver is at 0
        rr.channel.open(good[2:])


def test_seal_refuses_oversized_record():
    _, _, init, resp = make_pair()
    ri, _ = run_handshake(init, resp)
    with pytest.raises(LocalError):
        ri.channel.seal(bytes(65535 - 15))


def test_interop_with_noiseprotocol_package():
    """Our responder completes a handshake with an independent implementation."""
    key_r = NodeKey.generate()
    resp = Handshake(key_r, X25519PrivateKey.generate(), initiator=False, prologue=PROLOGUE)
    other = NoiseConnection.from_name(b"Noise_XX_25519_ChaChaPoly_SHA256")
    other.set_as_initiator()
    other.set_prologue(PROLOGUE)
    static = X25519PrivateKey.generate()
    other.set_keypair_from_private_bytes(
        Keypair.STATIC,
        static.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        ),
    )
    other.start_handshake()
    msg1 = bytes(other.write_message(b""))
    resp.receive_data(struct.pack(">H", len(msg1)) + msg1)
    out = resp.data_to_send()
    payload = other.read_message(out[2:])
    assert payload  # our identity payload
    key_i = NodeKey.generate()
    signature = key_i.sign(STATIC_KEY_DOMAIN + public_bytes(static))
    ident = encode(IdentityPayload(key_i.public_key, signature))
    msg3 = bytes(other.write_message(ident))
    resp.receive_data(struct.pack(">H", len(msg3)) + msg3)
    assert resp.result.remote_node_id == key_i.node_id
    sealed = resp.result.channel.seal(b"hello from depot")
    assert other.decrypt(bytes(sealed[2:])) == b"hello from depot"
    assert resp.result.channel.open(other.encrypt(b"hi back")) == b"hi back"


# -- fuzz: only typed remote errors may come out of a handshake fed hostile bytes ---------


def seeded(seed, initiator):
    key = NodeKey.from_seed(seed)
    return Handshake(key, X25519PrivateKey.generate(), initiator=initiator, prologue=PROLOGUE)


def _feed(hs, data):
    try:
        hs.receive_data(data)
    except RemoteError:
        return "remote-error"
    return "ok"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_responder_random_first_message(data):
    resp = Handshake(
        NodeKey.from_seed(b"\x01" * 32),
        X25519PrivateKey.generate(),
        initiator=False,
        prologue=PROLOGUE,
    )
    _feed(resp, data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=400), st.binary(max_size=8))
def test_fuzz_initiator_mutated_second_message(prefix, pos, junk):
    init = seeded(b"\x02" * 32, True)
    resp = seeded(b"\x03" * 32, False)
    resp.receive_data(init.data_to_send())
    msg2 = bytearray(resp.data_to_send())
    pos = pos % (len(msg2) + 1)
    mutated = bytes(msg2[:pos]) + junk + bytes(msg2[pos + len(junk) :])
    sent = prefix + mutated
    outcome = _feed(init, sent)
    # Only an intact second message (junk after it is the transport's business) may yield
    # a verified peer.
    assert outcome == "remote-error" or init.result is None or sent.startswith(bytes(msg2))


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=255))
def test_fuzz_responder_mutated_third_message(pos, xor):
    init = seeded(b"\x04" * 32, True)
    resp = seeded(b"\x05" * 32, False)
    resp.receive_data(init.data_to_send())
    init.receive_data(resp.data_to_send())
    msg3 = bytearray(init.data_to_send())
    msg3[pos % len(msg3)] ^= xor
    outcome = _feed(resp, bytes(msg3))
    assert outcome == "remote-error" or resp.result is None
