# pragma version ~=0.4.3
"""
@title Slot sum tree
@license MIT
@notice A Fenwick tree (binary indexed tree; P. M. Fenwick, "A new data structure for
        cumulative frequency tables", 1994) per (provider, epoch) over the leaf counts of the
        provider's slots, in slot order. It maps a global challenge index to (slot, leaf) in
        O(log n) storage reads, so that the proof transaction never iterates over deals.
@dev Reference reading: contracts/spec/challenge.py `locate`. Slots are 0-based for callers;
     tree nodes are 1-based: node j holds the sum of slots (j - lowbit(j), j]. A slot is
     only ever appended at the end or set to zero, never moved.
"""

# Slot counts stay far below 2**64, so every walk is at most 64 steps.
MAX_HEIGHT: constant(uint256) = 64

# provider -> epoch -> node (1-based) -> sum of the slots the node covers
nodes: HashMap[address, HashMap[uint256, HashMap[uint256, uint256]]]
# provider -> epoch -> number of slots appended
sizes: HashMap[address, HashMap[uint256, uint256]]


@internal
@pure
def _lowbit(j: uint256) -> uint256:
    """
    @notice The lowest set bit of `j` (j & -j in two's complement).
    """
    return j & unsafe_add(~j, 1)


@internal
def _append(provider: address, epoch: uint256, leaves: uint256) -> uint256:
    """
    @notice Append a slot of `leaves` leaves; returns its 0-based slot index.
    @dev The new node n covers (n - lowbit(n), n]: its value plus the nodes of its children,
         which are n - 1, then repeatedly minus their own low bit, while above n - lowbit(n).
    """
    n: uint256 = self.sizes[provider][epoch] + 1
    total: uint256 = leaves
    start: uint256 = n - self._lowbit(n)
    j: uint256 = n - 1
    for _: uint256 in range(MAX_HEIGHT):
        if j <= start:
            break
        total += self.nodes[provider][epoch][j]
        j -= self._lowbit(j)
    self.nodes[provider][epoch][n] = total
    self.sizes[provider][epoch] = n
    return n - 1


@internal
def _clear(provider: address, epoch: uint256, slot: uint256, leaves: uint256):
    """
    @notice Set slot `slot`, which holds `leaves` leaves, to zero.
    """
    n: uint256 = self.sizes[provider][epoch]
    j: uint256 = slot + 1
    for _: uint256 in range(MAX_HEIGHT):
        if j > n:
            break
        self.nodes[provider][epoch][j] -= leaves
        j += self._lowbit(j)


@internal
@view
def _top(provider: address, epoch: uint256) -> uint256:
    """
    @notice The largest power of two not above the slot count (0 for an empty tree): the
            first step of every `_find` walk, computed once per proof.
    """
    n: uint256 = self.sizes[provider][epoch]
    if n == 0:
        return 0
    step: uint256 = 1
    for _: uint256 in range(MAX_HEIGHT):
        if step << 1 > n:
            break
        step = step << 1
    return step


@internal
@view
def _find(provider: address, epoch: uint256, index: uint256, top: uint256) -> (uint256, uint256):
    """
    @notice The slot holding global leaf `index` and the leaf's index inside that slot.
    @dev Descends from `top` (see `_top`): the largest prefix of slots whose sum is at most
         `index` ends just before the answer. Zero-sized slots are skipped, as in `locate`.
         The caller guarantees index < the sum of all slots.
    """
    n: uint256 = self.sizes[provider][epoch]
    pos: uint256 = 0
    rest: uint256 = index
    step: uint256 = top
    for _: uint256 in range(MAX_HEIGHT):
        if step == 0:
            break
        nxt: uint256 = pos + step
        if nxt <= n:
            v: uint256 = self.nodes[provider][epoch][nxt]
            if v <= rest:
                pos = nxt
                rest -= v
        step = step >> 1
    assert pos < n, "sumtree: index beyond the last slot"
    return pos, rest
