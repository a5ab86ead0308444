"""
One whole network per test module (market.localnet): anvil, four ``prover run`` daemons,
two ``auditor run`` daemons and a market client, all real processes on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from market.localnet import PARAMS, Auditor, Client, Network

PROVERS = 4
LONGER_PERIODS = replace(PARAMS, period_blocks=16)
"""8-second periods: a missed period may be reported only during the next one, and the
auditors (2 confirmations, 1 s polls) must see the miss and land a report within it even on
a busy CI machine, where 4-second windows are tight."""
COLLATERAL = "20000"
"""Tokens per GiB: a 2 MiB piece locks ~39 tokens, so that a missed period's bounty is worth
many times the gas of reporting it (the auditors skip unprofitable reports: at 1,000 tokens
per GiB a busy machine's base fee made them so)."""
SCRUB_OFF = {"storage.scrub_rate": 0}
"""Existence checks only: lost bytes are found by a challenge, as at the scale of real disks
(with re-hashing on, a daemon finds wiped bytes of a small piece within seconds and declares
the loss itself, before any miss; tests/prover/test_losses.py)."""


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root: Path = tmp_path_factory.mktemp("network")
    with Network(root, LONGER_PERIODS) as net:
        net.start_provers(["0.001"] * PROVERS, collateral=COLLATERAL, config=SCRUB_OFF)
        yield net


@pytest.fixture(scope="module")
def auditors(network: Network) -> list[Auditor]:
    return [network.start_auditor(), network.start_auditor()]


@pytest.fixture(scope="module")
def client(network: Network) -> Client:
    c = network.client()
    network.wait_asks(c, PROVERS)
    return c
