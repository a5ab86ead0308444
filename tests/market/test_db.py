"""market.db: files, shares, placements along the state table, put jobs (SQLite)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from market.db import Database, metadata
from market.errors import ConfigError
from market.placement import IllegalTransition, State, Trigger

ROOTS = [(bytes([i]) * 32, 1000) for i in range(3)]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """SQLite in the test's directory, or the database at ``$DEPOT_TEST_DATABASE_URL`` (emptied
    first: point it at a scratch database), to run the same tests against PostgreSQL."""
    url = os.environ.get("DEPOT_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'm.db'}"
    database = Database(url)
    metadata.drop_all(database.engine)
    database.create()
    yield database
    database.close()


def add_file(db: Database, file_id: str = "ab" * 32) -> str:
    db.add_file(
        file_id=file_id,
        name="f.bin",
        size=1234,
        mode="copies",
        k=1,
        n=3,
        periods=10,
        max_price=2**200,
        manifest=b"manifest",
        roots=ROOTS,
    )
    return file_id


def add_placement(db: Database, file_id: str, share: int = 0, nonce: int = 2**255 + 1):
    return db.add_placement(
        file_id=file_id,
        share_index=share,
        purpose="put",
        provider="0x" + "11" * 20,
        node_id=b"\x22" * 32,
        nonce=nonce,
        price_per_period=3 * 10**30,
        collateral=10**40,
        periods=10,
        expiry_block=500,
        signed_block=300,
    )


def test_files_and_shares(db: Database) -> None:
    file_id = add_file(db)
    f = db.file(file_id)
    assert f is not None
    assert (f.name, f.size, f.state, f.published, f.max_price) == (
        "f.bin",
        1234,
        "placing",
        False,
        2**200,
    )
    assert [(s.index, s.root) for s in db.shares(file_id)] == [
        (i, r) for i, (r, _) in enumerate(ROOTS)
    ]
    db.set_file_state(file_id, "stored")
    db.set_published(file_id)
    f = db.file(file_id)
    assert f is not None and (f.state, f.published) == ("stored", True)
    assert db.file("cd" * 32) is None
    assert [x.id for x in db.files()] == [file_id]


def test_placements_keep_256_bit_values_and_follow_the_table(db: Database) -> None:
    file_id = add_file(db)
    p = add_placement(db, file_id)
    assert p.state is State.SIGNED
    assert (p.nonce, p.price_per_period, p.collateral) == (2**255 + 1, 3 * 10**30, 10**40)
    assert p.escrow == 3 * 10**31
    p = db.transition(p.id, Trigger.ACCEPTED)
    p = db.transition(p.id, Trigger.UPLOADED)
    assert [x.id for x in db.in_flight(file_id)] == [p.id]
    p = db.transition(
        p.id, Trigger.ACTIVATED, deal_id=7, tx_hash="0x" + "ab" * 32, start_period=3, end_period=13
    )
    assert (p.state, p.deal_id, p.start_period, p.end_period) == (State.ACTIVE, 7, 3, 13)
    with pytest.raises(IllegalTransition):
        db.transition(p.id, Trigger.CANCELLED)
    assert db.placement(p.id).state is State.ACTIVE  # the refused step changed nothing
    assert db.live_nonces() == []


def test_live_nonces(db: Database) -> None:
    file_id = add_file(db)
    a = add_placement(db, file_id, 0, 1)
    b = add_placement(db, file_id, 1, 2)
    db.transition(b.id, Trigger.FAILED, reason="refused")
    c = add_placement(db, file_id, 2, 3)
    db.transition(c.id, Trigger.FAILED)
    db.transition(c.id, Trigger.CANCELLED)
    assert {p.id for p in db.live_nonces()} == {a.id, b.id}
    assert db.placement(b.id).reason == "refused"
    assert [p.id for p in db.placements(file_id, [State.CANCELLED])] == [c.id]


def test_put_jobs(db: Database) -> None:
    job = db.add_put(
        source="/x",
        source_size=5,
        source_mtime_ns=2**62,
        redundancy="copies:3",
        periods=10,
        staging="/s",
    )
    assert db.find_put("/x", 5, 2**62, "copies:3", 10) == job
    assert db.find_put("/x", 5, 2**62, "ec:2-of-4", 10) is None
    assert db.find_put("/x", 6, 2**62, "copies:3", 10) is None
    db.update_put(job.id, file_id="ab" * 32, state="placing")
    assert db.put_of_file("ab" * 32) is not None
    db.update_put(job.id, state="done")
    assert db.find_put("/x", 5, 2**62, "copies:3", 10) is None


def test_meta(db: Database) -> None:
    assert db.get_meta("k") is None
    db.set_meta("k", "1")
    db.set_meta("k", "2")
    assert db.get_meta("k") == "2"


def test_missing_database_and_bad_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="market init"):
        Database(f"sqlite:///{tmp_path / 'none.db'}").check()
    with pytest.raises(ConfigError):
        Database("nosuchdialect://x")
