"""market.health: deal conditions and file health from chain facts."""

from __future__ import annotations

import dataclasses

from contracts.chain import DealInfo
from market.health import DealCondition, FileHealth, classify, file_health, proven_in

DEAL = DealInfo(
    deal_id=1,
    client="0xc",
    provider="0xp",
    piece_root=b"\0" * 32,
    piece_size=1024,
    price_per_period=1,
    collateral=1,
    slashed=0,
    start=10,
    end=30,
    stop=30,
    epoch=0,
    slot=0,
    settled_through=0,
    loss_end=0,
    closed=False,
)


def deal(**kw: object) -> DealInfo:
    return dataclasses.replace(DEAL, **kw)  # type: ignore[arg-type]


def test_conditions() -> None:
    proven = set(range(10, 20))
    assert classify(DEAL, 20, proven, 2, 3) is DealCondition.ACTIVE
    assert classify(DEAL, 27, set(range(10, 27)), 2, 3) is DealCondition.EXPIRING
    assert classify(DEAL, 25, set(range(10, 22)), 2, 3) is DealCondition.UNPROVEN
    assert classify(deal(stop=21), 20, proven, 2, 3) is DealCondition.TERMINATED
    assert classify(deal(stop=21, loss_end=21), 20, proven, 2, 3) is DealCondition.LOST
    assert classify(DEAL, 30, proven, 2, 3) is DealCondition.ENDED
    assert classify(deal(closed=True), 20, proven, 2, 3) is DealCondition.CLOSED


def test_a_new_deal_is_not_unproven_before_its_first_periods_are_due() -> None:
    assert classify(DEAL, 10, set(), 2, 3) is DealCondition.ACTIVE
    assert classify(DEAL, 11, set(), 2, 3) is DealCondition.ACTIVE  # only period 10 is due
    assert classify(DEAL, 12, set(), 2, 3) is DealCondition.UNPROVEN
    assert classify(DEAL, 12, {11}, 2, 3) is DealCondition.ACTIVE


def test_proven_periods_count_only_the_deal_s_own() -> None:
    assert proven_in(DEAL, 20, {5, 10, 11, 12, 40}) == 3
    assert proven_in(deal(stop=12), 20, {10, 11, 12, 13}) == 2


def test_file_health() -> None:
    a, e, u = DealCondition.ACTIVE, DealCondition.EXPIRING, DealCondition.UNPROVEN
    h = file_health(2, 4, {0: [a], 1: [a], 2: [a, u], 3: [a]})
    assert (h.state, h.alive, h.missing, h.expiring) == (FileHealth.HEALTHY, 4, (), ())
    h = file_health(2, 4, {0: [a], 1: [u], 2: [e], 3: [DealCondition.TERMINATED]})
    assert (h.state, h.alive, h.missing, h.expiring) == (FileHealth.DEGRADED, 2, (1, 3), (2,))
    h = file_health(3, 4, {0: [a]})
    assert (h.state, h.alive, h.missing) == (FileHealth.LOST, 1, (1, 2, 3))
