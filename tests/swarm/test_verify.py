"""Chunk and layer verification agree with the reference commitment."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.spec.commitment import merkle_root
from node.swarm.verify import (
    CHUNK_SIZE,
    chunk_count,
    chunk_length,
    chunk_root,
    layer_of,
    verify_chunk,
    verify_layer,
)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3 * CHUNK_SIZE + 5000))
def test_layer_root_is_the_piece_root(size: int) -> None:
    piece = os.urandom(size)
    layer = layer_of(piece)
    assert len(layer) == 32 * chunk_count(size)
    assert verify_layer(merkle_root(piece), size, layer)
    for j in range(chunk_count(size)):
        data = piece[j * CHUNK_SIZE : (j + 1) * CHUNK_SIZE]
        assert len(data) == chunk_length(size, j)
        assert chunk_root(data) == merkle_root(data)
        assert verify_chunk(layer, j, data)


def test_tampering_is_caught() -> None:
    piece = os.urandom(2 * CHUNK_SIZE + 100)
    layer = layer_of(piece)
    root = merkle_root(piece)
    chunk = bytearray(piece[:CHUNK_SIZE])
    chunk[1000] ^= 1
    assert not verify_chunk(layer, 0, bytes(chunk))
    assert not verify_chunk(layer, 1, piece[:CHUNK_SIZE])  # right data, wrong index
    assert not verify_chunk(layer, 3, piece[:CHUNK_SIZE])  # out of range
    assert not verify_chunk(layer, 2, b"")
    assert not verify_layer(root, len(piece), layer[:-32])
    assert not verify_layer(root, len(piece), bytes(32) + layer[32:])
    assert not verify_layer(root, len(piece) + CHUNK_SIZE, layer)
