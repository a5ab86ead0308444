"""The metadata database: migrations, the deal lifecycle table, idempotent event records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from prover.db import SCHEMA_VERSION, Database
from prover.errors import DatabaseError, IllegalTransition
from prover.lifecycle import DEAL_TRANSITIONS, DealState, PieceState, check_transition
from tests.prover.helpers import TEST_DATABASE_ENV

BIG = 2**256 - 1


def database_url(tmp_path: Path) -> str:
    """SQLite in the test's directory, or the (emptied) database at $DEPOT_TEST_DATABASE_URL."""
    url = os.environ.get(TEST_DATABASE_ENV)
    if not url:
        return f"sqlite:///{tmp_path / 'prover.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def url(tmp_path: Path) -> str:
    return database_url(tmp_path)


def proposal(db: Database, nonce: int = BIG, root: bytes = b"\x01" * 32) -> int:
    return db.add_proposal(
        client="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        nonce=nonce,
        piece_root=root,
        piece_size=1 << 20,
        price_per_period=10**30,
        periods=5,
        collateral=BIG,
        expiry_block=99,
        signature=b"\x02" * 65,
        peer_id=b"\x03" * 32,
    )


def test_migrations_run_once_and_record_the_version(url: str) -> None:
    db = Database.open(url)
    assert db.version() == SCHEMA_VERSION
    db.close()
    again = Database.open(url)
    assert again.migrate() == SCHEMA_VERSION
    again.close()
    # A database from a newer prover is refused, not damaged.
    with again.engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": SCHEMA_VERSION + 1})
    with pytest.raises(DatabaseError, match="newer"):
        Database.open(url)
    with pytest.raises(DatabaseError, match="schema"):
        Database.open(url, migrate=False)


def test_an_empty_database_is_not_read_without_migrating(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="schema 0"):
        Database.open(f"sqlite:///{tmp_path / 'empty.db'}", migrate=False)


def test_uint256_amounts_round_trip(url: str) -> None:
    db = Database.open(url)
    local = proposal(db)
    row = db.deal(local)
    assert row is not None
    assert (row.nonce, row.collateral, row.price_per_period) == (BIG, BIG, 10**30)
    assert row.state == DealState.RECEIVING
    assert db.deal_by_nonce(row.client, BIG) is not None
    assert db.deal_by_nonce(row.client, BIG - 1) is None


def test_a_nonce_is_admitted_once(url: str) -> None:
    db = Database.open(url)
    proposal(db, nonce=7)
    with pytest.raises(DatabaseError, match="seen before"):
        proposal(db, nonce=7)


def test_deals_move_only_along_the_lifecycle_table(url: str) -> None:
    db = Database.open(url)
    local = proposal(db)
    with pytest.raises(IllegalTransition):
        db.set_deal_state(local, DealState.ACTIVE)
    db.set_deal_state(local, DealState.ACTIVATING)
    row = db.set_deal_state(local, DealState.ACTIVE, deal_id=4, start_period=3, end_period=8)
    assert (row.state, row.deal_id) == (DealState.ACTIVE, 4)
    db.set_deal_state(local, DealState.ACTIVE)  # staying put is always allowed
    assert db.deal_by_chain_id(4) is not None
    db.set_deal_state(local, DealState.LOST)
    db.set_deal_state(local, DealState.CLOSED)
    db.set_deal_state(local, DealState.DELETED)
    with pytest.raises(IllegalTransition):
        db.set_deal_state(local, DealState.ACTIVE)
    assert db.deal_counts() == {"deleted": 1}
    with pytest.raises(DatabaseError):
        db.update_deal(local, state="active")


def test_the_table_has_no_way_back_to_receiving() -> None:
    for old, targets in DEAL_TRANSITIONS.items():
        assert DealState.RECEIVING not in targets
        for new in DealState:
            if new in targets:
                check_transition(old, new)
            else:
                with pytest.raises(IllegalTransition):
                    check_transition(old, new)


def test_settlements_are_recorded_once(url: str) -> None:
    db = Database.open(url)
    fields = {
        "deal_id": 1,
        "block": 10,
        "from_period": 2,
        "to_period": 4,
        "proven": 2,
        "missed": 0,
        "provider_paid": BIG,
        "slashed": 0,
        "final": False,
    }
    assert db.add_settlement(tx_hash="0xaa", log_index=3, **fields)
    assert not db.add_settlement(tx_hash="0xaa", log_index=3, **fields)
    assert db.add_settlement(tx_hash="0xaa", log_index=4, **fields)
    assert [s.provider_paid for s in db.settlements(1)] == [BIG, BIG]


def test_proofs_pieces_manifests_and_meta(url: str) -> None:
    db = Database.open(url)
    db.put_proof(5, state="window_open", deadline_block=59, window_blocks=9, attempts=0)
    db.put_proof(5, state="confirmed", tx_hash="0x1", block=52, margin_blocks=7, attempts=1)
    row = db.proof(5)
    assert row is not None and (row.state, row.margin_blocks, row.deadline_block) == (
        "confirmed",
        7,
        59,
    )
    assert db.proof_counts() == {"confirmed": 1}
    root = b"\x09" * 32
    db.put_piece(root, 1234)
    db.set_piece_state(root, PieceState.LOST, "rotten")
    piece = db.piece(root)
    assert piece is not None and (piece.state, piece.reason) == ("lost", "rotten")
    db.put_piece(root, 1234)
    assert [p.state for p in db.pieces([PieceState.STORED])] == ["stored"]
    db.put_manifest("ab" * 32, "0xowner", b"manifest")
    db.put_manifest("ab" * 32, "0xowner", b"manifest")
    assert db.manifest("ab" * 32) == b"manifest" and db.manifest_count() == 1
    assert db.get_meta("cursor") is None
    db.set_meta("cursor", "12")
    db.set_meta("cursor", "13")
    assert db.get_meta("cursor") == "13"


def test_a_bad_url_is_a_database_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError):
        Database.open("nosuchdialect://x")
    with pytest.raises(DatabaseError):
        Database.open(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
