"""Fixtures of the auditor tests: a real anvil with a deployed market, a fresh database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

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
    """SQLite in the test's directory; ``DEPOT_TEST_DATABASE_URL`` (e.g. a PostgreSQL URL)
    runs the same tests on another database, emptied first (run those with ``-n 0``)."""
    url = os.environ.get("DEPOT_TEST_DATABASE_URL")
    if url:
        scratch = create_engine(url)
        db.metadata.drop_all(scratch)
        scratch.dispose()
        return db.open_engine(url)
    return db.open_engine(f"sqlite:///{tmp_path / 'auditor.db'}")
