# pragma version ~=0.4.3
"""
@title Test harness for the market's pure modules
@notice Exposes merkle.vy, challenge.vy, sumtree.vy and bits.vy so that the shared JSON
        vectors (tests/vectors) are checked on chain function by function. Test-only:
        compiled by tests/contracts/conftest.py as if it sat in contracts/src.
"""
import bits
import challenge
import merkle
import sumtree
import types

initializes: sumtree

MAX_SLOTS: constant(uint256) = 256

trees: uint256


@external
@pure
def hash_leaf(leaf: Bytes[types.LEAF_SIZE]) -> bytes32:
    """
    @notice merkle._hash_leaf.
    """
    return merkle._hash_leaf(leaf)


@external
@pure
def root_from_proof(
    leaf_hash: bytes32, index: uint256, tree_size: uint256, path: DynArray[bytes32, 40]
) -> (bytes32, bool):
    """
    @notice merkle._root_from_proof.
    """
    return merkle._root_from_proof(leaf_hash, index, tree_size, path)


@external
@pure
def verify_leaf(
    root: bytes32,
    piece_size: uint256,
    index: uint256,
    leaf: Bytes[types.LEAF_SIZE],
    path: DynArray[bytes32, 40],
) -> bool:
    """
    @notice merkle._verify_leaf.
    """
    return merkle._verify_leaf(root, piece_size, index, leaf, path)


@external
@pure
def challenge_index(
    seed: bytes32, provider: address, period: uint256, i: uint256, leaf_range: uint256
) -> uint256:
    """
    @notice challenge._challenge_index.
    """
    return challenge._challenge_index(seed, provider, period, i, leaf_range)


@external
@pure
def popcount(x: uint256) -> uint256:
    """
    @notice bits._popcount.
    """
    return bits._popcount(x)


@external
@pure
def count_range(word: uint256, lo: uint256, hi: uint256) -> uint256:
    """
    @notice bits._count_range.
    """
    return bits._count_range(word, lo, hi)


@external
def locate(
    slot_leaves: DynArray[uint256, MAX_SLOTS],
    cleared: DynArray[uint256, MAX_SLOTS],
    index: uint256,
) -> (uint256, uint256):
    """
    @notice Build a fresh sum tree of `slot_leaves`, set the `cleared` slots to zero, then
            locate `index`. Meant for eth_call.
    """
    epoch: uint256 = self.trees
    self.trees = epoch + 1
    for leaves: uint256 in slot_leaves:
        sumtree._append(self, epoch, leaves)
    for s: uint256 in cleared:
        sumtree._clear(self, epoch, s, slot_leaves[s])
    slot: uint256 = 0
    leaf: uint256 = 0
    leaves: uint256 = 0
    slot, leaf, leaves = sumtree._find(self, epoch, index, sumtree._height(len(slot_leaves)))
    assert leaves == slot_leaves[slot], "harness: wrong slot size"
    return slot, leaf
