# pragma version ~=0.4.3
"""
@title Bit counting
@license MIT
@notice Population count of 256-bit words and of bit ranges in them, for the bitmaps of
        proven and reported periods (proving.vy).
@dev SWAR population count (H. S. Warren, "Hacker's Delight", 2nd ed., §5-1).
"""

WORD_BITS: constant(uint256) = 256

M1: constant(uint256) = max_value(uint256) // 3  # 0x5555...
M2: constant(uint256) = max_value(uint256) // 5  # 0x3333...
M4: constant(uint256) = max_value(uint256) // 17  # 0x0f0f...
M8: constant(uint256) = max_value(uint256) // 257  # 0x00ff00ff...
H16: constant(uint256) = max_value(uint256) // 65535  # 0x00010001...


@internal
@pure
def _popcount(x: uint256) -> uint256:
    """
    @notice Number of set bits of `x`.
    """
    y: uint256 = x - ((x >> 1) & M1)
    y = (y & M2) + ((y >> 2) & M2)
    y = (y + (y >> 4)) & M4
    y = (y + (y >> 8)) & M8
    # Every 16-bit lane now holds at most 16; the product sums all lanes into the top one
    # (at most 256, which fits its 16 bits).
    return unsafe_mul(y, H16) >> 240


@internal
@pure
def _count_range(word: uint256, lo: uint256, hi: uint256) -> uint256:
    """
    @notice Set bits of `word` at positions [lo, hi), 0 <= lo < hi <= 256.
    """
    mask: uint256 = max_value(uint256)
    if hi - lo < WORD_BITS:
        mask = (1 << (hi - lo)) - 1
    return self._popcount((word >> lo) & mask)
