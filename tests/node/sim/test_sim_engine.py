"""node/sim/engine.py: time order, ties, no scheduling in the past."""

from __future__ import annotations

import pytest

from node.errors import LocalError
from node.sim.engine import EventQueue


def test_events_run_in_time_order_and_ties_in_scheduling_order() -> None:
    q = EventQueue(10.0)
    seen: list[tuple[float, str]] = []
    q.at(12.0, lambda: seen.append((q.now, "b")))
    q.at(11.0, lambda: seen.append((q.now, "a")))
    q.at(12.0, lambda: seen.append((q.now, "c")))
    q.after(5.0, lambda: seen.append((q.now, "late")))
    q.run_until(12.5)
    assert seen == [(11.0, "a"), (12.0, "b"), (12.0, "c")]
    assert q.now == 12.5 and len(q) == 1
    q.run_until(20)
    assert seen[-1] == (15.0, "late") and q.processed == 4


def test_callbacks_may_schedule_more() -> None:
    q = EventQueue()
    ticks: list[float] = []

    def tick() -> None:
        ticks.append(q.now)
        if len(ticks) < 3:
            q.after(1.0, tick)

    q.at(0.0, tick)
    q.run_until(100)
    assert ticks == [0.0, 1.0, 2.0]


def test_past_is_refused() -> None:
    q = EventQueue(5.0)
    with pytest.raises(LocalError):
        q.at(4.0, lambda: None)
