"""Fixtures of the market tests: one real network per xdist worker (market.localnet)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from market.localnet import Network

PRICES = ["0.001", "0.002", "0.003", "0.004", "0.005"]
"""Five provers with distinct prices, so that the ranking (and who gets a share) is known."""


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root: Path = tmp_path_factory.mktemp("cluster")
    net = Network(root)
    try:
        net.start_provers(PRICES)
        yield net
    finally:
        net.close()
