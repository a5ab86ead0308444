"""Fixtures of the prover tests: one anvil per xdist worker with half-second blocks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.devnet import Anvil, start_anvil

BLOCK_TIME = 0.5
"""Seconds per block: daemons see real time pass, and a period of 8 blocks takes 4 s."""


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    node = start_anvil(block_time=BLOCK_TIME)
    try:
        yield node
    finally:
        node.stop()
