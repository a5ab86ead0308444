"""k-of-n stripe coding: any k distinct blocks give the stripe back."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.pieces.erasure import StripeCoder, check_code
from node.pieces.errors import InvalidArgument, NotEnoughShares


@st.composite
def coded_stripes(draw):
    n = draw(st.integers(1, 12))
    k = draw(st.integers(1, n))
    chunk = draw(st.integers(1, 64))
    count = draw(st.integers(1, k))
    last = draw(st.integers(1, chunk))
    chunks = [os.urandom(chunk) for _ in range(count - 1)] + [os.urandom(last)]
    subset = draw(st.permutations(range(n)))[:k]
    return k, n, chunks, subset


@given(coded_stripes())
@settings(max_examples=150, deadline=None)
def test_any_k_blocks_decode(case):
    k, n, chunks, subset = case
    coder = StripeCoder(k, n)
    blocks = coder.encode(chunks)
    assert len(blocks) == n
    assert len({len(b) for b in blocks}) == 1
    stripe = b"".join(chunks)
    data = coder.decode({i: blocks[i] for i in subset}, len(stripe))
    assert len(data) == k
    assert b"".join(data)[: len(stripe)] == stripe


def test_full_stripe_blocks_are_the_chunks():
    coder = StripeCoder(3, 5)
    chunks = [os.urandom(16) for _ in range(3)]
    blocks = coder.encode(chunks)
    assert blocks[:3] == chunks
    assert len(set(map(bytes, blocks))) == 5


def test_short_stripe_is_padded_evenly():
    coder = StripeCoder(4, 6)
    data = os.urandom(10)
    blocks = coder.data_blocks([data])
    assert [len(b) for b in blocks] == [3, 3, 3, 3]
    assert b"".join(blocks) == data + b"\x00\x00"


def test_decode_errors():
    coder = StripeCoder(2, 4)
    blocks = coder.encode([b"abcd", b"efgh"])
    with pytest.raises(NotEnoughShares):
        coder.decode({0: blocks[0]}, 8)
    with pytest.raises(InvalidArgument):
        coder.decode({0: blocks[0], 9: blocks[1]}, 8)
    with pytest.raises(InvalidArgument):
        coder.decode({0: blocks[0], 1: blocks[1][:3]}, 8)
    with pytest.raises(InvalidArgument):
        coder.encode([])
    with pytest.raises(InvalidArgument):
        coder.encode([b"a", b"b", b"c"])


@pytest.mark.parametrize(("k", "n"), [(0, 1), (2, 1), (1, 257), (-1, 3)])
def test_bad_codes(k, n):
    with pytest.raises(InvalidArgument):
        check_code(k, n)
    with pytest.raises(InvalidArgument):
        StripeCoder(k, n)
