"""Layers, chunk verification and leaf proofs agree with contracts.spec.commitment."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.spec.commitment import (
    hash_leaf,
    inclusion_proof,
    leaf_count,
    leaves_of,
    merkle_root,
    verify_leaf,
)
from node.pieces.errors import CorruptShare, InvalidArgument, UnreadableInput
from node.pieces.layer import (
    LayerTree,
    audit_path,
    chunk_proof,
    prove_leaf,
    read_layer,
    verify_chunk,
    verify_chunk_proof,
    verify_layer,
    write_layer,
)
from node.pieces.layout import CHUNK_SIZE
from node.pieces.merkle import layer_of, split_layer, tree_levels

from .helpers import LEAF, pseudo_random

C = CHUNK_SIZE


def stored(tmp_path, size, seed=0):
    data = pseudo_random(size, seed)
    path = tmp_path / f"piece-{size}-{seed}"
    path.write_bytes(data)
    return data, path, layer_of(data)


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=300), st.data())
@settings(max_examples=150, deadline=None)
def test_audit_path_equals_spec_inclusion_proof(nodes, data):
    index = data.draw(st.integers(0, len(nodes) - 1))
    assert audit_path(tree_levels(nodes), index) == inclusion_proof(nodes, index)


@given(
    st.integers(1, 3 * C + 7 * LEAF + 5).filter(lambda s: s % LEAF != 0 or s % 3 == 0),
    st.data(),
)
@settings(max_examples=40, deadline=None)
def test_prove_leaf_verifies_with_spec(tmp_path_factory, size, data):
    piece, path, layer = stored(tmp_path_factory.mktemp("p"), size)
    root = merkle_root(piece)
    index = data.draw(st.integers(0, leaf_count(size) - 1))
    leaf, proof = prove_leaf(path, layer, size, index)
    assert len(leaf) == LEAF
    assert verify_leaf(root, size, index, leaf, proof)
    spec_leaves = leaves_of(piece)
    assert proof == inclusion_proof([hash_leaf(x) for x in spec_leaves], index)


def test_prove_every_leaf_of_a_small_piece(tmp_path):
    size = C + 3 * LEAF + 10
    piece, path, layer = stored(tmp_path, size)
    root = merkle_root(piece)
    tree = LayerTree(layer, size)
    assert tree.root == root
    for index in range(leaf_count(size)):
        leaf, proof = prove_leaf(path, tree, size, index)
        assert verify_leaf(root, size, index, leaf, proof)


def test_prove_leaf_detects_rotten_data(tmp_path):
    size = 2 * C
    _, path, layer = stored(tmp_path, size)
    with open(path, "r+b") as f:
        f.seek(C + 5)
        byte = f.read(1)
        f.seek(C + 5)
        f.write(bytes([byte[0] ^ 1]))
    prove_leaf(path, layer, size, 0)  # chunk 0 is intact
    with pytest.raises(CorruptShare):
        prove_leaf(path, layer, size, 256)


def test_prove_leaf_bad_arguments(tmp_path):
    size = C + 1
    _, path, layer = stored(tmp_path, size)
    with pytest.raises(InvalidArgument):
        prove_leaf(path, layer, size, leaf_count(size))
    with pytest.raises(InvalidArgument):
        prove_leaf(path, layer[:-32], size, 0)
    with pytest.raises(InvalidArgument):
        prove_leaf(path, LayerTree(layer, size), size + C, 0)
    with pytest.raises(UnreadableInput):
        prove_leaf(tmp_path / "missing", layer, size, 0)
    path.write_bytes(b"short")
    with pytest.raises(UnreadableInput):
        prove_leaf(path, layer, size, 256)


@pytest.mark.parametrize("size", [1, C - 1, C, C + 1, 5 * C + 3])
def test_verify_layer_and_chunks(size):
    piece = os.urandom(size)
    root = merkle_root(piece)
    layer = layer_of(piece)
    assert verify_layer(root, size, layer)
    chunks = [piece[o : o + C] for o in range(0, size, C)]
    for i, chunk in enumerate(chunks):
        assert verify_chunk(layer, size, i, chunk)
        proof = chunk_proof(layer, i)
        assert verify_chunk_proof(root, size, i, chunk, proof)
        flipped = bytes([chunk[0] ^ 0x80]) + chunk[1:]
        assert not verify_chunk(layer, size, i, flipped)
        assert not verify_chunk_proof(root, size, i, flipped, proof)
    assert not verify_chunk(layer, size, len(chunks), b"x")
    assert not verify_chunk_proof(root, size, len(chunks), b"x", [])


def test_verify_chunk_checks_the_exact_size():
    # A last chunk ending inside a leaf hashes the same with its zero padding appended:
    # only the committed size tells them apart.
    size = C + 10
    piece = os.urandom(C) + b"0123456789"
    layer = layer_of(piece)
    last = piece[C:]
    padded = last + b"\x00" * 5
    assert verify_chunk(layer, size, 1, last)
    assert not verify_chunk(layer, size, 1, padded)
    assert not verify_chunk_proof(merkle_root(piece), size, 1, padded, chunk_proof(layer, 1))


def test_verify_layer_rejects():
    piece = os.urandom(3 * C)
    root = merkle_root(piece)
    layer = layer_of(piece)
    assert not verify_layer(root, 3 * C, layer[:-32])
    assert not verify_layer(root, 2 * C, layer)
    assert not verify_layer(root, 0, b"")
    entries = split_layer(layer)
    assert not verify_layer(root, 3 * C, b"".join([entries[1], entries[0], entries[2]]))
    for bit in (0, 100, 8 * len(layer) - 1):
        bad = bytearray(layer)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert not verify_layer(root, 3 * C, bytes(bad))


def test_verify_chunk_proof_rejects_malformed_paths():
    piece = os.urandom(3 * C)
    root = merkle_root(piece)
    layer = layer_of(piece)
    proof = chunk_proof(layer, 0)
    chunk = piece[:C]
    assert not verify_chunk_proof(root, 3 * C, 0, chunk, proof[:-1])
    assert not verify_chunk_proof(root, 3 * C, 0, chunk, [*proof, proof[0]])
    assert not verify_chunk_proof(root, 3 * C, 0, chunk, [p[:31] for p in proof])
    assert not verify_chunk_proof(root, 3 * C, 1, chunk, proof)


def test_layer_files(tmp_path):
    layer = layer_of(os.urandom(2 * C + 1))
    path = tmp_path / "x.layer"
    write_layer(path, layer)
    assert read_layer(path, 2 * C + 1) == layer
    assert [p.name for p in tmp_path.iterdir()] == ["x.layer"]
    with pytest.raises(InvalidArgument):
        read_layer(path, C)
    with pytest.raises(UnreadableInput):
        read_layer(tmp_path / "missing", C)
