"""
The indexer: the market's events into the database, every proof re-verified on the way.

One ``step()`` indexes one range of confirmed blocks:

1. Reorg check: the hash of the last indexed block (kept in ``blocks``) is compared with the
   chain's. If it moved, the stored hashes are walked back to the newest block the chain
   still has, every row after it is deleted (``db.rollback_after``) and indexing resumes
   from there. Because a block hash commits to its parent, one matching block vouches for
   everything before it, so only sparse hashes need to be kept.
2. The range ``[cursor, head - confirmations]`` (at most ``batch_blocks``) is read: the
   market's logs (with their block hashes), the headers of the blocks with events, the seed
   blocks of the proven periods and the range's last block, and every proof transaction raw
   (its keccak must equal its hash: the calldata is what was signed). With
   ``scan_failed_proofs`` the transactions of every block are read too, so that reverted
   ``submit_proof`` calls, which leave no log, are found and judged as well.
3. Every log must carry the hash the header has for its block; otherwise the chain moved
   while we read (``ReorgDetected``) and the step is retried.
4. The events are applied in chain order to the per-provider books (``checker``), and every
   proof is re-verified from its calldata (``checker.check_proof``). A verdict that differs
   from the chain's, or a seed, live-leaf count or epoch that differs from the event's, is
   an alarm.
5. Everything (events, proofs, alarms, block hashes, the cursor) is written in one
   transaction, after deleting whatever an interrupted earlier attempt may have left for
   the same range: re-indexing a range is idempotent.

Nothing is written before the whole range has been read and checked, so an RPC node that
answers garbage or goes away leaves the database at its last good state.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, Engine, insert, select

from contracts.deployment import Deployment
from contracts.events import (
    DealAccepted,
    LedgerEvent,
    ProofSubmitted,
    ProviderTerminated,
    SlotRetired,
)
from market.auditor import db
from market.auditor.calldata import decode_submit_proof, selector_of, tx_call
from market.auditor.checker import ProviderBook, Slot, Verdict, check_proof
from market.auditor.errors import LocalError, MalformedProof, ReorgDetected, RpcGarbage
from market.auditor.logs import LogDecoder
from market.auditor.rpc import Header, RawLog, RpcClient

log = logging.getLogger("market.auditor.indexer")

REORG_WALK: Final = 64
"""Stored block hashes compared per request while looking for a fork point."""


@dataclass(frozen=True)
class IndexerConfig:
    """How far behind the head the indexer stays and how much it reads per step."""

    confirmations: int = 2
    """Blocks below the head before a block is indexed (reorgs deeper than this are still
    detected and rolled back, just later)."""
    batch_blocks: int = 1_000
    """Most blocks indexed per step (one database transaction)."""
    scan_failed_proofs: bool = True
    """Read every transaction of every block to find reverted proof transactions too (more
    RPC traffic; a successful proof is always found from its event)."""


@dataclass(frozen=True)
class Alarm:
    """The auditor and the chain disagree."""

    kind: str
    """``verdict`` (valid/invalid differs), ``seed``, ``live_leaves`` or ``epoch``."""
    block_number: int
    tx_hash: str
    provider: str
    period: int
    detail: str


@dataclass(frozen=True)
class ProofChecked:
    """One proof transaction judged (``chain_accepted``: the contract took it)."""

    tx_hash: str
    block_number: int
    provider: str
    period: int
    chain_accepted: bool
    verdict: Verdict
    chain_live_leaves: int | None


@dataclass(frozen=True)
class RangeIndexed:
    """The result of one ``step``: blocks ``[first, last]`` indexed (none when idle)."""

    first: int
    last: int
    head: int
    events: int
    proofs: tuple[ProofChecked, ...] = ()
    alarms: tuple[Alarm, ...] = ()
    reorg_from: int | None = None
    """Set when the step rolled back everything after this block instead of indexing."""

    @property
    def idle(self) -> bool:
        return self.last < self.first and self.reorg_from is None


@dataclass
class _Pending:
    """Rows of one range, written together at its end."""

    events: list[dict[str, Any]] = field(default_factory=list)
    proofs: list[ProofChecked] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)


class Indexer:
    """
    Follows one deployed market into a database.

    Parameters
    ----------
    engine :
        The auditor's database (``db.open_engine``).
    rpc :
        The JSON-RPC client for bulk reads.
    deployment :
        Where the market is and its parameters (schedule, challenges).
    market_abi :
        The market's ABI (``LedgerClient.market.abi``): event and ``submit_proof`` shapes.
    """

    def __init__(
        self,
        engine: Engine,
        rpc: RpcClient,
        deployment: Deployment,
        market_abi: list[dict[str, Any]],
        config: IndexerConfig | None = None,
    ) -> None:
        self.engine = engine
        self.rpc = rpc
        self.deployment = deployment
        self.config = config or IndexerConfig()
        self.schedule = deployment.schedule
        self.challenges = deployment.params.challenges
        self.market = bytes.fromhex(deployment.market.removeprefix("0x"))
        self.decoder = LogDecoder(market_abi)
        submit = next(
            i for i in market_abi if i.get("type") == "function" and i["name"] == "submit_proof"
        )
        self.selector = selector_of(submit)
        self._books: dict[str, ProviderBook] | None = None
        self._proven: set[tuple[str, int]] = set()
        with db.transaction(engine) as conn:
            for key, value in (("chain_id", deployment.chain_id), ("market", deployment.market)):
                stored = db.get_meta(conn, key)
                if stored is None:
                    db.set_meta(conn, key, str(value))
                elif stored != str(value):
                    raise LocalError(f"this database indexes {key} {stored}, not {value}")

    # -- state ---------------------------------------------------------------------------

    @property
    def cursor(self) -> int:
        """The next block to index."""
        with self.engine.connect() as conn:
            value = db.get_meta(conn, "next_block")
        return int(value) if value is not None else self.deployment.deploy_block

    @property
    def books(self) -> dict[str, ProviderBook]:
        """Every provider's data sets as of the cursor (rebuilt from the database)."""
        if self._books is None:
            self._load_books()
        assert self._books is not None
        return self._books

    def proven(self, provider: str, period: int) -> bool:
        """Whether an accepted proof of ``provider`` for ``period`` is indexed."""
        _ = self.books
        return (provider, period) in self._proven

    def _load_books(self) -> None:
        with self.engine.connect() as conn:
            self._books, self._proven = load_books(conn, self.cursor)

    # -- indexing ------------------------------------------------------------------------

    def step(self) -> RangeIndexed:
        """Index the next range of confirmed blocks (or roll back a reorg)."""
        head = self.rpc.block_number()
        cursor = self.cursor
        fork = self._find_fork(cursor)
        if fork is not None:
            return self._rollback(fork, head)
        last = min(head - self.config.confirmations, cursor + self.config.batch_blocks - 1)
        if last < cursor:
            return RangeIndexed(cursor, cursor - 1, head, 0)
        try:
            return self._index(cursor, last, head)
        except BaseException:
            self._books = None  # the books may hold part of the range: rebuild from the DB
            raise

    def run_until(self, block: int, *, poll: float = 0.2, timeout: float = 600.0) -> None:
        """Step until ``block`` is indexed (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while self.cursor <= block:
            if self.step().idle:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"block {block} not indexed after {timeout}s")
                time.sleep(poll)

    def _find_fork(self, cursor: int) -> int | None:
        """The newest stored block still on the chain, if the last stored one is not."""
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(db.blocks.c.number, db.blocks.c.hash)
                .where(db.blocks.c.number < cursor)
                .order_by(db.blocks.c.number.desc())
                .limit(1)
            ).first()
        if stored is None or self._hash_matches([stored])[0]:
            return None
        log.warning("reorg detected block=%d stored_hash=%s", stored[0], stored[1][:18])
        offset = 0
        while True:
            with self.engine.connect() as conn:
                page = list(
                    conn.execute(
                        select(db.blocks.c.number, db.blocks.c.hash)
                        .order_by(db.blocks.c.number.desc())
                        .offset(offset)
                        .limit(REORG_WALK)
                    )
                )
            if not page:
                return self.deployment.deploy_block - 1
            for (number, _), ok in zip(page, self._hash_matches(page), strict=True):
                if ok:
                    return int(number)
            offset += len(page)

    def _hash_matches(self, stored: Iterable[Any]) -> list[bool]:
        rows = list(stored)
        headers = self.rpc.headers(int(r[0]) for r in rows)
        return ["0x" + headers[int(n)].hash.hex() == h for n, h in rows]

    def _rollback(self, fork: int, head: int) -> RangeIndexed:
        with db.transaction(self.engine) as conn:
            db.rollback_after(conn, fork)
            db.set_meta(conn, "next_block", str(fork + 1))
        self._books = None
        log.warning("reorg rolled back after block=%d", fork)
        return RangeIndexed(fork + 1, fork, head, 0, reorg_from=fork)

    def _index(self, first: int, last: int, head: int) -> RangeIndexed:
        raw_logs = self.rpc.logs(self.market, first, last)
        decoded = [(entry, self.decoder.decode(entry)) for entry in raw_logs]
        proofs = [(e, ev) for e, ev in decoded if isinstance(ev, ProofSubmitted)]

        seed_blocks = {self.schedule.seed_block(ev.period) for _, ev in proofs}
        tx_blocks: dict[int, list[bytes]] = {}
        if self.config.scan_failed_proofs:
            scanned = self.rpc.blocks(range(first, last + 1))
            headers = {n: h for n, (h, _) in scanned.items()}
            tx_blocks = {n: txs for n, (_, txs) in scanned.items()}
            headers.update(self.rpc.headers(seed_blocks - headers.keys()))
        else:
            headers = self.rpc.headers({e.block_number for e in raw_logs} | seed_blocks | {last})
        for entry in raw_logs:
            if headers[entry.block_number].hash != entry.block_hash:
                raise ReorgDetected(f"block {entry.block_number} changed while being read")

        proof_txs = {e.tx_hash for e, _ in proofs}
        raws = self.rpc.raw_transactions(
            [h for txs in tx_blocks.values() for h in txs] if tx_blocks else list(proof_txs)
        )
        failed = self._failed_candidates(raws, proof_txs, tx_blocks)
        receipts = self.rpc.receipts([h for _, h in failed]) if failed else {}

        pending = _Pending()
        books = self.books
        # Failed proof transactions sit between the logs of their block; judge them after the
        # block's events (a failed call emitted nothing that could change the books).
        failed_by_block: dict[int, list[bytes]] = {}
        for n, h in failed:
            failed_by_block.setdefault(n, []).append(h)
        block_of_last_event = None
        for entry, event in decoded:
            if block_of_last_event is not None and entry.block_number != block_of_last_event:
                self._judge_failed(failed_by_block.pop(block_of_last_event, []), block_of_last_event, raws, receipts, headers, pending)
            block_of_last_event = entry.block_number
            if event is None:
                continue
            pending.events.append(_event_row(entry, event))
            if isinstance(event, ProofSubmitted):
                self._judge_accepted(entry, event, raws[entry.tx_hash], headers, pending)
            _apply(books, self._proven, type(event).__name__, _event_data(event))
        for n in sorted(failed_by_block):
            self._judge_failed(failed_by_block[n], n, raws, receipts, headers, pending)

        self._write(first, last, headers, pending)
        return RangeIndexed(
            first,
            last,
            head,
            len(pending.events),
            tuple(pending.proofs),
            tuple(pending.alarms),
        )

    def _failed_candidates(
        self, raws: dict[bytes, bytes], accepted: set[bytes], tx_blocks: dict[int, list[bytes]]
    ) -> list[tuple[int, bytes]]:
        """(block, tx hash) of direct ``submit_proof`` calls to the market with no event."""
        out = []
        for n, hashes in sorted(tx_blocks.items()):
            for h in hashes:
                if h in accepted:
                    continue
                try:
                    call = tx_call(raws[h])
                except MalformedProof:
                    continue  # not a transaction we can read: not ours to judge
                if call.to == self.market and call.data[:4] == self.selector:
                    out.append((n, h))
        return out

    # -- judging -------------------------------------------------------------------------

    def _seed(self, period: int, headers: dict[int, Header]) -> bytes:
        return headers[self.schedule.seed_block(period)].hash

    def _verdict(self, provider: str, period: int, seed: bytes, raw: bytes) -> tuple[Verdict, int]:
        """The auditor's verdict and the epoch it judged in."""
        book = self.books.get(provider, ProviderBook())
        index = book.slot_index(book.epoch, period)
        try:
            call = tx_call(raw)
            if call.to != self.market:
                raise MalformedProof("the transaction does not call the market directly")
            proof = decode_submit_proof(call.data, self.selector)
        except MalformedProof as exc:
            return Verdict(False, f"malformed: {exc}", index.total), book.epoch
        return (
            check_proof(
                seed=seed,
                provider=provider,
                period=period,
                index=index,
                challenges=self.challenges,
                call=proof,
            ),
            book.epoch,
        )

    def _judge_accepted(
        self,
        entry: RawLog,
        event: ProofSubmitted,
        raw: bytes,
        headers: dict[int, Header],
        pending: _Pending,
    ) -> None:
        period = self.schedule.period_of(entry.block_number)
        seed = self._seed(period, headers)
        verdict, epoch = self._verdict(event.provider, period, seed, raw)
        checked = ProofChecked(
            event.tx_hash, entry.block_number, event.provider, period, True, verdict, event.live_leaves
        )
        pending.proofs.append(checked)

        def alarm(kind: str, detail: str) -> None:
            pending.alarms.append(
                Alarm(kind, entry.block_number, event.tx_hash, event.provider, period, detail)
            )

        if not verdict.valid:
            alarm("verdict", f"the chain accepted a proof the auditor rejects: {verdict.reason}")
        if event.period != period:
            alarm("period", f"event says period {event.period}, its block is in {period}")
        if event.seed != seed:
            alarm("seed", f"event seed {event.seed.hex()[:16]} != block hash {seed.hex()[:16]}")
        if event.live_leaves != verdict.live_leaves:
            alarm("live_leaves", f"event {event.live_leaves} != auditor {verdict.live_leaves}")
        if event.epoch != epoch:
            alarm("epoch", f"event epoch {event.epoch} != auditor {epoch}")
        for a in pending.alarms[-5:]:
            if a.tx_hash == event.tx_hash:
                log.error("ALARM kind=%s provider=%s period=%d tx=%s %s", a.kind, a.provider, a.period, a.tx_hash, a.detail)
        log.debug(
            "proof provider=%s period=%d valid=%s tx=%s",
            event.provider,
            period,
            verdict.valid,
            event.tx_hash,
        )

    def _judge_failed(
        self,
        hashes: list[bytes],
        block: int,
        raws: dict[bytes, bytes],
        receipts: dict[bytes, Any],
        headers: dict[int, Header],
        pending: _Pending,
    ) -> None:
        from web3 import Web3

        for h in hashes:
            receipt = receipts[h]
            if receipt.status != 0:
                raise RpcGarbage(f"transaction {h.hex()[:16]} succeeded but emitted no proof")
            provider = Web3.to_checksum_address(receipt.sender)
            period = self.schedule.period_of(block)
            tx_hash = "0x" + h.hex()
            if block == self.schedule.seed_block(period):
                verdict = Verdict(False, "sent in the seed block (outside the window)", 0)
            else:
                verdict, _ = self._verdict(provider, period, self._seed(period, headers), raws[h])
            pending.proofs.append(ProofChecked(tx_hash, block, provider, period, False, verdict, None))
            out_of_gas = receipt.gas_used >= tx_call(raws[h]).gas
            explained = out_of_gas or (provider, period) in self._proven
            if verdict.valid and not explained:
                detail = "the chain rejected a proof the auditor accepts"
                pending.alarms.append(Alarm("verdict", block, tx_hash, provider, period, detail))
                log.error("ALARM kind=verdict provider=%s period=%d tx=%s %s", provider, period, tx_hash, detail)

    # -- writing -------------------------------------------------------------------------

    def _write(self, first: int, last: int, headers: dict[int, Header], pending: _Pending) -> None:
        keep = {r["block_number"] for r in pending.events} | {last}
        block_rows = [
            {"number": n, "hash": "0x" + headers[n].hash.hex()} for n in sorted(keep) if first <= n <= last
        ]
        now = time.time()
        with db.transaction(self.engine) as conn:
            db.clear_range(conn, first, last)
            if block_rows:
                conn.execute(insert(db.blocks), block_rows)
            if pending.events:
                conn.execute(insert(db.events), pending.events)
            if pending.proofs:
                conn.execute(
                    insert(db.proofs),
                    [
                        {
                            "tx_hash": p.tx_hash,
                            "block_number": p.block_number,
                            "provider": p.provider,
                            "period": p.period,
                            "chain_accepted": p.chain_accepted,
                            "valid": p.verdict.valid,
                            "reason": p.verdict.reason,
                            "failed": json.dumps(list(p.verdict.failed)),
                            "live_leaves": p.verdict.live_leaves,
                            "chain_live_leaves": p.chain_live_leaves,
                        }
                        for p in pending.proofs
                    ],
                )
            if pending.alarms:
                conn.execute(
                    insert(db.alarms),
                    [
                        {
                            "block_number": a.block_number,
                            "tx_hash": a.tx_hash,
                            "provider": a.provider,
                            "period": a.period,
                            "kind": a.kind,
                            "detail": a.detail,
                            "at": now,
                        }
                        for a in pending.alarms
                    ],
                )
            db.set_meta(conn, "next_block", str(last + 1))


# ---------------------------------------------------------------------- helpers


def _event_data(event: LedgerEvent) -> dict[str, Any]:
    """An event's own fields as JSON-ready values (bytes as 0x-hex; ints kept exact)."""
    out: dict[str, Any] = {}
    for name, value in vars(event).items():
        if name in ("block_number", "tx_hash", "log_index"):
            continue
        out[name] = "0x" + value.hex() if isinstance(value, bytes) else value
    return out


def _event_row(entry: RawLog, event: LedgerEvent) -> dict[str, Any]:
    data = _event_data(event)
    provider = data.get("provider")
    return {
        "block_number": entry.block_number,
        "log_index": entry.log_index,
        "block_hash": "0x" + entry.block_hash.hex(),
        "tx_hash": event.tx_hash,
        "kind": type(event).__name__,
        "provider": provider,
        "deal_id": data.get("deal_id"),
        "period": data.get("period", data.get("end_period", data.get("from_period"))),
        "data": json.dumps(data),
    }


def load_books(
    conn: Connection, cursor: int
) -> tuple[dict[str, ProviderBook], set[tuple[str, int]]]:
    """Every provider's books and the proven (provider, period) pairs below ``cursor``."""
    books: dict[str, ProviderBook] = {}
    proven: set[tuple[str, int]] = set()
    kinds = [c.__name__ for c in (DealAccepted, SlotRetired, ProviderTerminated, ProofSubmitted)]
    rows = conn.execute(
        select(db.events.c.kind, db.events.c.data)
        .where(db.events.c.kind.in_(kinds), db.events.c.block_number < cursor)
        .order_by(db.events.c.block_number, db.events.c.log_index)
    )
    for kind, data in rows:
        _apply(books, proven, kind, json.loads(data))
    return books, proven


def _apply(
    books: dict[str, ProviderBook], proven: set[tuple[str, int]], kind: str, data: dict[str, Any]
) -> None:
    """Apply one event (as stored) to the books."""
    if kind == "DealAccepted":
        books.setdefault(data["provider"], ProviderBook()).add_slot(
            data["epoch"],
            data["slot"],
            Slot(
                deal_id=data["deal_id"],
                piece_root=bytes.fromhex(data["piece_root"][2:]),
                piece_size=data["piece_size"],
                start=data["start"],
            ),
        )
    elif kind == "SlotRetired":
        books[data["provider"]].retire(data["epoch"], data["slot"], data["from_period"])
    elif kind == "ProviderTerminated":
        books.setdefault(data["provider"], ProviderBook()).terminate(data["epoch"], data["end_period"])
    elif kind == "ProofSubmitted":
        proven.add((data["provider"], data["period"]))


