"""Fixtures of the auditor tests: a real anvil with a deployed market, a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from market.auditor import db
from tests.auditor.helpers import Chain, start_chain


@pytest.fixture
def chain() -> Iterator[Chain]:
    c = start_chain()
    try:
        yield c
    finally:
        c.node.stop()


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return db.open_engine(f"sqlite:///{tmp_path / 'auditor.db'}")
