"""
The client's database: files, their shares, every proposal ever signed, and put jobs.

SQLAlchemy 2 Core over portable SQL (no SQLite-only features): SQLite in the home
directory by default, any other SQLAlchemy URL (``postgresql://...``) works. Amounts and
nonces are up to 256 bits, wider than any SQL integer, so they are stored as decimal text.
Writes are one transaction each; a placement's row is written *before* the step the chain
or a provider could act on (signing before sending, so that every live nonce is known).

Schema version 1 (``meta.schema_version``); ``Database.create`` makes the tables.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from market.errors import ConfigError
from market.placement import IN_FLIGHT, LIVE_NONCE, State, Trigger, advance

SCHEMA_VERSION: Final = 1

metadata = sa.MetaData()

files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("k", sa.Integer, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("periods", sa.Integer, nullable=False),
    sa.Column("max_price", sa.String(80), nullable=True),
    sa.Column("manifest", sa.LargeBinary, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("published", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

shares = sa.Table(
    "shares",
    metadata,
    sa.Column("file_id", sa.String(64), sa.ForeignKey("files.id"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
)

placements = sa.Table(
    "placements",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("file_id", sa.String(64), sa.ForeignKey("files.id"), nullable=False, index=True),
    sa.Column("share_index", sa.Integer, nullable=False),
    sa.Column("purpose", sa.String(8), nullable=False),
    sa.Column("provider", sa.String(42), nullable=False),
    sa.Column("node_id", sa.LargeBinary(32), nullable=False),
    sa.Column("nonce", sa.String(80), nullable=False),
    sa.Column("price_per_period", sa.String(80), nullable=False),
    sa.Column("collateral", sa.String(80), nullable=False),
    sa.Column("periods", sa.Integer, nullable=False),
    sa.Column("expiry_block", sa.BigInteger, nullable=False),
    sa.Column("signed_block", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("deal_id", sa.BigInteger, nullable=True),
    sa.Column("tx_hash", sa.String(66), nullable=True),
    sa.Column("start_period", sa.BigInteger, nullable=True),
    sa.Column("end_period", sa.BigInteger, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

puts = sa.Table(
    "puts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("source_size", sa.BigInteger, nullable=False),
    sa.Column("source_mtime_ns", sa.BigInteger, nullable=False),
    sa.Column("redundancy", sa.String(32), nullable=False),
    sa.Column("periods", sa.Integer, nullable=False),
    sa.Column("staging", sa.Text, nullable=False),
    sa.Column("file_id", sa.String(64), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class FileRecord:
    id: str
    name: str | None
    size: int
    mode: str
    k: int
    n: int
    periods: int
    max_price: int | None
    manifest: bytes
    state: str
    """``placing`` until every share has an active deal, then ``stored``."""
    published: bool
    """Whether the manifest was stored in the DHT."""
    created_at: int


@dataclass(frozen=True)
class ShareRecord:
    file_id: str
    index: int
    root: bytes
    size: int


@dataclass(frozen=True)
class PlacementRecord:
    id: int
    file_id: str
    share_index: int
    purpose: str
    """``put``, ``repair`` or ``renew``."""
    provider: str
    node_id: bytes
    nonce: int
    price_per_period: int
    collateral: int
    periods: int
    expiry_block: int
    signed_block: int
    state: State
    deal_id: int | None
    tx_hash: str | None
    start_period: int | None
    end_period: int | None
    reason: str | None
    created_at: int
    updated_at: int

    @property
    def escrow(self) -> int:
        return self.price_per_period * self.periods


@dataclass(frozen=True)
class PutJob:
    id: int
    source: str
    source_size: int
    source_mtime_ns: int
    redundancy: str
    periods: int
    staging: str
    file_id: str | None
    state: str
    """``preparing``, ``placing``, ``done`` or ``failed``."""
    created_at: int


class Database:
    """The client's records behind one SQLAlchemy engine."""

    def __init__(self, url: str) -> None:
        try:
            self.engine: Engine = sa.create_engine(url, future=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise ConfigError(f"bad database URL {url!r}: {exc}") from None
        self.url = url

    def create(self) -> None:
        """Create the tables (idempotent) and record the schema version."""
        try:
            metadata.create_all(self.engine)
            with self.engine.begin() as c:
                row = c.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version"))
                if row.first() is None:
                    c.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"cannot create the database at {self.url}: {exc}") from None

    def check(self) -> None:
        """``ConfigError`` unless the database exists with a schema this code reads."""
        try:
            with self.engine.connect() as c:
                row = c.execute(
                    sa.select(meta.c.value).where(meta.c.key == "schema_version")
                ).first()
        except sa.exc.SQLAlchemyError:
            raise ConfigError(f"no market database at {self.url} (run `market init`)") from None
        if row is None or int(row[0]) != SCHEMA_VERSION:
            raise ConfigError(f"database {self.url} has an unknown schema version")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as c:
            yield c

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        with self._tx() as c:
            row = c.execute(sa.select(meta.c.value).where(meta.c.key == key)).first()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as c:
            done = c.execute(meta.update().where(meta.c.key == key).values(value=value))
            if done.rowcount == 0:
                c.execute(meta.insert().values(key=key, value=value))

    # ------------------------------------------------------------------ files

    def add_file(
        self,
        *,
        file_id: str,
        name: str | None,
        size: int,
        mode: str,
        k: int,
        n: int,
        periods: int,
        max_price: int | None,
        manifest: bytes,
        roots: Iterable[tuple[bytes, int]],
    ) -> None:
        """Record a prepared file and its shares (``roots``: (root, size) in share order)."""
        with self._tx() as c:
            c.execute(
                files.insert().values(
                    id=file_id,
                    name=name,
                    size=size,
                    mode=mode,
                    k=k,
                    n=n,
                    periods=periods,
                    max_price=None if max_price is None else str(max_price),
                    manifest=manifest,
                    state="placing",
                    published=False,
                    created_at=int(time.time()),
                )
            )
            c.execute(
                shares.insert(),
                [
                    {"file_id": file_id, "idx": i, "root": root, "size": size}
                    for i, (root, size) in enumerate(roots)
                ],
            )

    def file(self, file_id: str) -> FileRecord | None:
        with self._tx() as c:
            row = c.execute(sa.select(files).where(files.c.id == file_id)).first()
        return None if row is None else _file(row._mapping)

    def files(self) -> list[FileRecord]:
        with self._tx() as c:
            rows = c.execute(sa.select(files).order_by(files.c.created_at, files.c.id)).all()
        return [_file(r._mapping) for r in rows]

    def set_file_state(self, file_id: str, state: str) -> None:
        with self._tx() as c:
            c.execute(files.update().where(files.c.id == file_id).values(state=state))

    def set_published(self, file_id: str) -> None:
        with self._tx() as c:
            c.execute(files.update().where(files.c.id == file_id).values(published=True))

    def shares(self, file_id: str) -> list[ShareRecord]:
        with self._tx() as c:
            rows = c.execute(
                sa.select(shares).where(shares.c.file_id == file_id).order_by(shares.c.idx)
            ).all()
        return [ShareRecord(r.file_id, r.idx, bytes(r.root), r.size) for r in rows]

    # ------------------------------------------------------------------ placements

    def add_placement(
        self,
        *,
        file_id: str,
        share_index: int,
        purpose: str,
        provider: str,
        node_id: bytes,
        nonce: int,
        price_per_period: int,
        collateral: int,
        periods: int,
        expiry_block: int,
        signed_block: int,
    ) -> PlacementRecord:
        """Record a signed proposal (state ``SIGNED``) before it is sent."""
        now = int(time.time())
        with self._tx() as c:
            result = c.execute(
                placements.insert().values(
                    file_id=file_id,
                    share_index=share_index,
                    purpose=purpose,
                    provider=provider,
                    node_id=node_id,
                    nonce=str(nonce),
                    price_per_period=str(price_per_period),
                    collateral=str(collateral),
                    periods=periods,
                    expiry_block=expiry_block,
                    signed_block=signed_block,
                    state=State.SIGNED.value,
                    created_at=now,
                    updated_at=now,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            row = c.execute(sa.select(placements).where(placements.c.id == key[0])).one()
        return _placement(row._mapping)

    def placement(self, placement_id: int) -> PlacementRecord:
        with self._tx() as c:
            row = c.execute(sa.select(placements).where(placements.c.id == placement_id)).one()
        return _placement(row._mapping)

    def transition(self, placement_id: int, trigger: Trigger, **changes: Any) -> PlacementRecord:
        """
        Move a placement along the state table (``market.placement``), with other column
        changes (``deal_id``, ``reason``...), in one transaction.
        """
        with self._tx() as c:
            row = c.execute(
                sa.select(placements.c.state).where(placements.c.id == placement_id)
            ).one()
            new = advance(State(row.state), trigger)
            c.execute(
                placements.update()
                .where(placements.c.id == placement_id)
                .values(state=new.value, updated_at=int(time.time()), **changes)
            )
            out = c.execute(sa.select(placements).where(placements.c.id == placement_id)).one()
        return _placement(out._mapping)

    def update_placement(self, placement_id: int, **changes: Any) -> None:
        """Change columns other than the state (``end_period`` after a renewal...)."""
        with self._tx() as c:
            c.execute(
                placements.update()
                .where(placements.c.id == placement_id)
                .values(updated_at=int(time.time()), **changes)
            )

    def placements(
        self, file_id: str | None = None, states: Iterable[State] | None = None
    ) -> list[PlacementRecord]:
        query = sa.select(placements).order_by(placements.c.id)
        if file_id is not None:
            query = query.where(placements.c.file_id == file_id)
        if states is not None:
            query = query.where(placements.c.state.in_([s.value for s in states]))
        with self._tx() as c:
            rows = c.execute(query).all()
        return [_placement(r._mapping) for r in rows]

    def live_nonces(self) -> list[PlacementRecord]:
        """Placements whose nonce might still be accepted (pending or failed)."""
        return self.placements(states=LIVE_NONCE)

    def in_flight(self, file_id: str) -> list[PlacementRecord]:
        return self.placements(file_id, IN_FLIGHT)

    # ------------------------------------------------------------------ puts

    def find_put(
        self, source: str, size: int, mtime_ns: int, redundancy: str, periods: int
    ) -> PutJob | None:
        """An unfinished put of the same file (same path, size, mtime) with the same plan."""
        with self._tx() as c:
            row = c.execute(
                sa.select(puts)
                .where(
                    puts.c.source == source,
                    puts.c.source_size == size,
                    puts.c.source_mtime_ns == mtime_ns,
                    puts.c.redundancy == redundancy,
                    puts.c.periods == periods,
                    puts.c.state.in_(["preparing", "placing"]),
                )
                .order_by(puts.c.id.desc())
            ).first()
        return None if row is None else PutJob(**row._mapping)

    def add_put(
        self,
        *,
        source: str,
        source_size: int,
        source_mtime_ns: int,
        redundancy: str,
        periods: int,
        staging: str,
    ) -> PutJob:
        with self._tx() as c:
            result = c.execute(
                puts.insert().values(
                    source=source,
                    source_size=source_size,
                    source_mtime_ns=source_mtime_ns,
                    redundancy=redundancy,
                    periods=periods,
                    staging=staging,
                    state="preparing",
                    created_at=int(time.time()),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            row = c.execute(sa.select(puts).where(puts.c.id == key[0])).one()
        return PutJob(**row._mapping)

    def update_put(self, put_id: int, **changes: Any) -> None:
        with self._tx() as c:
            c.execute(puts.update().where(puts.c.id == put_id).values(**changes))

    def put_of_file(self, file_id: str) -> PutJob | None:
        with self._tx() as c:
            row = c.execute(
                sa.select(puts).where(puts.c.file_id == file_id).order_by(puts.c.id.desc())
            ).first()
        return None if row is None else PutJob(**row._mapping)


def _file(r: Any) -> FileRecord:
    return FileRecord(
        id=r["id"],
        name=r["name"],
        size=r["size"],
        mode=r["mode"],
        k=r["k"],
        n=r["n"],
        periods=r["periods"],
        max_price=None if r["max_price"] is None else int(r["max_price"]),
        manifest=bytes(r["manifest"]),
        state=r["state"],
        published=bool(r["published"]),
        created_at=r["created_at"],
    )


def _placement(r: Any) -> PlacementRecord:
    return PlacementRecord(
        id=r["id"],
        file_id=r["file_id"],
        share_index=r["share_index"],
        purpose=r["purpose"],
        provider=r["provider"],
        node_id=bytes(r["node_id"]),
        nonce=int(r["nonce"]),
        price_per_period=int(r["price_per_period"]),
        collateral=int(r["collateral"]),
        periods=r["periods"],
        expiry_block=r["expiry_block"],
        signed_block=r["signed_block"],
        state=State(r["state"]),
        deal_id=r["deal_id"],
        tx_hash=r["tx_hash"],
        start_period=r["start_period"],
        end_period=r["end_period"],
        reason=r["reason"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )
