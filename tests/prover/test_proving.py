"""The proving round state machine (sans-I/O): its table, its policy and its invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.spec.schedule import Schedule
from prover.errors import IllegalTransition
from prover.proving import (
    TRANSITIONS,
    AttemptFailed,
    FoundProven,
    PiecesLost,
    ProofConfirmed,
    ProofSent,
    ProvingRound,
    ProvingStarted,
    RoundState,
    Step,
    WindowClosed,
    WindowOpened,
    next_step,
)

SCHEDULE = Schedule(genesis=100, length=10)
P = 3  # blocks 130..139: seed 130, window 131..139


def fresh() -> ProvingRound:
    return ProvingRound.for_period(SCHEDULE, P)


def test_the_round_covers_the_schedules_window() -> None:
    r = fresh()
    assert (r.seed_block, r.deadline_block) == (130, 139)
    assert r.window_blocks == len(SCHEDULE.window(P)) == 9


def test_the_happy_path_records_tx_block_and_margin() -> None:
    r = fresh()
    for ev in (WindowOpened(P, 130), ProvingStarted(P), ProofSent(P, 0.12)):
        r.apply(ev)
    assert r.state is RoundState.SUBMITTED and r.attempts == 1 and r.build_seconds == 0.12
    r.apply(ProofConfirmed(P, "0xabc", 131))
    assert r.state is RoundState.CONFIRMED and r.done
    assert (r.tx_hash, r.block, r.margin_blocks) == ("0xabc", 131, 8)


def test_failed_attempts_are_retried_and_counted() -> None:
    r = fresh()
    r.apply(WindowOpened(P, 130))
    for _ in range(3):
        r.apply(ProvingStarted(P))
        r.apply(AttemptFailed(P, "rpc down"))
    assert r.state is RoundState.WINDOW_OPEN and r.attempts == 3 and r.reason == "rpc down"
    r.apply(ProvingStarted(P))
    r.apply(ProofSent(P, 0.1))
    r.apply(AttemptFailed(P, "stuck"))
    assert r.state is RoundState.WINDOW_OPEN


def test_a_lost_piece_misses_the_round() -> None:
    r = fresh()
    for ev in (WindowOpened(P, 130), ProvingStarted(P), PiecesLost(P, (b"r",), "rotten")):
        r.apply(ev)
    assert r.state is RoundState.MISSED and r.reason == "rotten"


def test_a_closed_window_misses_a_round_that_was_not_sent() -> None:
    for events in ([], [WindowOpened(P, 130)], [WindowOpened(P, 130), ProvingStarted(P)]):
        r = fresh()
        for ev in events:
            r.apply(ev)
        r.apply(WindowClosed(P))
        assert r.state is RoundState.MISSED
        assert r.reason is not None


def test_a_sent_proof_outlives_the_window_until_its_receipt() -> None:
    r = fresh()
    for ev in (WindowOpened(P, 130), ProvingStarted(P), ProofSent(P, 0.1), WindowClosed(P)):
        r.apply(ev)
    assert r.state is RoundState.SUBMITTED
    r.apply(ProofConfirmed(P, "0x1", 139))
    assert r.state is RoundState.CONFIRMED and r.margin_blocks == 0


@pytest.mark.parametrize("state", list(RoundState))
def test_the_chain_saying_proven_confirms_from_any_state(state: RoundState) -> None:
    r = fresh()
    r.state = state
    r.apply(FoundProven(P, "0xdef", 133))
    assert r.state is RoundState.CONFIRMED and r.block == 133


def test_edges_outside_the_table_raise() -> None:
    r = fresh()
    with pytest.raises(IllegalTransition):
        r.apply(ProofSent(P, 0.1))
    r.apply(WindowOpened(P, 130))
    with pytest.raises(IllegalTransition):
        r.apply(ProofConfirmed(P, "0x", 131))
    with pytest.raises(IllegalTransition):
        r.apply(WindowOpened(P + 1, 140))
    assert r.state is RoundState.WINDOW_OPEN


def test_next_step_follows_the_schedule() -> None:
    r = fresh()
    assert next_step(r, 129) is Step.WAIT  # the seed block is not mined
    assert next_step(r, 130) is Step.OPEN  # seed sealed: a proof sent now lands in 131+
    r.apply(WindowOpened(P, 130))
    assert next_step(r, 131) is Step.PROVE
    r.apply(ProvingStarted(P))
    assert next_step(r, 131) is Step.WAIT
    assert next_step(r, 139) is Step.CLOSE  # sent now, it would land in period P + 1
    r.apply(ProofSent(P, 0.1))
    assert next_step(r, 139) is Step.WAIT  # a sent proof may still make block 139
    r.apply(ProofConfirmed(P, "0x", 134))
    assert next_step(r, 140) is Step.DONE


def test_a_round_found_after_its_window_closes_at_once() -> None:
    r = fresh()
    assert next_step(r, 145) is Step.CLOSE


EVENTS = st.sampled_from(
    [
        WindowOpened(P, 130),
        ProvingStarted(P),
        ProofSent(P, 0.1),
        ProofConfirmed(P, "0x1", 132),
        FoundProven(P),
        AttemptFailed(P, "x"),
        PiecesLost(P, (b"r",), "lost"),
        WindowClosed(P),
    ]
)


@given(st.lists(EVENTS, max_size=30))
def test_any_event_sequence_moves_only_along_the_table(events: list[object]) -> None:
    r = fresh()
    for ev in events:
        before = r.state
        edge = (before, type(ev))
        if edge in TRANSITIONS:
            r.apply(ev)  # type: ignore[arg-type]
            assert r.state is TRANSITIONS[edge]
            if isinstance(ev, ProofConfirmed):
                assert r.margin_blocks == 7
        else:
            with pytest.raises(IllegalTransition):
                r.apply(ev)  # type: ignore[arg-type]
            assert r.state is before
        if before is RoundState.CONFIRMED:
            assert r.state is RoundState.CONFIRMED  # nothing undoes a proof
