# pragma version ~=0.4.3
"""
@title Period clock
@license MIT
@notice Time on the ledger, in proving periods of `period_blocks` blocks counted from the
        deployment block (contracts/spec/schedule.py is the reference).
@dev Period p covers blocks [genesis + p * period_blocks, genesis + (p + 1) * period_blocks).
     Its seed is the hash of its first block; the proof is accepted in the blocks after it
     and until the period ends; a missed proof is reported during period p + 1.
"""

# BLOCKHASH reaches back 256 blocks: every block of the proving window must still see the seed.
MAX_PERIOD_BLOCKS: constant(uint256) = 256
# The seed block itself cannot read its own hash, so a period needs at least one more block.
MIN_PERIOD_BLOCKS: constant(uint256) = 2

genesis: public(immutable(uint256))
period_blocks: public(immutable(uint256))


@deploy
def __init__(_period_blocks: uint256):
    """
    @param _period_blocks Blocks per proving period, in [2, 256].
    """
    assert _period_blocks >= MIN_PERIOD_BLOCKS, "clock: period too short"
    assert _period_blocks <= MAX_PERIOD_BLOCKS, "clock: period longer than 256 blocks"
    genesis = block.number
    period_blocks = _period_blocks


@internal
@view
def _current_period() -> uint256:
    """
    @notice The period of the current block.
    """
    return (block.number - genesis) // period_blocks


@internal
@view
def _period_start(period: uint256) -> uint256:
    """
    @notice First block of `period`, which is also its seed block.
    """
    return genesis + period * period_blocks


@external
@view
def current_period() -> uint256:
    """
    @notice The proving period of the current block.
    @return The period number, 0 at deployment.
    """
    return self._current_period()


@external
@view
def period_start(period: uint256) -> uint256:
    """
    @notice First block (and seed block) of a period.
    @param period A period number.
    @return The block number.
    """
    return self._period_start(period)
