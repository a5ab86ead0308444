"""
Proving-period schedule: the reference specification.

Time on the ledger is counted in blocks. Period ``p`` covers the blocks
``[genesis + p * length, genesis + (p + 1) * length)``:

- The set of pieces challenged in period ``p`` is fixed when the period starts: a deal
  accepted during period ``p`` is first challenged in period ``p + 1``, and a removal
  scheduled during ``p`` takes effect in ``p + 1``.
- The seed of period ``p`` is the hash of its first block, ``seed_block(p)``: it is unknown
  until that block exists, after the set was fixed.
- The proof for ``p`` is accepted in blocks ``seed_block(p) + 1`` to the period's last
  block: the proving window.
- A missed proof for ``p`` can be reported, for a bounty, during period ``p + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """The ledger's clock, read from the deployed contract."""

    genesis: int
    """Block number at which period 0 starts."""
    length: int
    """Blocks per period; at most 256 so that the seed block's hash stays readable
    (the EVM's BLOCKHASH opcode reaches back 256 blocks)."""

    def period_of(self, block: int) -> int:
        """The period a block belongs to."""
        if block < self.genesis:
            raise ValueError(f"block {block} is before genesis {self.genesis}")
        return (block - self.genesis) // self.length

    def period_start(self, period: int) -> int:
        """First block of ``period``."""
        return self.genesis + period * self.length

    def seed_block(self, period: int) -> int:
        """The block whose hash seeds the period's challenges."""
        return self.period_start(period)

    def window(self, period: int) -> range:
        """Blocks in which the proof for ``period`` is accepted."""
        return range(self.seed_block(period) + 1, self.period_start(period + 1))

    def report_window(self, period: int) -> range:
        """Blocks in which a missed proof for ``period`` can be reported."""
        return range(self.period_start(period + 1), self.period_start(period + 2))
