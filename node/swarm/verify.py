"""
Chunk and layer verification: the one place the swarm checks data against a root.

A piece is committed to by the RFC 9162 Merkle root over its 1 KiB leaves
(``contracts.spec.commitment``). Its *layer* is the list of roots of its aligned
``CHUNK_SIZE`` chunks; because every split point of the tree above a chunk is a multiple of
the chunk's leaf count, ``root_of_nodes(layer)`` is the piece root (BitTorrent v2's piece
layers, BEP 52). So a downloader verifies the layer once against the root, then every
chunk against its 32-byte entry, before the chunk is written or counted.

The functions here are the fast path of the reference (one list comprehension per tree
level instead of recursion). ``node.pieces`` will provide the project's fast Merkle code;
this module is where the swarm switches to it.
"""

from __future__ import annotations

from hashlib import sha256
from typing import Final

from contracts.spec.commitment import LEAF_PREFIX, LEAF_SIZE, NODE_PREFIX, root_of_nodes

CHUNK_SIZE: Final = 256 * 1024
"""Bytes per transfer chunk: 256 leaves, the unit of requests, stripes and the layer."""
HASH_SIZE: Final = 32


def chunk_count(piece_size: int) -> int:
    """Chunks in a piece of ``piece_size`` bytes (the last one may be short)."""
    if piece_size <= 0:
        raise ValueError(f"piece size must be positive, not {piece_size}")
    return -(-piece_size // CHUNK_SIZE)


def chunk_length(piece_size: int, index: int) -> int:
    """Length in bytes of chunk ``index`` of a piece."""
    count = chunk_count(piece_size)
    if not 0 <= index < count:
        raise ValueError(f"chunk {index} out of range for {count} chunks")
    if index < count - 1:
        return CHUNK_SIZE
    return piece_size - CHUNK_SIZE * (count - 1)


def chunk_root(data: bytes | memoryview) -> bytes:
    """MTH (RFC 9162 §2.1.1) over the 1 KiB leaves of one chunk, the last leaf padded."""
    n = len(data)
    leaves = [
        sha256(LEAF_PREFIX + data[i : i + LEAF_SIZE]).digest() for i in range(0, n, LEAF_SIZE)
    ]
    if n % LEAF_SIZE:
        last = bytes(data[n - n % LEAF_SIZE :])
        leaves[-1] = sha256(LEAF_PREFIX + last + b"\x00" * (LEAF_SIZE - len(last))).digest()
    if len(leaves) & (len(leaves) - 1):
        # Not a power of two (only a piece's last chunk): the reference's unbalanced split.
        return root_of_nodes(leaves)  # type: ignore[arg-type]
    while len(leaves) > 1:
        pairs = iter(leaves)
        leaves = [sha256(NODE_PREFIX + a + b).digest() for a, b in zip(pairs, pairs, strict=True)]
    return leaves[0]


def verify_layer(root: bytes, piece_size: int, layer: bytes) -> bool:
    """True iff ``layer`` has one hash per chunk and its Merkle root is ``root``."""
    count = chunk_count(piece_size)
    if len(layer) != count * HASH_SIZE:
        return False
    nodes = [layer[i : i + HASH_SIZE] for i in range(0, len(layer), HASH_SIZE)]
    return bytes(root_of_nodes(nodes)) == bytes(root)  # type: ignore[arg-type]


def verify_chunk(layer: bytes, index: int, data: bytes | memoryview) -> bool:
    """True iff ``data`` is chunk ``index`` of the piece whose verified layer is ``layer``."""
    start = index * HASH_SIZE
    if not 0 <= start < len(layer) or not 0 < len(data) <= CHUNK_SIZE:
        return False
    return chunk_root(data) == layer[start : start + HASH_SIZE]


def layer_of(piece: bytes | memoryview) -> bytes:
    """The layer of a whole piece (what a serving node keeps next to it)."""
    return b"".join(chunk_root(piece[i : i + CHUNK_SIZE]) for i in range(0, len(piece), CHUNK_SIZE))
