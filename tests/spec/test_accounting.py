"""contracts/spec/accounting.py: the vectors, and conservation over random deal histories."""

import dataclasses
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.spec import accounting as a


def replay(scenario, miss_slash_bps, bounty_bps):
    book = a.DealBook(**scenario["deal"])
    stop = a.deal_stop(book.end, scenario["epoch_end"], scenario["loss_end"])
    for step in scenario["steps"]:
        got = a.settle_deal(
            book,
            stop=stop,
            current=step["current"],
            proven=scenario["proven"],
            reported=scenario["reported"],
            miss_slash_bps=miss_slash_bps,
            bounty_bps=bounty_bps,
        )
        yield step, got
        if got:
            book = a.apply_settlement(book, got)


def test_vectors(vectors):
    data = vectors("accounting")
    for scenario in data["scenarios"]:
        for step, got in replay(scenario, data["miss_slash_bps"], data["bounty_bps"]):
            expected = step["settlement"]
            assert (dataclasses.asdict(got) if got else None) == expected, scenario["name"]


def test_per_miss_amounts():
    assert a.slash_per_miss(1000, 1000) == 100
    assert a.bounty_per_miss(1000, 1000, 5000) == 50
    assert a.bounty_per_miss(999, 1000, 5000) == 49  # floor of the floor: 99 // 2
    assert a.fault_bounty([50, 49, 1], stake=60) == 60
    with pytest.raises(a.AccountingError):
        a.slash_per_miss(1, 10_001)
    with pytest.raises(a.AccountingError):
        a.bounty_per_miss(1, 1, -1)
    assert a.take_from_stake(10, 25) == (10, 0)
    with pytest.raises(a.AccountingError):
        a.take_from_stake(10, -1)


def test_deal_stop():
    assert a.deal_stop(20) == 20
    assert a.deal_stop(20, epoch_end=15) == 15
    assert a.deal_stop(20, loss_end=17) == 17
    assert a.deal_stop(20, epoch_end=25, loss_end=22) == 20


histories = st.fixed_dictionaries(
    {
        "start": st.integers(1, 600),
        "periods": st.integers(1, 700),
        "price": st.integers(0, 10**20),
        "collateral": st.integers(0, 10**22),
        "slash": st.integers(0, 10_000),
        "bounty": st.integers(0, 10_000),
        "miss_rate": st.floats(0, 1),
        "early": st.sampled_from([None, "epoch", "loss"]),
        "early_at": st.integers(0, 1500),
        "seed": st.integers(0, 2**32),
        "steps": st.lists(st.integers(1, 400), min_size=1, max_size=8),
    }
)


@settings(max_examples=150, deadline=None)
@given(hist=histories)
def test_money_is_conserved_and_no_period_is_paid_twice(hist):
    rng = random.Random(hist["seed"])
    start, end = hist["start"], hist["start"] + hist["periods"]
    book = a.DealBook(
        price_per_period=hist["price"], collateral=hist["collateral"], start=start, end=end
    )
    proven = {p for p in range(start, end) if rng.random() >= hist["miss_rate"]}
    reported = {p for p in range(start, end) if p not in proven and rng.random() < 0.5}
    early_at = hist["early_at"]
    stop = a.deal_stop(
        end,
        epoch_end=early_at if hist["early"] == "epoch" else 0,
        loss_end=early_at if hist["early"] == "loss" else 0,
    )
    current, steps = 0, []
    # Settle at random times, then every 500 periods until the deal closes.
    while not book.closed:
        current += rng.choice(hist["steps"]) if len(steps) < 8 else 500
        step = a.settle_deal(
            book,
            stop=stop,
            current=current,
            proven=proven,
            reported=reported,
            miss_slash_bps=hist["slash"],
            bounty_bps=hist["bounty"],
        )
        if step is None:
            assert current < 2 * end + 2000  # progress is always possible eventually
            continue
        assert step.proven + step.missed == step.to_period - step.from_period
        assert step.to_period <= max(step.from_period, a.closed_before(current))
        steps.append(step)
        book = a.apply_settlement(book, step)

    def total(field):
        return sum(getattr(s, field) for s in steps)

    # The escrow is paid out exactly once: to the provider or back to the client.
    assert total("provider_paid") + total("client_refund") == hist["price"] * hist["periods"]
    # Settled ranges are contiguous, disjoint, and end at the deal's stop.
    ranges = [(s.from_period, s.to_period) for s in steps if s.to_period > s.from_period]
    flat = [p for lo, hi in ranges for p in range(lo, hi)]
    assert len(flat) == len(set(flat)) == max(0, min(stop, end) - start)
    assert all(lo == prev_hi for (_, prev_hi), (lo, _) in itertools.pairwise(ranges))
    # The whole lock is released; what was slashed never exceeds the collateral.
    assert total("released") == hist["collateral"]
    assert total("slashed") == book.slashed <= hist["collateral"]
    assert total("compensation_due") <= total("slashed")
    if stop < end:
        assert book.slashed == hist["collateral"]
