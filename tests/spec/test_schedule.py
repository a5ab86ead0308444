"""contracts/spec/schedule.py: the period clock's blocks, windows and seeds."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.spec.schedule import Schedule

schedules = st.builds(Schedule, genesis=st.integers(0, 10**9), length=st.integers(2, 256))


@settings(max_examples=100, deadline=None)
@given(schedule=schedules, offset=st.integers(0, 10**7))
def test_every_block_has_one_period(schedule, offset):
    block = schedule.genesis + offset
    period = schedule.period_of(block)
    assert schedule.period_start(period) <= block < schedule.period_start(period + 1)


@settings(max_examples=100, deadline=None)
@given(schedule=schedules, period=st.integers(0, 10**6))
def test_windows(schedule, period):
    seed = schedule.seed_block(period)
    window = schedule.window(period)
    assert seed == schedule.period_start(period)
    # The proof comes after the seed block and within the period.
    assert window.start == seed + 1 and window.stop == schedule.period_start(period + 1)
    assert len(window) == schedule.length - 1
    assert all(schedule.period_of(b) == period for b in (window.start, window.stop - 1))
    # The report window is exactly the next period.
    report = schedule.report_window(period)
    assert report.start == window.stop
    assert {schedule.period_of(b) for b in (report.start, report.stop - 1)} == {period + 1}
    # The seed is still readable by BLOCKHASH from every block of the window.
    assert window.stop - 1 - seed <= 256


def test_before_genesis():
    with pytest.raises(ValueError):
        Schedule(genesis=10, length=4).period_of(9)
