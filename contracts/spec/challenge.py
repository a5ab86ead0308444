"""
Proof-of-storage challenges: the reference specification.

Every proving period a provider proves possession of ``count`` leaves drawn at random over
all of its live data, in one transaction (PDP-style; FilOzone/pdp ``Proofs.sol``). The
draw is a pure function of the period's seed, which nobody knows when the set of
challenged pieces is fixed (docs/protocol.md, "Proving period"):

    index_i = uint256(keccak256(abi.encode(seed, provider, period, i))) mod leaf_range

``leaf_range`` is the provider's number of live leaves in that period. The modulo bias is
below ``leaf_range / 2**256``, under ``2**-200`` for any piece set smaller than 2**56 leaves.

A global index is mapped to (slot, leaf) by walking the provider's slots in order, each
slot holding one deal's piece and a size of zero once removed: challenges land on pieces
in proportion to their size. The contract does the same walk with a Fenwick tree
(``contracts/src/sumtree.vy``); ``locate`` is the plain reading it must agree with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from eth_hash.auto import keccak

DEFAULT_CHALLENGES: Final = 46
"""Challenges per period: the smallest count with ``detection_probability(0.01, c, 10)``
at least 0.99 (see ``challenges_needed``)."""


class ChallengeError(ValueError):
    """A challenge asked of an empty range or an index outside every slot."""


def challenge_index(seed: bytes, provider: str, period: int, i: int, leaf_range: int) -> int:
    """
    The ``i``-th challenged leaf of ``provider`` in ``period``, over ``leaf_range`` leaves.

    Parameters
    ----------
    seed :
        The period's 32-byte seed (the hash of the period's first block).
    provider :
        The provider's address, ``0x``-prefixed hex.
    period :
        The proving period.
    i :
        Challenge number, ``0 <= i < count``.
    leaf_range :
        The provider's live leaves in that period.
    """
    if leaf_range <= 0:
        raise ChallengeError("no live leaves to challenge")
    if len(seed) != 32:
        raise ChallengeError(f"seed must be 32 bytes, not {len(seed)}")
    encoded = (
        seed
        + bytes.fromhex(provider.removeprefix("0x").rjust(64, "0"))
        + period.to_bytes(32, "big")
        + i.to_bytes(32, "big")
    )
    return int.from_bytes(keccak(encoded), "big") % leaf_range


def challenge_indices(
    seed: bytes, provider: str, period: int, leaf_range: int, count: int = DEFAULT_CHALLENGES
) -> list[int]:
    """All ``count`` challenged leaves of one period, in the order the proof must answer them."""
    return [challenge_index(seed, provider, period, i, leaf_range) for i in range(count)]


def locate(index: int, slot_leaves: Sequence[int]) -> tuple[int, int]:
    """
    Map a global leaf index to ``(slot, leaf within the slot's piece)``.

    Parameters
    ----------
    index :
        A global index, ``0 <= index < sum(slot_leaves)``.
    slot_leaves :
        Leaves of each slot in slot order; removed slots count zero.
    """
    for slot, size in enumerate(slot_leaves):
        if index < size:
            return slot, index
        index -= size
    raise ChallengeError("index beyond the last live leaf")


def detection_probability(lost_fraction: float, challenges: int, periods: int) -> float:
    """
    Probability that a provider missing ``lost_fraction`` of its leaves fails at least one
    challenge within ``periods`` periods: ``1 - (1 - f) ** (c * periods)``. Challenges are
    drawn with replacement, so this is exact for independent draws.
    """
    return 1.0 - (1.0 - lost_fraction) ** (challenges * periods)


def challenges_needed(lost_fraction: float, periods: int, confidence: float) -> int:
    """Smallest challenge count that detects ``lost_fraction`` within ``periods`` periods."""
    return math.ceil(math.log(1.0 - confidence) / (periods * math.log(1.0 - lost_fraction)))
