"""contracts/spec/challenge.py against the vectors, plus properties of the draw and walk."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.spec import challenge as ch


def h(x: str) -> bytes:
    return bytes.fromhex(x.removeprefix("0x"))


def test_indices(vectors):
    data = vectors("challenge")
    for case in data["indices"]:
        index = ch.challenge_index(
            h(case["seed"]), case["provider"], case["period"], case["i"], case["leaf_range"]
        )
        assert index == case["index"]
        assert 0 <= index < case["leaf_range"]
    seq = data["sequence"]
    assert (
        ch.challenge_indices(h(seq["seed"]), seq["provider"], seq["period"], seq["leaf_range"])
        == seq["indices"]
    )
    assert len(seq["indices"]) == ch.DEFAULT_CHALLENGES


def test_locate(vectors):
    data = vectors("challenge")
    for case in data["locate"]:
        assert ch.locate(case["index"], case["slot_leaves"]) == (case["slot"], case["leaf"])
    for case in data["locate_after_clearing"]:
        live = [0 if i in case["cleared"] else s for i, s in enumerate(case["slot_leaves"])]
        assert ch.locate(case["index"], live) == (case["slot"], case["leaf"])


@settings(max_examples=100, deadline=None)
@given(slots=st.lists(st.integers(0, 20), min_size=1, max_size=40), data=st.data())
def test_locate_is_the_expanded_list(slots, data):
    expanded = [(s, j) for s, n in enumerate(slots) for j in range(n)]
    if not expanded:
        with pytest.raises(ch.ChallengeError):
            ch.locate(0, slots)
        return
    index = data.draw(st.integers(0, len(expanded) - 1))
    assert ch.locate(index, slots) == expanded[index]
    with pytest.raises(ch.ChallengeError):
        ch.locate(len(expanded), slots)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    period=st.integers(0, 2**64),
    leaf_range=st.integers(1, 2**64),
)
def test_index_in_range(seed, period, leaf_range):
    provider = "0x" + "12" * 20
    for i in range(3):
        assert 0 <= ch.challenge_index(seed, provider, period, i, leaf_range) < leaf_range


def test_detection_formula():
    """1 - (1 - f)^(c * periods): 46 challenges catch a 1% loss within 10 periods at 99%."""
    assert ch.challenges_needed(0.01, 10, 0.99) == ch.DEFAULT_CHALLENGES == 46
    assert ch.detection_probability(0.01, 46, 10) >= 0.99
    assert ch.detection_probability(0.01, 45, 10) < 0.99
    assert math.isclose(ch.detection_probability(0.5, 1, 1), 0.5)


def test_errors():
    with pytest.raises(ch.ChallengeError):
        ch.challenge_index(b"\x00" * 32, "0x" + "00" * 20, 0, 0, 0)
    with pytest.raises(ch.ChallengeError):
        ch.challenge_index(b"\x00" * 31, "0x" + "00" * 20, 0, 0, 5)
