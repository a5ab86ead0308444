"""contracts/spec/commitment.py against the vectors, plus properties of the Merkle tree."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.spec import commitment as c


def h(x: str) -> bytes:
    return bytes.fromhex(x.removeprefix("0x"))


def test_roots(vectors):
    data = vectors("commitment")
    assert data["leaf_size"] == c.LEAF_SIZE == 1024
    assert h(data["empty_root"]) == c.EMPTY_ROOT == c.merkle_root(b"")
    for case in data["roots"]:
        assert c.merkle_root(h(case["piece"])) == h(case["root"]), case["name"]


def test_proofs(vectors):
    data = vectors("commitment")
    pieces = {case["root"]: h(case["piece"]) for case in data["roots"]}
    assert any(not case["valid"] for case in data["proofs"])
    for case in data["proofs"]:
        path = [h(p) for p in case["path"]]
        ok = c.verify_leaf(
            h(case["root"]), case["piece_size"], case["index"], h(case["leaf"]), path
        )
        assert ok is case["valid"], case["name"]
        if case["valid"]:
            piece = pieces[case["root"]]
            hashes = [c.hash_leaf(x) for x in c.leaves_of(piece)]
            assert c.inclusion_proof(hashes, case["index"]) == path, case["name"]


def test_maximum_depth(vectors):
    for case in vectors("commitment")["max_depth"]:
        path = [h(p) for p in case["path"]]
        assert len(path) <= c.MAX_PROOF_DEPTH
        assert c.verify_leaf(
            h(case["root"]), case["piece_size"], case["index"], h(case["leaf"]), path
        ), case["name"]
    deepest = max(len(case["path"]) for case in vectors("commitment")["max_depth"])
    assert deepest == c.MAX_PROOF_DEPTH


def test_paths_beyond_the_maximum_depth_are_refused():
    assert c.root_from_proof(c.hash_leaf(b""), 0, 2**41, [c.EMPTY_ROOT] * 41) is None


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 24 * 1024), seed=st.integers(0, 2**32), data=st.data())
def test_every_leaf_proves_and_nothing_else_does(size, seed, data):
    # Random bytes from a drawn seed: Hypothesis itself cannot draw 24 KiB cheaply.
    piece = random.Random(seed).randbytes(size)
    hashes = [c.hash_leaf(x) for x in c.leaves_of(piece)]
    root = c.merkle_root(piece)
    index = data.draw(st.integers(0, len(hashes) - 1))
    leaf = c.pad_leaf(c.leaves_of(piece)[index])
    path = c.inclusion_proof(hashes, index)
    assert c.verify_leaf(root, size, index, leaf, path)
    flipped = bytes([leaf[0] ^ 1]) + leaf[1:]
    assert not c.verify_leaf(root, size, index, flipped, path)
    if len(hashes) > 1:
        assert not c.verify_leaf(root, size, index, leaf, path[:-1])
        other = (index + 1) % len(hashes)
        if hashes[other] != hashes[index]:  # identical leaves legitimately share proofs
            assert not c.verify_leaf(root, size, other, leaf, path)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), m=st.integers(0, 5))
def test_root_over_aligned_chunk_roots(n, m):
    """The property the transfer layer relies on (BEP 52 piece layers)."""
    hashes = [c.hash_leaf(i.to_bytes(4, "big")) for i in range(n)]
    chunk = 2**m
    chunk_roots = [c.root_of_nodes(hashes[i : i + chunk]) for i in range(0, n, chunk)]
    assert c.root_of_nodes(chunk_roots) == c.root_of_nodes(hashes)


def test_domain_errors():
    with pytest.raises(c.CommitmentError):
        c.pad_leaf(b"x" * 1025)
    with pytest.raises(c.CommitmentError):
        c.split_point(1)
    with pytest.raises(c.CommitmentError):
        c.leaf_count(-1)
    with pytest.raises(c.CommitmentError):
        c.inclusion_proof([c.EMPTY_ROOT], 1)
    assert c.leaf_count(0) == 0 and c.leaf_count(1) == 1 and c.leaf_count(1025) == 2
    assert c.root_from_proof(c.EMPTY_ROOT, 3, 3, []) is None
