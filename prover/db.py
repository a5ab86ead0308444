"""
The prover's metadata: SQLAlchemy Core over SQLite (default) or PostgreSQL.

Migrations are a small numbered runner rather than Alembic: ``MIGRATIONS`` is a list of
functions, migration ``n`` brings the schema from version ``n - 1`` to ``n`` inside one
transaction, and the ``schema_version`` table records where a database stands. A database
newer than this code is refused. The SQL is portable (no SQLite-only types or statements in
the schema): token amounts exceed 64 bits, so they are stored as decimal strings
(``BigUint``) and summed in Python.

SQLite runs in WAL mode with ``synchronous=FULL``: a committed row survives a kill -9 or a
power cut, and the CLI can read while the daemon writes.

Everything the daemon knows but cannot re-derive from the chain or the disk is here: the
proposals it admitted (with the client's signature), the proving history with margins, the
chain cursor. Everything else (deals, settlements) is re-read from the chain's events and
merged idempotently, so a lost database costs history, not pieces.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from prover.errors import DatabaseError
from prover.lifecycle import DealState, PieceState, check_transition


class BigUint(TypeDecorator[int]):
    """A uint256 as its decimal string (portable; SQL integers stop at 64 bits)."""

    impl = String(78)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Any) -> str | None:
        return None if value is None else str(int(value))

    def process_result_value(self, value: str | None, dialect: Any) -> int | None:
        return None if value is None else int(value)


metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

deals = Table(
    "deals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deal_id", BigInteger, unique=True, nullable=True),
    Column("client", String(42), nullable=False),
    Column("nonce", BigUint, nullable=False),
    Column("piece_root", String(64), nullable=False, index=True),
    Column("piece_size", BigInteger, nullable=False),
    Column("price_per_period", BigUint, nullable=False),
    Column("periods", BigInteger, nullable=False),
    Column("collateral", BigUint, nullable=False),
    Column("expiry_block", BigInteger, nullable=False),
    Column("signature", String(130), nullable=False),
    Column("peer_id", String(64), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("reason", Text, nullable=True),
    Column("start_period", BigInteger, nullable=True),
    Column("end_period", BigInteger, nullable=True),
    Column("stop_period", BigInteger, nullable=True),
    Column("epoch", BigInteger, nullable=True),
    Column("slot", BigInteger, nullable=True),
    Column("accept_tx", String(66), nullable=True),
    Column("accept_block", BigInteger, nullable=True),
    Column("retired_from", BigInteger, nullable=True),
    Column("settled_through", BigInteger, nullable=False, default=0),
    Column("paid", BigUint, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("client", "nonce", name="uq_deals_client_nonce"),
)

pieces = Table(
    "pieces",
    metadata,
    Column("root", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("stored_at", Float, nullable=False),
    Column("checked_at", Float, nullable=True),
)

proofs = Table(
    "proofs",
    metadata,
    Column("period", BigInteger, primary_key=True),
    Column("state", String(16), nullable=False),
    Column("live_leaves", BigInteger, nullable=False, default=0),
    Column("seed", String(64), nullable=True),
    Column("tx_hash", String(66), nullable=True),
    Column("block", BigInteger, nullable=True),
    Column("deadline_block", BigInteger, nullable=False),
    Column("window_blocks", Integer, nullable=False),
    Column("margin_blocks", Integer, nullable=True),
    Column("build_seconds", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("reason", Text, nullable=True),
    Column("updated_at", Float, nullable=False),
)

settlements = Table(
    "settlements",
    metadata,
    Column("tx_hash", String(66), primary_key=True),
    Column("log_index", Integer, primary_key=True),
    Column("deal_id", BigInteger, nullable=False, index=True),
    Column("block", BigInteger, nullable=False),
    Column("from_period", BigInteger, nullable=False),
    Column("to_period", BigInteger, nullable=False),
    Column("proven", Integer, nullable=False),
    Column("missed", Integer, nullable=False),
    Column("provider_paid", BigUint, nullable=False),
    Column("slashed", BigUint, nullable=False),
    Column("final", Boolean, nullable=False),
)

manifests = Table(
    "manifests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(42), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("stored_at", Float, nullable=False),
)


def _migration_1(conn: Connection) -> None:
    """The first schema."""
    metadata.create_all(
        conn, tables=[meta, deals, pieces, proofs, settlements, manifests], checkfirst=False
    )


MIGRATIONS: Final[Sequence[Callable[[Connection], None]]] = (_migration_1,)
"""Migration ``i + 1`` is ``MIGRATIONS[i]``; append, never edit a released one."""
SCHEMA_VERSION: Final = len(MIGRATIONS)


@dataclass(frozen=True)
class Row:
    """A read-only row as attributes (``row.state``), detached from the connection."""

    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


class Database:
    """
    The daemon's tables behind small, intention-named methods. Every method is one
    transaction; ``DatabaseError`` wraps any failure (full disk, locked file, bad URL).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Database:
        """Connect to ``url`` and bring the schema up to date (``migrate=False``: check only)."""
        try:
            engine = create_engine(url, future=True)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise DatabaseError(f"cannot open database {url}: {exc}") from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        db = cls(engine)
        if migrate:
            db.migrate()
        else:
            db.check_version()
        return db

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ migrations

    def version(self) -> int:
        """The schema version of the database (0: empty)."""
        with self._tx() as conn:
            if not self.engine.dialect.has_table(conn, "schema_version"):
                return 0
            found = conn.execute(select(schema_version.c.version)).scalar()
            return int(found or 0)

    def migrate(self) -> int:
        """Apply every migration the database lacks, each in its own transaction."""
        with self._tx() as conn:
            if not self.engine.dialect.has_table(conn, "schema_version"):
                schema_version.create(conn)
                conn.execute(insert(schema_version).values(version=0))
        current = self.version()
        if current > SCHEMA_VERSION:
            raise DatabaseError(
                f"the database has schema {current}, newer than this prover ({SCHEMA_VERSION})"
            )
        for number in range(current + 1, SCHEMA_VERSION + 1):
            with self._tx() as conn:
                MIGRATIONS[number - 1](conn)
                conn.execute(update(schema_version).values(version=number))
        return SCHEMA_VERSION

    def check_version(self) -> None:
        current = self.version()
        if current != SCHEMA_VERSION:
            raise DatabaseError(
                f"database schema {current}, expected {SCHEMA_VERSION} (run the daemon once)"
            )

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        with self._tx() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
            return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as conn:
            _set_meta(conn, key, value)

    # ------------------------------------------------------------------ deals

    def add_proposal(
        self,
        *,
        client: str,
        nonce: int,
        piece_root: bytes,
        piece_size: int,
        price_per_period: int,
        periods: int,
        collateral: int,
        expiry_block: int,
        signature: bytes,
        peer_id: bytes,
    ) -> int:
        """Record an admitted proposal (state RECEIVING); returns its local id."""
        now = time.time()
        try:
            with self._tx() as conn:
                result = conn.execute(
                    insert(deals).values(
                        client=client,
                        nonce=nonce,
                        piece_root=piece_root.hex(),
                        piece_size=piece_size,
                        price_per_period=price_per_period,
                        periods=periods,
                        collateral=collateral,
                        expiry_block=expiry_block,
                        signature=signature.hex(),
                        peer_id=peer_id.hex(),
                        state=DealState.RECEIVING.value,
                        settled_through=0,
                        paid=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            raise DatabaseError(f"proposal nonce {nonce} of {client} was seen before") from None
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def set_deal_state(self, local_id: int, new: DealState, **fields: Any) -> Row:
        """Move a deal along the lifecycle table (``IllegalTransition`` otherwise)."""
        with self._tx() as conn:
            row = conn.execute(select(deals).where(deals.c.id == local_id)).mappings().first()
            if row is None:
                raise DatabaseError(f"no deal with local id {local_id}")
            old = DealState(row["state"])
            if old != new:
                check_transition(old, new)
            values = {**fields, "state": new.value, "updated_at": time.time()}
            conn.execute(update(deals).where(deals.c.id == local_id).values(**values))
            return Row({**row, **values})

    def update_deal(self, local_id: int, **fields: Any) -> None:
        """Change fields of a deal other than its state."""
        if "state" in fields:
            raise DatabaseError("use set_deal_state to change a deal's state")
        with self._tx() as conn:
            conn.execute(
                update(deals).where(deals.c.id == local_id).values(**fields, updated_at=time.time())
            )

    def adopt_deal(self, **fields: Any) -> int:
        """Insert a deal learnt from the chain that we had no row for (state given)."""
        now = time.time()
        with self._tx() as conn:
            result = conn.execute(
                insert(deals).values(
                    **fields, settled_through=0, paid=0, created_at=now, updated_at=now
                )
            )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def deal(self, local_id: int) -> Row | None:
        return self._one(select(deals).where(deals.c.id == local_id))

    def deal_by_chain_id(self, deal_id: int) -> Row | None:
        return self._one(select(deals).where(deals.c.deal_id == deal_id))

    def deal_by_nonce(self, client: str, nonce: int) -> Row | None:
        return self._one(select(deals).where(deals.c.client == client, deals.c.nonce == nonce))

    def deals(
        self, states: Iterable[DealState] | None = None, limit: int | None = None
    ) -> list[Row]:
        query = select(deals).order_by(deals.c.id.desc())
        if states is not None:
            query = query.where(deals.c.state.in_([s.value for s in states]))
        if limit is not None:
            query = query.limit(limit)
        return self._all(query)

    def deal_counts(self) -> dict[str, int]:
        with self._tx() as conn:
            rows = conn.execute(select(deals.c.state, func.count()).group_by(deals.c.state))
            return {str(state): int(n) for state, n in rows}

    def deals_of_root(self, root: bytes) -> list[Row]:
        return self._all(select(deals).where(deals.c.piece_root == root.hex()))

    # ------------------------------------------------------------------ pieces

    def put_piece(self, root: bytes, size: int, state: PieceState = PieceState.STORED) -> None:
        """Record a piece (insert or overwrite its state)."""
        now = time.time()
        with self._tx() as conn:
            found = conn.execute(select(pieces.c.root).where(pieces.c.root == root.hex())).first()
            values = {"size": size, "state": state.value, "reason": None, "stored_at": now}
            if found is None:
                conn.execute(insert(pieces).values(root=root.hex(), **values))
            else:
                conn.execute(update(pieces).where(pieces.c.root == root.hex()).values(**values))

    def set_piece_state(self, root: bytes, state: PieceState, reason: str | None = None) -> None:
        with self._tx() as conn:
            conn.execute(
                update(pieces)
                .where(pieces.c.root == root.hex())
                .values(state=state.value, reason=reason)
            )

    def touch_piece(self, root: bytes) -> None:
        """Note that the piece was checked intact now."""
        with self._tx() as conn:
            conn.execute(
                update(pieces).where(pieces.c.root == root.hex()).values(checked_at=time.time())
            )

    def piece(self, root: bytes) -> Row | None:
        return self._one(select(pieces).where(pieces.c.root == root.hex()))

    def pieces(self, states: Iterable[PieceState] | None = None) -> list[Row]:
        query = select(pieces).order_by(pieces.c.stored_at)
        if states is not None:
            query = query.where(pieces.c.state.in_([s.value for s in states]))
        return self._all(query)

    # ------------------------------------------------------------------ proofs

    def put_proof(self, period: int, **fields: Any) -> None:
        """Insert or update the proving record of ``period``."""
        with self._tx() as conn:
            found = conn.execute(select(proofs.c.period).where(proofs.c.period == period)).first()
            values = {**fields, "updated_at": time.time()}
            if found is None:
                conn.execute(insert(proofs).values(period=period, **values))
            else:
                conn.execute(update(proofs).where(proofs.c.period == period).values(**values))

    def proof(self, period: int) -> Row | None:
        return self._one(select(proofs).where(proofs.c.period == period))

    def proofs(self, limit: int = 100) -> list[Row]:
        return self._all(select(proofs).order_by(proofs.c.period.desc()).limit(limit))

    def proof_counts(self) -> dict[str, int]:
        with self._tx() as conn:
            rows = conn.execute(select(proofs.c.state, func.count()).group_by(proofs.c.state))
            return {str(state): int(n) for state, n in rows}

    # ------------------------------------------------------------------ settlements

    def add_settlement(self, *, tx_hash: str, log_index: int, **fields: Any) -> bool:
        """Record a ``DealSettled`` event once; returns False if it was already known."""
        key = (settlements.c.tx_hash == tx_hash) & (settlements.c.log_index == log_index)
        with self._tx() as conn:
            # Checked rather than caught: inside a batch a failed insert would abort the
            # whole transaction on PostgreSQL. The daemon is the only writer.
            if conn.execute(select(settlements.c.block).where(key)).first() is not None:
                return False
            conn.execute(insert(settlements).values(tx_hash=tx_hash, log_index=log_index, **fields))
        return True

    def settlements(self, deal_id: int | None = None) -> list[Row]:
        query = select(settlements).order_by(settlements.c.block)
        if deal_id is not None:
            query = query.where(settlements.c.deal_id == deal_id)
        return self._all(query)

    # ------------------------------------------------------------------ manifests

    def put_manifest(self, manifest_id: str, owner: str, data: bytes) -> None:
        with self._tx() as conn:
            found = conn.execute(
                select(manifests.c.id).where(manifests.c.id == manifest_id)
            ).first()
            if found is None:
                conn.execute(
                    insert(manifests).values(
                        id=manifest_id, owner=owner, data=data, stored_at=time.time()
                    )
                )

    def manifest(self, manifest_id: str) -> bytes | None:
        with self._tx() as conn:
            data = conn.execute(
                select(manifests.c.data).where(manifests.c.id == manifest_id)
            ).scalar()
            return None if data is None else bytes(data)

    def manifest_count(self) -> int:
        with self._tx() as conn:
            return int(conn.execute(select(func.count()).select_from(manifests)).scalar() or 0)

    # ------------------------------------------------------------------ internal

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """
        Make every call in the block (in this thread) part of one transaction: one commit
        and one fsync for many rows, all or nothing (the follower applies a block range of
        events and moves its cursor this way).
        """
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with _Transaction(self.engine) as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    def _tx(self) -> Any:
        conn = getattr(self._local, "conn", None)
        return contextlib.nullcontext(conn) if conn is not None else _Transaction(self.engine)

    def _one(self, query: Any) -> Row | None:
        with self._tx() as conn:
            row = conn.execute(query).mappings().first()
            return None if row is None else Row(dict(row))

    def _all(self, query: Any) -> list[Row]:
        with self._tx() as conn:
            return [Row(dict(r)) for r in conn.execute(query).mappings()]


class _Transaction:
    """``engine.begin()`` with every SQLAlchemy failure turned into ``DatabaseError``."""

    def __init__(self, engine: Engine) -> None:
        self._cm = engine.begin()

    def __enter__(self) -> Connection:
        try:
            return self._cm.__enter__()
        except SQLAlchemyError as exc:
            raise DatabaseError(f"database unavailable: {exc}") from None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._cm.__exit__(exc_type, exc, tb)
        except IntegrityError:
            raise
        except SQLAlchemyError as err:
            raise DatabaseError(f"database write failed: {err}") from None
        if isinstance(exc, SQLAlchemyError) and not isinstance(exc, IntegrityError):
            raise DatabaseError(f"database error: {exc}") from None


def _set_meta(conn: Connection, key: str, value: str) -> None:
    found = conn.execute(select(meta.c.key).where(meta.c.key == key)).first()
    if found is None:
        conn.execute(insert(meta).values(key=key, value=value))
    else:
        conn.execute(update(meta).where(meta.c.key == key).values(value=value))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
