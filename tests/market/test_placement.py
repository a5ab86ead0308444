"""market.placement: the placement state table."""

from __future__ import annotations

import pytest

from market.placement import (
    DEAD,
    IN_FLIGHT,
    LIVE_NONCE,
    TRANSITIONS,
    IllegalTransition,
    State,
    Trigger,
    advance,
)


def test_the_happy_path() -> None:
    state = State.SIGNED
    for trigger in (Trigger.ACCEPTED, Trigger.UPLOADED, Trigger.ACTIVATED, Trigger.ENDED):
        state = advance(state, trigger)
    assert state is State.ENDED


@pytest.mark.parametrize("start", sorted(IN_FLIGHT))
def test_any_pending_step_may_fail_and_then_settle(start: State) -> None:
    failed = advance(start, Trigger.FAILED)
    assert failed is State.FAILED
    assert advance(failed, Trigger.CANCELLED) is State.CANCELLED
    assert advance(failed, Trigger.EXPIRED) is State.EXPIRED
    assert advance(failed, Trigger.ACTIVATED) is State.ACTIVE  # accepted after all


def test_no_edge_leaves_a_final_state() -> None:
    for state in (*DEAD, State.ENDED, State.LOST):
        for trigger in Trigger:
            with pytest.raises(IllegalTransition):
                advance(state, trigger)


def test_illegal_steps() -> None:
    with pytest.raises(IllegalTransition):
        advance(State.SIGNED, Trigger.UPLOADED)  # no upload before acceptance
    with pytest.raises(IllegalTransition):
        advance(State.ACTIVE, Trigger.CANCELLED)  # an active deal's nonce is spent


def test_live_nonce_states_are_exactly_those_that_can_still_activate() -> None:
    can_activate = {s for (s, t) in TRANSITIONS if t is Trigger.ACTIVATED}
    assert can_activate == set(LIVE_NONCE)
