"""
The auditor's database (SQLAlchemy 2.0 Core; SQLite by default, PostgreSQL by URL).

Portable SQL only: integer, text, boolean and float columns; amounts of tokens (up to
2**256) are kept inside the JSON ``data`` of an event or as decimal text, never as a
database integer. Every row that comes from the chain carries the block it came from, so
that a reorg deletes exactly the rows of the dropped blocks (``rollback_after``), and every
range is written in one transaction together with the indexer's cursor: after a crash the
database holds either all of a range or none of it (idempotent re-indexing).

Tables:

- ``meta``: key/value (schema version, chain id, market, ``next_block`` cursor).
- ``blocks``: hashes of the indexed blocks the indexer needs to recognise a reorg (every
  block with a market event, and the last block of every indexed range).
- ``events``: every market event, keyed by (block, log index), with its kind, the provider,
  deal and period it concerns, and all of its fields as JSON.
- ``proofs``: every proof transaction (accepted, or reverted when the block scan finds it)
  with the chain's verdict and the auditor's own.
- ``alarms``: disagreements between the auditor and the chain.
- ``claims``: fault reports the auditor sent or decided not to send, and their outcome.
- ``retrievals``: retrieval spot checks of providers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from market.auditor.errors import LocalError

SCHEMA_VERSION: Final = 1

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

blocks = Table(
    "blocks",
    metadata,
    Column("number", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(66), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("block_number", BigInteger, primary_key=True, autoincrement=False),
    Column("log_index", Integer, primary_key=True, autoincrement=False),
    Column("block_hash", String(66), nullable=False),
    Column("tx_hash", String(66), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("provider", String(42)),
    Column("deal_id", BigInteger),
    Column("period", BigInteger),
    Column("data", Text, nullable=False),
    Index("ix_events_kind", "kind"),
    Index("ix_events_provider", "provider"),
)

proofs = Table(
    "proofs",
    metadata,
    Column("tx_hash", String(66), primary_key=True),
    Column("block_number", BigInteger, nullable=False),
    Column("provider", String(42), nullable=False),
    Column("period", BigInteger, nullable=False),
    Column("chain_accepted", Boolean, nullable=False),
    Column("valid", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("failed", Text, nullable=False),
    Column("live_leaves", BigInteger, nullable=False),
    Column("chain_live_leaves", BigInteger),
    Index("ix_proofs_provider_period", "provider", "period"),
    Index("ix_proofs_block", "block_number"),
)

alarms = Table(
    "alarms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("block_number", BigInteger, nullable=False),
    Column("tx_hash", String(66)),
    Column("provider", String(42)),
    Column("period", BigInteger),
    Column("kind", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_alarms_block", "block_number"),
)

claims = Table(
    "claims",
    metadata,
    Column("provider", String(42), primary_key=True),
    Column("period", BigInteger, primary_key=True, autoincrement=False),
    Column("status", String(16), nullable=False),
    Column("tx_hash", String(66)),
    Column("bounty", Text, nullable=False),
    Column("gas_cost_wei", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("at", Float, nullable=False),
)

retrievals = Table(
    "retrievals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(42), nullable=False),
    Column("deal_id", BigInteger, nullable=False),
    Column("chunk", BigInteger, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("latency_ms", Float),
    Column("period", BigInteger, nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_retrievals_provider", "provider"),
)

CHAIN_TABLES: Final = (events, proofs, alarms)
"""Tables of rows derived from blocks (rolled back on a reorg), keyed by ``block_number``."""


def open_engine(url: str) -> Engine:
    """
    An engine for ``url`` with the schema created.

    SQLite gets WAL journaling (the API reads while the indexer writes) and a busy timeout;
    these are connection settings, not SQL the schema depends on.
    """
    try:
        engine = create_engine(url, future=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        metadata.create_all(engine)
        with engine.begin() as conn:
            version = get_meta(conn, "schema_version")
            if version is None:
                set_meta(conn, "schema_version", str(SCHEMA_VERSION))
            elif int(version) != SCHEMA_VERSION:
                raise LocalError(f"database schema {version}, this auditor uses {SCHEMA_VERSION}")
    except SQLAlchemyError as exc:
        raise LocalError(f"cannot open the database {url}: {exc}") from None
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One database transaction (committed on success, rolled back on error)."""
    with engine.begin() as conn:
        yield conn


def get_meta(conn: Connection, key: str) -> str | None:
    return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()


def set_meta(conn: Connection, key: str, value: str) -> None:
    updated = conn.execute(meta.update().where(meta.c.key == key).values(value=value))
    if updated.rowcount == 0:
        conn.execute(meta.insert().values(key=key, value=value))


def rollback_after(conn: Connection, block: int) -> None:
    """Delete every chain-derived row of the blocks after ``block`` (a reorg)."""
    for table in CHAIN_TABLES:
        conn.execute(delete(table).where(table.c.block_number > block))
    conn.execute(delete(blocks).where(blocks.c.number > block))


def clear_range(conn: Connection, first: int, last: int) -> None:
    """Delete the chain-derived rows of blocks ``[first, last]`` before writing them again."""
    for table in CHAIN_TABLES:
        conn.execute(
            delete(table).where(table.c.block_number >= first, table.c.block_number <= last)
        )
    conn.execute(delete(blocks).where(blocks.c.number >= first, blocks.c.number <= last))
