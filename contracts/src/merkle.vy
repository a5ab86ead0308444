# pragma version ~=0.4.3
"""
@title RFC 9162 Merkle inclusion verification
@license MIT
@notice Verifies that a 1 KiB leaf belongs to a piece committed to by a SHA-256 Merkle root,
        exactly as contracts/spec/commitment.py (root_from_proof, verify_leaf).
@dev Leaves are hashed as SHA-256(0x00 || leaf) and inner nodes as SHA-256(0x01 || l || r)
     (RFC 9162 §2.1.1); the audit path is walked as in RFC 9162 §2.1.3.2. SHA-256 runs on
     the precompile at address 0x02.
"""
import types

LEAF_PREFIX: constant(Bytes[1]) = b"\x00"
NODE_PREFIX: constant(Bytes[1]) = b"\x01"
# A leaf index below 2**64 has at most 64 bits to shift out.
MAX_INDEX_BITS: constant(uint256) = 64


@internal
@pure
def _leaf_count(piece_size: uint256) -> uint256:
    """
    @notice Leaves of a piece: ceil(piece_size / LEAF_SIZE).
    """
    return (piece_size + types.LEAF_SIZE - 1) // types.LEAF_SIZE


@internal
@pure
def _hash_leaf(leaf: Bytes[types.LEAF_SIZE]) -> bytes32:
    """
    @notice SHA-256(0x00 || leaf); the caller has checked that the leaf is whole.
    """
    return sha256(concat(LEAF_PREFIX, leaf))


@internal
@pure
def _root_from_proof(
    leaf_hash: bytes32,
    index: uint256,
    tree_size: uint256,
    path: DynArray[bytes32, types.MAX_PROOF_DEPTH],
) -> (bytes32, bool):
    """
    @notice Recompute the root from a leaf hash and its audit path (RFC 9162 §2.1.3.2).
    @return (root, ok); ok is False when the path's length does not fit index and size.
    """
    if index >= tree_size:
        return empty(bytes32), False
    fn: uint256 = index
    sn: uint256 = tree_size - 1
    r: bytes32 = leaf_hash
    for p: bytes32 in path:
        if sn == 0:
            return empty(bytes32), False
        if fn & 1 == 1 or fn == sn:
            r = sha256(concat(NODE_PREFIX, p, r))
            # Skip the levels where this node is a lone right-most child (no sibling).
            for _: uint256 in range(MAX_INDEX_BITS):
                if fn & 1 == 1 or fn == 0:
                    break
                fn = fn >> 1
                sn = sn >> 1
        else:
            r = sha256(concat(NODE_PREFIX, r, p))
        fn = fn >> 1
        sn = sn >> 1
    return r, sn == 0


@internal
@pure
def _verify(
    root: bytes32,
    leaf_count: uint256,
    index: uint256,
    leaf: Bytes[types.LEAF_SIZE],
    path: DynArray[bytes32, types.MAX_PROOF_DEPTH],
) -> bool:
    """
    @notice True when `leaf` is leaf `index` of the `leaf_count`-leaf tree with `root`.
    """
    if len(leaf) != types.LEAF_SIZE:
        return False
    computed: bytes32 = empty(bytes32)
    ok: bool = False
    computed, ok = self._root_from_proof(self._hash_leaf(leaf), index, leaf_count, path)
    return ok and computed == root


@internal
@pure
def _verify_leaf(
    root: bytes32,
    piece_size: uint256,
    index: uint256,
    leaf: Bytes[types.LEAF_SIZE],
    path: DynArray[bytes32, types.MAX_PROOF_DEPTH],
) -> bool:
    """
    @notice True when `leaf` is leaf `index` of the piece of `piece_size` bytes with `root`.
    """
    return self._verify(root, self._leaf_count(piece_size), index, leaf, path)
