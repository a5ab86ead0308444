"""Redundancy modes and their names in a manifest."""

import pytest

from node.pieces.errors import InvalidArgument
from node.pieces.modes import Copies, ErasureCode, mode_from


def test_defaults():
    assert (Copies().k, Copies().n, Copies().streams) == (1, 3, 3)
    assert (ErasureCode().k, ErasureCode().n, ErasureCode().streams) == (10, 30, 1)


def test_mode_from_names():
    assert mode_from("copies", 1, 4) == Copies(4)
    assert mode_from("ec", 29, 80) == ErasureCode(29, 80)
    for name, k, n in [("copies", 2, 4), ("raid", 1, 1), ("ec", 5, 4), ("ec", 0, 4)]:
        with pytest.raises(InvalidArgument):
            mode_from(name, k, n)


@pytest.mark.parametrize("bad", [lambda: Copies(0), lambda: Copies(257), lambda: ErasureCode(3, 2)])
def test_bad_modes(bad):
    with pytest.raises(InvalidArgument):
        bad()
