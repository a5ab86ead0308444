"""
Piece commitment: the reference specification.

A piece is committed to by the root of a binary SHA-256 Merkle tree over its fixed-size
leaves. The tree is the Merkle Tree Hash of RFC 9162 (Certificate Transparency v2),
section 2.1.1, with one addition: every leaf is exactly ``LEAF_SIZE`` bytes, the last one
zero-padded. The piece's byte size is committed next to the root (in the deal), so the
padding is never ambiguous.

- Leaves and inner nodes are domain-separated by a one-byte prefix (RFC 9162 §2.1.1),
  so that an inner node can never be presented as a leaf (second-preimage attack).
- A tree of ``n`` leaves that is not a power of two is split at ``k``, the largest power of
  two smaller than ``n``: no padding leaves, no duplicated nodes (the Bitcoin CVE-2012-2459
  pitfall).
- Inclusion proofs and their verification follow RFC 9162 §2.1.3.

This module is the readable reference. The Vyper contract (``contracts/src/merkle.vy``) and
the fast implementations (``node/pieces/``) must agree with it byte for byte; the shared JSON
vectors in ``tests/vectors/`` hold them together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final, NewType

Hash32 = NewType("Hash32", bytes)

LEAF_SIZE: Final = 1024
"""Bytes per leaf. One challenge sends one whole leaf, so this trades proof calldata
(~40 gas per byte under EIP-7623) against Merkle hashing speed (docs/commitment.md)."""

LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"

MAX_PROOF_DEPTH: Final = 40
"""Longest inclusion proof the contract accepts: pieces up to 2**40 leaves (1 PiB)."""

EMPTY_ROOT: Final = Hash32(hashlib.sha256(b"").digest())
"""MTH of no leaves (RFC 9162 §2.1.1). A deal never commits to an empty piece."""


class CommitmentError(ValueError):
    """A value outside the commitment scheme's domain (bad size, index or proof shape)."""


def leaf_count(piece_size: int) -> int:
    """
    Number of leaves of a piece.

    Parameters
    ----------
    piece_size :
        Size of the piece in bytes.

    Returns
    -------
    count : int
        ``ceil(piece_size / LEAF_SIZE)``.
    """
    if piece_size < 0:
        raise CommitmentError(f"negative piece size {piece_size}")
    return -(-piece_size // LEAF_SIZE)


def pad_leaf(data: bytes) -> bytes:
    """Zero-pad the last, partial leaf of a piece to ``LEAF_SIZE`` bytes."""
    if len(data) > LEAF_SIZE:
        raise CommitmentError(f"leaf of {len(data)} bytes is larger than {LEAF_SIZE}")
    return bytes(data) + b"\x00" * (LEAF_SIZE - len(data))


def hash_leaf(data: bytes) -> Hash32:
    """``SHA-256(0x00 || leaf)``, the leaf padded to ``LEAF_SIZE`` (RFC 9162 §2.1.1)."""
    return Hash32(hashlib.sha256(LEAF_PREFIX + pad_leaf(data)).digest())


def hash_node(left: Hash32, right: Hash32) -> Hash32:
    """``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1)."""
    return Hash32(hashlib.sha256(NODE_PREFIX + left + right).digest())


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    if n < 2:
        raise CommitmentError(f"no split point for {n} nodes")
    return 1 << ((n - 1).bit_length() - 1)


def leaves_of(piece: bytes) -> list[bytes]:
    """Split a piece into its leaves; the last one is padded by ``hash_leaf``."""
    return [piece[i : i + LEAF_SIZE] for i in range(0, len(piece), LEAF_SIZE)]


def root_of_nodes(nodes: Sequence[Hash32]) -> Hash32:
    """
    Merkle Tree Hash over already-hashed subtrees (RFC 9162 §2.1.1 without the leaf step).

    Because every split point of a tree of more than ``2**m`` leaves is a multiple of
    ``2**m``, the root over the leaves equals this function applied to the roots of the
    aligned ``2**m``-leaf chunks (the last chunk may be partial). That is what lets a
    downloader verify a transfer chunk by chunk (BitTorrent v2's piece layers, BEP 52).
    """
    if not nodes:
        return EMPTY_ROOT
    if len(nodes) == 1:
        return nodes[0]
    k = split_point(len(nodes))
    return hash_node(root_of_nodes(nodes[:k]), root_of_nodes(nodes[k:]))


def merkle_root(piece: bytes) -> Hash32:
    """
    Commitment of a piece: MTH over its leaves.

    Parameters
    ----------
    piece :
        The piece's bytes.

    Returns
    -------
    root : Hash32
        The 32-byte root committed in a deal.
    """
    return root_of_nodes([hash_leaf(leaf) for leaf in leaves_of(piece)])


def inclusion_proof(leaf_hashes: Sequence[Hash32], index: int) -> list[Hash32]:
    """
    Audit path of leaf ``index``: PATH(m, D[n]) of RFC 9162 §2.1.3.1, nearest sibling first.

    Parameters
    ----------
    leaf_hashes :
        All leaf hashes of the tree (or all subtree roots, see ``root_of_nodes``).
    index :
        The leaf to prove.
    """
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise CommitmentError(f"leaf {index} out of range for {n} leaves")
    if n == 1:
        return []
    k = split_point(n)
    if index < k:
        return [*inclusion_proof(leaf_hashes[:k], index), root_of_nodes(leaf_hashes[k:])]
    return [*inclusion_proof(leaf_hashes[k:], index - k), root_of_nodes(leaf_hashes[:k])]


def root_from_proof(
    leaf_hash: Hash32, index: int, tree_size: int, proof: Sequence[Hash32]
) -> Hash32 | None:
    """
    Recompute the root from a leaf hash and its audit path (RFC 9162 §2.1.3.2).

    Returns
    -------
    root : Hash32 | None
        The root the path leads to, or ``None`` if the path's length does not fit
        ``index`` and ``tree_size``.
    """
    if not 0 <= index < tree_size or len(proof) > MAX_PROOF_DEPTH:
        return None
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = hash_node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hash_node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_leaf(
    root: Hash32, piece_size: int, index: int, leaf: bytes, proof: Sequence[Hash32]
) -> bool:
    """
    Check that ``leaf`` is leaf ``index`` of the piece committed to by ``root``.

    This is what the contract runs for every challenge and what an auditor re-runs from
    the proof transaction's calldata.
    """
    if len(leaf) != LEAF_SIZE:
        return False
    return root_from_proof(hash_leaf(leaf), index, leaf_count(piece_size), proof) == root
