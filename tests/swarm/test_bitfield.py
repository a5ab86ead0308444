"""BEP 3 have-bitfields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.swarm.bitfield import Bitfield
from node.swarm.errors import SwarmProtocolError


def test_layout_is_bep3_high_bit_first() -> None:
    field = Bitfield(10)
    field.add(0)
    field.add(9)
    assert field.to_bytes() == bytes([0x80, 0x40])
    assert 0 in field and 9 in field and 1 not in field and 10 not in field and -1 not in field
    assert len(field) == 2 and list(field) == [0, 9]


def test_full_sets_every_index_and_no_spare_bit() -> None:
    field = Bitfield.full(10)
    assert field.complete() and field.to_bytes() == bytes([0xFF, 0xC0])
    assert Bitfield(10, field.to_bytes()) == field


def test_spare_bits_and_wrong_length_are_protocol_errors() -> None:
    with pytest.raises(SwarmProtocolError):
        Bitfield(10, bytes([0xFF, 0xFF]))
    with pytest.raises(SwarmProtocolError):
        Bitfield(10, bytes([0xFF]))


def test_add_out_of_range_raises_and_discard_is_idempotent() -> None:
    field = Bitfield(3)
    with pytest.raises(IndexError):
        field.add(3)
    field.add(1)
    field.discard(1)
    field.discard(1)
    assert len(field) == 0


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
def test_roundtrip_matches_a_set(case: tuple[int, set[int]]) -> None:
    size, members = case
    field = Bitfield(size)
    for i in members:
        field.add(i)
    again = Bitfield(size, field.to_bytes())
    assert set(again) == members and len(again) == len(members)
    assert again.complete() == (len(members) == size)
