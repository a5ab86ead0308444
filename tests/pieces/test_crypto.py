"""STREAM chunk encryption: round trips, and every way of moving or changing a chunk fails."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.pieces.crypto import (
    KEY_CHECK_SIZE,
    MAX_NAME_SIZE,
    NAME_PAD,
    SALT_SIZE,
    ChunkCipher,
    FileKeys,
    derive_key,
    new_salt,
)
from node.pieces.errors import InvalidArgument, Tampered
from node.pieces.layout import TAG_SIZE

SECRET = b"\x11" * 32
SALT = b"\x22" * SALT_SIZE


def test_keys_are_deterministic_and_distinct():
    a = FileKeys.derive(SECRET, SALT, 3)
    b = FileKeys.derive(SECRET, SALT, 3)
    assert a == b
    keys = [*a.stream_keys, a.mac_key, a.name_key]
    assert len(set(keys)) == len(keys) == 5
    assert len(a.key_check) == KEY_CHECK_SIZE
    assert a.stream_keys[0] != FileKeys.derive(SECRET, new_salt(), 1).stream_keys[0]
    assert a.stream_keys[0] != FileKeys.derive(b"\x12" * 32, SALT, 1).stream_keys[0]


def test_key_check():
    keys = FileKeys.derive(SECRET, SALT, 1)
    assert keys.matches(keys.key_check)
    assert not keys.matches(FileKeys.derive(b"\x12" * 32, SALT, 1).key_check)


@pytest.mark.parametrize("secret", [b"", b"\x00" * 31, b"\x00" * 33, "x" * 32])
def test_bad_secret(secret):
    with pytest.raises(InvalidArgument):
        FileKeys.derive(secret, SALT, 1)


def test_bad_salt():
    with pytest.raises(InvalidArgument):
        derive_key(SECRET, b"short", b"label")


@given(st.binary(max_size=3000), st.integers(0, 2**40), st.booleans())
@settings(max_examples=50, deadline=None)
def test_round_trip(plaintext, index, last):
    cipher = ChunkCipher(FileKeys.derive(SECRET, SALT, 1).stream_keys[0], SALT, 0)
    sealed = cipher.seal(index, last, plaintext)
    assert len(sealed) == len(plaintext) + TAG_SIZE
    assert cipher.open(index, last, sealed) == plaintext


def test_nonces_differ_per_chunk():
    cipher = ChunkCipher(b"\x33" * 32, SALT, 0)
    block = b"\x00" * 64
    assert len({cipher.seal(i, False, block) for i in range(50)}) == 50


@given(st.binary(min_size=1, max_size=200), st.data())
@settings(max_examples=50, deadline=None)
def test_any_flipped_bit_is_detected(plaintext, data):
    cipher = ChunkCipher(b"\x33" * 32, SALT, 0)
    sealed = bytearray(cipher.seal(5, False, plaintext))
    bit = data.draw(st.integers(0, 8 * len(sealed) - 1))
    sealed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(Tampered):
        cipher.open(5, False, bytes(sealed))


def test_chunk_cannot_move():
    key = b"\x33" * 32
    cipher = ChunkCipher(key, SALT, 0)
    sealed = cipher.seal(7, False, b"payload")
    with pytest.raises(Tampered):
        cipher.open(8, False, sealed)  # reordered
    with pytest.raises(Tampered):
        cipher.open(7, True, sealed)  # presented as the last chunk (truncation)
    with pytest.raises(Tampered):
        ChunkCipher(key, SALT, 1).open(7, False, sealed)  # another copy's stream
    with pytest.raises(Tampered):
        ChunkCipher(key, b"\x44" * SALT_SIZE, 0).open(7, False, sealed)  # another file
    with pytest.raises(Tampered):
        ChunkCipher(b"\x34" * 32, SALT, 0).open(7, False, sealed)  # wrong key
    with pytest.raises(Tampered):
        cipher.open(7, False, sealed[: TAG_SIZE - 1])


@pytest.mark.parametrize("name", ["a", "report.pdf", "é" * 100, "x" * MAX_NAME_SIZE])
def test_name_round_trip_hides_length(name):
    keys = FileKeys.derive(SECRET, SALT, 1)
    sealed = keys.seal_name(name)
    assert (len(sealed) - TAG_SIZE) % NAME_PAD == 0
    assert keys.open_name(sealed) == name


def test_name_errors():
    keys = FileKeys.derive(SECRET, SALT, 1)
    for bad in ("", "a\x00b", "x" * (MAX_NAME_SIZE + 1)):
        with pytest.raises(InvalidArgument):
            keys.seal_name(bad)
    sealed = bytearray(keys.seal_name("name"))
    sealed[0] ^= 1
    with pytest.raises(Tampered):
        keys.open_name(bytes(sealed))
    with pytest.raises(Tampered):
        FileKeys.derive(b"\x12" * 32, SALT, 1).open_name(keys.seal_name("name"))
