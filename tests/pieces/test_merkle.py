"""The fast commitment equals the spec's, byte for byte, however the bytes arrive."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.spec.commitment import EMPTY_ROOT, hash_leaf, merkle_root, root_of_nodes
from node.pieces.errors import UnreadableInput
from node.pieces.layout import CHUNK_SIZE
from node.pieces.merkle import (
    PieceHasher,
    chunk_root,
    fold,
    layer_of,
    leaf_hashes,
    piece_root,
    piece_root_and_layer,
    piece_roots_and_layers,
    root_of_layer,
    split_layer,
)

from .helpers import INLINE, LEAF, PARALLEL, pseudo_random

C = CHUNK_SIZE
EDGE_SIZES = [1, LEAF - 1, LEAF, LEAF + 1, C - 1, C, C + 1, 2 * C, 3 * C + 5 * LEAF + 3]


@st.composite
def piece_sizes(draw):
    """Sizes near leaf and chunk boundaries, where the padding and the tree shape change."""
    chunks = draw(st.integers(0, 4))
    leaves = draw(st.integers(0, 256))
    delta = draw(st.integers(-2, 2))
    return max(0, chunks * C + leaves * LEAF + delta)


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=700))
@settings(max_examples=200, deadline=None)
def test_fold_equals_spec_root_of_nodes(nodes):
    assert fold(nodes) == root_of_nodes(nodes)


@given(piece_sizes(), st.integers(0, 2**32))
@settings(max_examples=40, deadline=None)
def test_piece_root_equals_spec(size, seed):
    data = pseudo_random(size, seed)
    assert piece_root(data) == merkle_root(data)


@pytest.mark.parametrize("size", EDGE_SIZES)
def test_edge_sizes_equal_spec(size):
    data = os.urandom(size)
    assert piece_root(data) == merkle_root(data)


def test_layer_entries_are_chunk_roots():
    data = os.urandom(2 * C + 100)
    layer = layer_of(data)
    assert split_layer(layer) == [
        merkle_root(data[:C]),
        merkle_root(data[C : 2 * C]),
        merkle_root(data[2 * C :]),
    ]
    assert root_of_layer(layer) == merkle_root(data)


def test_leaf_hashes_pad_the_last_leaf():
    data = os.urandom(LEAF + 3)
    assert leaf_hashes(data) == [hash_leaf(data[:LEAF]), hash_leaf(data[LEAF:])]
    assert chunk_root(data) == merkle_root(data)


def test_empty_piece():
    hasher = PieceHasher()
    assert hasher.finish() == (EMPTY_ROOT, b"")
    assert piece_root(b"") == merkle_root(b"") == EMPTY_ROOT


@given(piece_sizes(), st.lists(st.integers(1, 3 * C), max_size=8), st.integers(0, 2**32))
@settings(max_examples=40, deadline=None)
def test_piece_hasher_any_slicing(size, cuts, seed):
    data = pseudo_random(size, seed)
    hasher = PieceHasher()
    position = 0
    for cut in cuts:
        hasher.update(data[position : position + cut])
        position += cut
    hasher.update(memoryview(data)[position:])
    root, layer = hasher.finish()
    assert hasher.size == size
    assert root == merkle_root(data)
    assert layer == layer_of(data)


def test_piece_hasher_refuses_update_after_finish():
    hasher = PieceHasher()
    hasher.update(b"x")
    hasher.finish()
    with pytest.raises(ValueError):
        hasher.update(b"y")


@pytest.mark.parametrize("config", [INLINE, PARALLEL], ids=["inline", "parallel"])
@pytest.mark.parametrize("size", [1, C, 5 * C + 77])
def test_piece_root_and_layer_of_file(tmp_path, config, size):
    data = os.urandom(size)
    path = tmp_path / "piece"
    path.write_bytes(data)
    root, layer = piece_root_and_layer(path, config=config)
    assert root == merkle_root(data)
    assert layer == layer_of(data)


def test_piece_root_and_layer_unreadable(tmp_path):
    with pytest.raises(UnreadableInput):
        piece_root_and_layer(tmp_path / "missing")


@pytest.mark.parametrize("config", [INLINE, PARALLEL], ids=["inline", "parallel"])
def test_several_pieces_at_once(tmp_path, config):
    blobs = [os.urandom(n) for n in (1, 3 * C + 9, C)]
    paths = []
    for i, blob in enumerate(blobs):
        paths.append(tmp_path / f"p{i}")
        paths[-1].write_bytes(blob)
    pieces = [(p, len(b)) for p, b in zip(paths, blobs, strict=True)]
    pieces.append((paths[1], 3 * C + 10))  # one byte longer than the file: unreadable
    pieces.append((tmp_path / "missing", 5))
    results = piece_roots_and_layers(pieces, config=config)
    assert results[:3] == [(merkle_root(b), layer_of(b)) for b in blobs]
    assert results[3:] == [None, None]
