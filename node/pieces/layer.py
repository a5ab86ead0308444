"""
Proofs from the layer: what a provider keeps beside a piece, and how transfers are checked.

The *layer* of a piece is the concatenation of the roots of its 256 KiB chunks, 32 bytes
per chunk (1/8192 of the piece), the level of the commitment tree at the transfer-chunk
size, as BitTorrent v2 keeps "piece layers" (BEP 52). Because aligned chunks are subtrees
of the RFC 9162 tree (``contracts.spec.commitment.root_of_nodes``):

- a downloader checks the layer against the piece root once (``verify_layer``) and then
  every chunk on arrival (``verify_chunk``), or a lone chunk with its path through the
  layer tree (``chunk_proof``/``verify_chunk_proof``);
- a provider answers a challenge for leaf ``i`` by reading the one chunk holding it from
  disk, hashing that chunk's 256 leaves, and appending the chunk's path through the layer
  tree (``prove_leaf``). The result verifies with ``contracts.spec.commitment.verify_leaf``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from contracts.spec.commitment import (
    LEAF_SIZE,
    Hash32,
    leaf_count,
    pad_leaf,
    root_from_proof,
)
from node.pieces.errors import CorruptShare, InvalidArgument, UnreadableInput
from node.pieces.files import atomic_write
from node.pieces.layout import (
    CHUNK_SIZE,
    LEAVES_PER_CHUNK,
    piece_chunk_count,
    piece_chunk_size,
)
from node.pieces.merkle import HASH_SIZE, chunk_root, leaf_hashes, split_layer, tree_levels


def audit_path(levels: Sequence[Sequence[bytes]], index: int) -> list[Hash32]:
    """
    RFC 9162 §2.1.3.1 audit path of node ``index`` of the bottom level, nearest sibling
    first: at each level the sibling, unless the node is an odd last one being carried up
    (its sibling does not exist yet, and RFC 9162's path has no entry for that level).
    """
    if not 0 <= index < len(levels[0]):
        raise InvalidArgument(f"index {index} out of range for {len(levels[0])} nodes")
    path: list[Hash32] = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(Hash32(level[sibling]))
        index >>= 1
    return path


class LayerTree:
    """
    The tree above a piece's layer, built once (one hash per chunk) so that every later
    chunk path costs nothing. A provider proving many leaves of one piece keeps one.
    """

    def __init__(self, layer: bytes, piece_size: int) -> None:
        check_layer_length(layer, piece_size)
        self.layer = layer
        self.piece_size = piece_size
        self._levels = tree_levels(split_layer(layer))

    @property
    def root(self) -> Hash32:
        """The piece root the layer commits to."""
        return Hash32(self._levels[-1][0])

    def chunk_root(self, chunk: int) -> Hash32:
        """Layer entry ``chunk``."""
        return Hash32(self._levels[0][chunk])

    def chunk_path(self, chunk: int) -> list[Hash32]:
        """Path from chunk ``chunk``'s root up to the piece root."""
        return audit_path(self._levels, chunk)


def check_layer_length(layer: bytes, piece_size: int) -> None:
    """Raise ``InvalidArgument`` unless ``layer`` has one entry per chunk of the piece."""
    expected = piece_chunk_count(piece_size) * HASH_SIZE
    if piece_size <= 0 or len(layer) != expected:
        raise InvalidArgument(
            f"a layer of {len(layer)} bytes does not fit a piece of {piece_size} bytes "
            f"(expected {expected})"
        )


def verify_layer(root: bytes, piece_size: int, layer: bytes) -> bool:
    """True iff ``layer`` is the layer of the piece of ``piece_size`` bytes with ``root``."""
    if piece_size <= 0 or len(layer) != piece_chunk_count(piece_size) * HASH_SIZE:
        return False
    return bool(LayerTree(layer, piece_size).root == root)


def verify_chunk(layer: bytes, piece_size: int, chunk: int, data: bytes) -> bool:
    """
    True iff ``data`` is chunk ``chunk`` of the piece whose (verified) layer is ``layer``.

    The size is checked too: leaves are zero-padded, so without it a last chunk with its
    trailing zeros stripped or extended would hash the same.
    """
    if not 0 <= chunk < len(layer) // HASH_SIZE or piece_size <= 0:
        return False
    if len(data) != piece_chunk_size(piece_size, chunk):
        return False
    return chunk_root(data) == layer[chunk * HASH_SIZE : (chunk + 1) * HASH_SIZE]


def chunk_proof(layer: bytes, chunk: int) -> list[Hash32]:
    """Path from chunk ``chunk``'s root to the piece root, for a receiver without the layer."""
    return audit_path(tree_levels(split_layer(layer)), chunk)


def verify_chunk_proof(
    root: bytes, piece_size: int, chunk: int, data: bytes, proof: Sequence[bytes]
) -> bool:
    """True iff ``data`` is chunk ``chunk`` of the piece ``root`` of ``piece_size`` bytes."""
    chunks = piece_chunk_count(piece_size)
    if piece_size <= 0 or not 0 <= chunk < chunks:
        return False
    if len(data) != piece_chunk_size(piece_size, chunk):
        return False
    if any(len(p) != HASH_SIZE for p in proof):
        return False
    path = [Hash32(bytes(p)) for p in proof]
    return root_from_proof(chunk_root(data), chunk, chunks, path) == root


def prove_leaf(
    piece_path: str | os.PathLike[str],
    layer: bytes | LayerTree,
    piece_size: int,
    index: int,
) -> tuple[bytes, list[Hash32]]:
    """
    Answer a challenge for leaf ``index`` of a stored piece.

    Reads the one chunk holding the leaf, hashes its leaves, and joins the path inside
    the chunk to the chunk's path through the layer tree.

    Parameters
    ----------
    piece_path :
        The piece file.
    layer :
        The piece's layer (or a ``LayerTree`` built from it, to prove many leaves cheaply).
    piece_size :
        The piece's committed size.
    index :
        The challenged leaf.

    Returns
    -------
    (leaf, path) :
        The leaf zero-padded to ``LEAF_SIZE`` bytes and its RFC 9162 audit path, ready for
        ``contracts.spec.commitment.verify_leaf(root, piece_size, index, leaf, path)``.

    Raises
    ------
    InvalidArgument
        ``index`` is not a leaf of the piece, or the layer does not fit ``piece_size``.
    UnreadableInput
        The piece file cannot be read.
    CorruptShare
        The stored chunk no longer matches the layer (the proof would fail on chain).
    """
    tree = layer if isinstance(layer, LayerTree) else LayerTree(layer, piece_size)
    if tree.piece_size != piece_size:
        raise InvalidArgument("the layer tree was built for another piece size")
    if not 0 <= index < leaf_count(piece_size):
        raise InvalidArgument(f"leaf {index} out of range for a piece of {piece_size} bytes")
    chunk, leaf_in_chunk = divmod(index, LEAVES_PER_CHUNK)
    data = read_chunk(piece_path, piece_size, chunk)
    hashes = leaf_hashes(data)
    levels = tree_levels(hashes)
    if levels[-1][0] != tree.chunk_root(chunk):
        raise CorruptShare(f"{os.fspath(piece_path)}: chunk {chunk} does not match its layer")
    leaf = pad_leaf(bytes(data[leaf_in_chunk * LEAF_SIZE : (leaf_in_chunk + 1) * LEAF_SIZE]))
    return leaf, audit_path(levels, leaf_in_chunk) + tree.chunk_path(chunk)


def read_chunk(piece_path: str | os.PathLike[str], piece_size: int, chunk: int) -> bytes:
    """Chunk ``chunk`` of a stored piece (``UnreadableInput`` if the file is short)."""
    want = piece_chunk_size(piece_size, chunk)
    try:
        with open(piece_path, "rb", buffering=0) as f:
            data = os.pread(f.fileno(), want, chunk * CHUNK_SIZE)
    except OSError as exc:
        raise UnreadableInput(f"{os.fspath(piece_path)}: {exc.strerror}") from exc
    if len(data) != want:
        raise UnreadableInput(f"{os.fspath(piece_path)}: shorter than {piece_size} bytes")
    return data


def read_layer(path: str | os.PathLike[str], piece_size: int) -> bytes:
    """Read a layer file (raw chunk roots) and check its length against the piece size."""
    try:
        layer = Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableInput(f"{os.fspath(path)}: {exc.strerror}") from exc
    check_layer_length(layer, piece_size)
    return layer


def write_layer(path: str | os.PathLike[str], layer: bytes) -> None:
    """Write a layer file atomically (temporary name, fsync, rename)."""
    atomic_write(path, layer)
