"""One stripe in, n share chunks out, and back from any k of them."""

import itertools

import pytest

from node.pieces.crypto import FileKeys
from node.pieces.errors import InvalidArgument, NotEnoughShares, Tampered
from node.pieces.layout import PLAINTEXT_CHUNK_SIZE
from node.pieces.modes import Copies, ErasureCode
from node.pieces.stripes import StripeCodec

from .helpers import pseudo_random

SALT = b"\x05" * 32
P = PLAINTEXT_CHUNK_SIZE


def codec(size, mode):
    keys = FileKeys.derive(b"\x09" * 32, SALT, mode.streams)
    return StripeCodec(size, mode, SALT, keys.stream_keys)


def plaintext_of(c, data, stripe):
    offset, length = c.plaintext_span(stripe)
    return data[offset : offset + length]


@pytest.mark.parametrize("size", [0, 1, P, 3 * P + 5])
def test_erasure_code_round_trip_from_any_k(size):
    c = codec(size, ErasureCode(2, 4))
    data = pseudo_random(size)
    for stripe in range(c.stripes):
        blocks = c.encode(stripe, plaintext_of(c, data, stripe))
        assert [len(b) for b in blocks] == [c.block_size(stripe)] * 4
        for subset in itertools.combinations(range(4), 2):
            chosen = {i: blocks[i] for i in subset}
            assert b"".join(c.decode(stripe, chosen)) == plaintext_of(c, data, stripe)


def test_copies_are_distinct_and_each_decodes():
    size = 2 * P + 9
    c = codec(size, Copies(3))
    data = pseudo_random(size)
    for stripe in range(c.stripes):
        blocks = c.encode(stripe, plaintext_of(c, data, stripe))
        assert len(set(map(bytes, blocks))) == 3
        for i in range(3):
            assert b"".join(c.decode(stripe, {i: blocks[i]})) == plaintext_of(c, data, stripe)


def test_flipped_bit_in_any_used_block_is_detected():
    size = 2 * P
    c = codec(size, ErasureCode(2, 3))
    blocks = [bytes(b) for b in c.encode(0, pseudo_random(size))]
    for share in range(3):
        for position in (0, len(blocks[share]) // 2, len(blocks[share]) - 1):
            bad = dict(enumerate(blocks))
            broken = bytearray(bad[share])
            broken[position] ^= 0x10
            bad[share] = bytes(broken)
            others = [i for i in range(3) if i != share]
            chosen = {share: bad[share], others[0]: bad[others[0]]}
            with pytest.raises(Tampered):
                c.decode(0, chosen)


def test_chunks_of_another_stripe_are_refused():
    size = 3 * P
    c = codec(size, Copies(1))
    data = pseudo_random(size)
    first = c.encode(0, plaintext_of(c, data, 0))[0]
    with pytest.raises(Tampered):
        c.decode(1, {0: first})


def test_codec_errors():
    c = codec(2 * P, ErasureCode(2, 3))
    with pytest.raises(InvalidArgument):
        c.encode(0, b"short")
    with pytest.raises(InvalidArgument):
        c.block_size(1)
    with pytest.raises(NotEnoughShares):
        c.decode(0, {0: b"\x00" * c.block_size(0)})
    with pytest.raises(InvalidArgument):
        StripeCodec(10, Copies(2), SALT, (b"\x00" * 32,))
    copies = codec(10, Copies(2))
    with pytest.raises(InvalidArgument):
        copies.decode(0, {5: b"\x00" * 26})
    with pytest.raises(InvalidArgument):
        copies.decode(0, {0: b"\x00" * 25})
