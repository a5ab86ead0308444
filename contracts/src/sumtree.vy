# pragma version ~=0.4.3
"""
@title Slot sum tree
@license MIT
@notice A sum tree per (provider, epoch) over the leaf counts of the provider's slots, in
        slot order. It maps a global challenge index to (slot, leaf) in O(log4 n) storage
        reads, so that the proof transaction never iterates over deals.
@dev Reference reading: contracts/spec/challenge.py `locate`. The tree is 4-ary and packed:
     every storage word holds four 64-bit lanes. A word at level 0 holds the leaf counts of
     four consecutive slots; a word at level L > 0 holds, in lane c, the sum of the word
     below it at level L - 1 with index 4 * i + c. A walk from the root therefore reads one
     word per level, half the levels of a binary (Fenwick) tree, and the last word it reads
     also gives the found slot's leaf count, which the Merkle verification needs. The tree
     grows a root level when the slot count passes a power of four. A slot is only ever
     appended at the end or set to zero, never moved.
"""

LANE_BITS: constant(uint256) = 64
LANE_MASK: constant(uint256) = 2**64 - 1
LANES: constant(uint256) = 4
# 4**32 = 2**64 slots: more than any data set will hold.
MAX_LEVELS: constant(uint256) = 32

# provider -> epoch -> (level << 128 | index) -> four packed 64-bit sums
words: HashMap[address, HashMap[uint256, HashMap[uint256, uint256]]]
# provider -> epoch -> number of slots appended
sizes: HashMap[address, HashMap[uint256, uint256]]


@internal
@pure
def _key(level: uint256, index: uint256) -> uint256:
    """
    @notice Storage key of the word `index` of `level`.
    """
    return (level << 128) | index


@internal
@pure
def _height(n: uint256) -> uint256:
    """
    @notice Levels of a tree of `n` slots: the smallest h >= 1 with 4**h >= n.
    """
    h: uint256 = 1
    capacity: uint256 = LANES
    for _: uint256 in range(MAX_LEVELS):
        if capacity >= n:
            break
        h += 1
        capacity = capacity * LANES
    return h


@internal
@pure
def _lane(word: uint256, lane: uint256) -> uint256:
    """
    @notice The 64-bit sum in `lane` of a packed word.
    """
    return (word >> (LANE_BITS * lane)) & LANE_MASK


@internal
def _append(provider: address, epoch: uint256, leaves: uint256) -> uint256:
    """
    @notice Append a slot of `leaves` leaves; returns its 0-based slot index.
    """
    slot: uint256 = self.sizes[provider][epoch]
    height: uint256 = self._height(slot + 1)
    if slot > 0 and height > self._height(slot):
        # The old tree is full: it becomes child 0 of a new root.
        old_root: uint256 = self.words[provider][epoch][self._key(height - 2, 0)]
        total: uint256 = 0
        for c: uint256 in range(LANES):
            total += self._lane(old_root, c)
        self.words[provider][epoch][self._key(height - 1, 0)] = total
    for level: uint256 in range(MAX_LEVELS):
        if level == height:
            break
        key: uint256 = self._key(level, slot >> (2 * (level + 1)))
        lane: uint256 = (slot >> (2 * level)) & (LANES - 1)
        word: uint256 = self.words[provider][epoch][key]
        assert self._lane(word, lane) + leaves <= LANE_MASK, "sumtree: too many leaves"
        self.words[provider][epoch][key] = word + (leaves << (LANE_BITS * lane))
    self.sizes[provider][epoch] = slot + 1
    return slot


@internal
def _clear(provider: address, epoch: uint256, slot: uint256, leaves: uint256):
    """
    @notice Set slot `slot`, which holds `leaves` leaves, to zero.
    """
    height: uint256 = self._height(self.sizes[provider][epoch])
    for level: uint256 in range(MAX_LEVELS):
        if level == height:
            break
        key: uint256 = self._key(level, slot >> (2 * (level + 1)))
        lane: uint256 = (slot >> (2 * level)) & (LANES - 1)
        self.words[provider][epoch][key] -= leaves << (LANE_BITS * lane)


@internal
@view
def _find(
    provider: address, epoch: uint256, index: uint256, height: uint256
) -> (uint256, uint256, uint256):
    """
    @notice The slot holding global leaf `index`, the leaf's index inside that slot, and the
            slot's leaf count. `height` is `_height` of the slot count (computed once per
            proof). Zero-sized slots are skipped, as in `locate`.
    """
    node: uint256 = 0
    rest: uint256 = index
    leaves: uint256 = 0
    for i: uint256 in range(MAX_LEVELS):
        if i == height:
            break
        word: uint256 = self.words[provider][epoch][self._key(height - 1 - i, node)]
        found: bool = False
        for c: uint256 in range(LANES):
            leaves = self._lane(word, c)
            if rest < leaves:
                node = node * LANES + c
                found = True
                break
            rest -= leaves
        assert found, "sumtree: index beyond the last slot"
    return node, rest, leaves
