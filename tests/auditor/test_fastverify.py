"""The fast variants agree with the reference specification."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.spec import challenge, commitment
from market.auditor import fastverify

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


@given(
    seed=st.binary(min_size=32, max_size=32),
    provider=addresses,
    period=st.integers(0, 2**64),
    leaf_range=st.integers(1, 2**70),
)
@settings(max_examples=200, deadline=None)
def test_challenge_indices_match_the_spec(
    seed: bytes, provider: str, period: int, leaf_range: int
) -> None:
    expected = [challenge.challenge_index(seed, provider, period, i, leaf_range) for i in range(5)]
    assert fastverify.challenge_indices(seed, provider, period, 5, leaf_range) == expected


@given(
    size=st.integers(1, 40 * 1024),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_verify_leaf_matches_the_spec(size: int, seed: int, data: st.DataObject) -> None:
    piece = random.Random(seed).randbytes(size)
    hashes = [commitment.hash_leaf(x) for x in commitment.leaves_of(piece)]
    root = commitment.root_of_nodes(hashes)
    n = len(hashes)
    index = data.draw(st.integers(0, n - 1))
    leaf = commitment.pad_leaf(commitment.leaves_of(piece)[index])
    path = commitment.inclusion_proof(hashes, index)
    assert fastverify.verify_leaf(root, n, index, leaf, path)
    # Any tampering: a flipped byte, another index, a truncated or extended path, another size.
    flip = data.draw(st.integers(0, 1023))
    variants = [
        (root, n, index, leaf[:flip] + bytes([leaf[flip] ^ 1]) + leaf[flip + 1 :], path),
        (root, n, (index + 1) % (n + 1), leaf, path),
        (root, n, index, leaf, path[:-1]),
        (root, n, index, leaf, [*path, bytes(32)]),
        (root, n + 1, index, leaf, path),
        (root, n, index, leaf[:-1], path),
    ]
    for r, size, i, lf, p in variants:
        assert fastverify.verify_leaf(r, size, i, lf, p) == commitment.verify_leaf(
            r, size * 1024, i, lf, p
        )
