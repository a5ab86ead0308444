"""The metadata database: migrations, the deal lifecycle table, idempotent event records."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from prover.db import SCHEMA_VERSION, Database
from prover.errors import DatabaseError, IllegalTransition
from prover.lifecycle import DEAL_TRANSITIONS, DealState, PieceState, check_transition

BIG = 2**256 - 1


def open_db(tmp_path: Path) -> Database:
    return Database.open(f"sqlite:///{tmp_path / 'prover.db'}")


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


def test_migrations_run_once_and_record_the_version(tmp_path: Path) -> None:
    db = open_db(tmp_path)
    assert db.version() == SCHEMA_VERSION
    db.close()
    again = open_db(tmp_path)
    assert again.migrate() == SCHEMA_VERSION
    again.close()
    # A database from a newer prover is refused, not damaged.
    with again.engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": SCHEMA_VERSION + 1})
    with pytest.raises(DatabaseError, match="newer"):
        open_db(tmp_path)
    with pytest.raises(DatabaseError, match="schema"):
        Database.open(f"sqlite:///{tmp_path / 'prover.db'}", migrate=False)


def test_an_empty_database_is_not_read_without_migrating(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="schema 0"):
        Database.open(f"sqlite:///{tmp_path / 'empty.db'}", migrate=False)


def test_uint256_amounts_round_trip(tmp_path: Path) -> None:
    db = open_db(tmp_path)
    local = proposal(db)
    row = db.deal(local)
    assert row is not None
    assert (row.nonce, row.collateral, row.price_per_period) == (BIG, BIG, 10**30)
    assert row.state == DealState.RECEIVING
    assert db.deal_by_nonce(row.client, BIG) is not None
    assert db.deal_by_nonce(row.client, BIG - 1) is None


def test_a_nonce_is_admitted_once(tmp_path: Path) -> None:
    db = open_db(tmp_path)
    proposal(db, nonce=7)
    with pytest.raises(DatabaseError, match="seen before"):
        proposal(db, nonce=7)


def test_deals_move_only_along_the_lifecycle_table(tmp_path: Path) -> None:
    db = open_db(tmp_path)
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


def test_settlements_are_recorded_once(tmp_path: Path) -> None:
    db = open_db(tmp_path)
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


def test_proofs_pieces_manifests_and_meta(tmp_path: Path) -> None:
    db = open_db(tmp_path)
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
