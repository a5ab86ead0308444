"""Geometry: stripes tile the ciphertext exactly and share chunks align with the tree."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.pieces.layout import (
    CHUNK_SIZE,
    LEAVES_PER_CHUNK,
    PLAINTEXT_CHUNK_SIZE,
    TAG_SIZE,
    block_size,
    chunk_count,
    ciphertext_size,
    piece_chunk_count,
    piece_chunk_size,
    plaintext_span,
    share_size,
    stripe_count,
    stripe_span,
)

P = PLAINTEXT_CHUNK_SIZE


def test_constants():
    assert CHUNK_SIZE == 256 * 1024
    assert LEAVES_PER_CHUNK == 256
    assert P == CHUNK_SIZE - TAG_SIZE


@pytest.mark.parametrize(
    ("size", "chunks", "cipher"),
    [
        (0, 1, 16),
        (1, 1, 17),
        (P, 1, CHUNK_SIZE),
        (P + 1, 2, CHUNK_SIZE + 17),
        (3 * P, 3, 3 * CHUNK_SIZE),
    ],
)
def test_chunks(size, chunks, cipher):
    assert chunk_count(size) == chunks
    assert ciphertext_size(size) == cipher


def test_tiny_file_shares():
    # 16 bytes of ciphertext (the tag of an empty file) over k = 10: ten 2-byte blocks.
    assert share_size(0, 10) == 2
    assert share_size(0, 29) == 1
    assert share_size(0, 1) == 16


def test_one_gib_example_of_the_docs():
    size = 1 << 30
    assert chunk_count(size) == 4097
    assert ciphertext_size(size) == 1_073_807_376
    assert stripe_count(size, 10) == 410
    assert stripe_span(size, 10, 409)[1] == 1_638_416
    assert block_size(size, 10, 409) == 163_842
    assert share_size(size, 10) == 409 * CHUNK_SIZE + 163_842 == 107_380_738


@given(st.integers(0, 40 * CHUNK_SIZE), st.integers(1, 12))
@settings(max_examples=200, deadline=None)
def test_stripes_tile_the_ciphertext(size, k):
    stripes = stripe_count(size, k)
    position = 0
    for j in range(stripes):
        offset, length = stripe_span(size, k, j)
        assert offset == position
        assert 0 < length <= k * CHUNK_SIZE
        b = block_size(size, k, j)
        assert k * b >= length > k * (b - 1)
        if j < stripes - 1:
            assert b == CHUNK_SIZE
        position += length
    assert position == ciphertext_size(size)
    assert share_size(size, k) == (stripes - 1) * CHUNK_SIZE + block_size(size, k, stripes - 1)
    assert piece_chunk_count(share_size(size, k)) == stripes
    for j in range(stripes):
        assert piece_chunk_size(share_size(size, k), j) == block_size(size, k, j)


@given(st.integers(0, 10 * CHUNK_SIZE))
@settings(max_examples=100, deadline=None)
def test_plaintext_spans_tile_the_file(size):
    position = 0
    for c in range(chunk_count(size)):
        offset, length = plaintext_span(size, c)
        assert offset == position
        assert 0 <= length <= P
        position += length
    assert position == size
