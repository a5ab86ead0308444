"""
The indexer: the market's events into the database, every proof re-verified on the way.

One ``step()`` indexes one range of confirmed blocks (``head - confirmations``):

1. Reorg check: the hash of the newest stored block (``blocks``) is compared with the
   chain's. If it moved, the stored hashes are walked back to the newest block the chain
   still has, every row after it is deleted (``db.rollback_after``) and indexing resumes
   from there. A block hash commits to its parent, so one matching block vouches for all
   before it and only sparse hashes are kept (blocks with events, the end of each range).
2. Read (``_read``; the next range on a second thread while this one is judged): the
   blocks' headers and transaction hashes, cut short at ``max_txs`` transactions; the
   market's logs, each of which must carry its header's block hash (else the chain moved
   while we read: ``ReorgDetected``) and which, per block, must be exactly the market's
   logs that the block's receipts root commits to (``receipts``); every transaction raw,
   each hashing to its id, so that the calldata judged is what was signed; the receipts of
   reverted ``submit_proof`` calls; the seed blocks' headers.
3. Judge (``_process``) in chain order, block by block and transaction by transaction:
   the range must extend the indexed chain (its first block's parent is the stored hash);
   events update the per-provider books (``checker``); every accepted proof and every
   reverted direct ``submit_proof`` call is re-verified from its calldata
   (``checker.check_proof``). A verdict that differs from the chain's, or a seed, live-leaf
   count, epoch or period that differs from the event's, is an alarm.
4. Write everything (events, proofs, alarms, block hashes, the cursor) in one transaction,
   after deleting whatever an interrupted attempt may have left for the same blocks:
   re-indexing is idempotent, and a crash leaves all of a range or none of it.

Nothing is written before the whole range has been read and checked, so an RPC node that
answers garbage or goes away leaves the database at its last good state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, Engine, insert, select
from web3 import Web3

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
from market.auditor.errors import (
    AuditorError,
    LocalError,
    MalformedProof,
    ReorgDetected,
    RpcGarbage,
)
from market.auditor.logs import LogDecoder
from market.auditor.receipts import parse_receipt, receipts_root
from market.auditor.rpc import Header, RawLog, Receipt, RpcClient

log = logging.getLogger("market.auditor.indexer")

REORG_WALK: Final = 64
"""Stored block hashes compared per request while looking for a fork point."""
FIRST_SCAN_CHUNK: Final = 8
"""Blocks in the first block-scan request of a step (doubling up to the RPC batch size)."""


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
    max_txs: int = 400
    """Most raw transactions read per step (a proof transaction is ~60 KB): a step covers
    fewer blocks when they are full."""
    prefetch: bool = True
    """Read the next range on a second thread while the current one is judged."""
    verify_logs: bool = True
    """Check every block's logs against its receipts root (``eth_getBlockReceipts``), so that
    a garbled or invented event is never indexed; turn off for endpoints without that call."""


@dataclass(frozen=True)
class Alarm:
    """The auditor and the chain disagree."""

    kind: str
    """``verdict`` (valid/invalid differs), ``seed``, ``live_leaves``, ``epoch`` or
    ``period`` (the event's differs from the auditor's)."""
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


@dataclass(frozen=True)
class _Batch:
    """Everything read from the chain for blocks ``[first, last]``, checked."""

    first: int
    last: int
    logs: list[tuple[RawLog, LedgerEvent | None]]
    headers: dict[int, Header]
    """Every block of the range (scan) or the blocks with events, and the seed blocks."""
    tx_order: dict[bytes, tuple[int, int]]
    """(block, position) of every transaction of the range (scan only)."""
    raws: dict[bytes, bytes]
    failed: list[tuple[int, bytes]]
    """(block, tx hash) of reverted ``submit_proof`` calls."""
    receipts: dict[bytes, Receipt]


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
        self._proof_topic = self.decoder.topic_of(ProofSubmitted)
        self._prefetch_rpc = rpc.clone()
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auditor-prefetch")
        self._prefetch: Future[_Batch] | None = None
        served = rpc.chain_id()
        if served != deployment.chain_id:
            raise LocalError(
                f"{rpc.url} serves chain {served}, the deployment is on chain {deployment.chain_id}"
            )
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
            self._drop_prefetch()
            return self._rollback(fork, head)
        safe = head - self.config.confirmations
        if safe < cursor:
            return RangeIndexed(cursor, cursor - 1, head, 0)
        batch = self._take_prefetch(cursor)
        if batch is None:
            batch = self._read(self.rpc, cursor, min(safe, cursor + self.config.batch_blocks - 1))
        if self.config.prefetch and batch.last < safe:
            first = batch.last + 1
            last = min(safe, first + self.config.batch_blocks - 1)
            self._prefetch = self._prefetcher.submit(self._read, self._prefetch_rpc, first, last)
        try:
            return self._process(batch, head)
        except BaseException:
            self._books = None  # the books may hold part of the range: rebuild from the DB
            self._drop_prefetch()
            raise

    def run_until(self, block: int, *, poll: float = 0.2, timeout: float = 600.0) -> None:
        """Step until ``block`` is indexed (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while self.cursor <= block:
            if self.step().idle:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"block {block} not indexed after {timeout}s")
                time.sleep(poll)

    def close(self) -> None:
        """Stop the prefetching thread and close the RPC sessions."""
        self._drop_prefetch()
        self._prefetcher.shutdown(wait=True)
        self._prefetch_rpc.close()

    def _take_prefetch(self, cursor: int) -> _Batch | None:
        future, self._prefetch = self._prefetch, None
        if future is None:
            return None
        try:
            batch = future.result()
        except AuditorError as exc:
            log.info("prefetch failed (%s); reading again", exc)
            return None
        return batch if batch.first == cursor else None

    def _drop_prefetch(self) -> None:
        future, self._prefetch = self._prefetch, None
        if future is not None:
            future.cancel()
            with contextlib.suppress(BaseException):
                future.result()

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

    def _read(self, rpc: RpcClient, first: int, last: int) -> _Batch:
        """Read and check everything blocks ``[first, last]`` need (or a prefix of them,
        so that at most ``max_txs`` raw transactions are held)."""
        tx_order: dict[bytes, tuple[int, int]] = {}
        if self.config.scan_failed_proofs:
            headers: dict[int, Header] = {}
            stop, n, size = last, first, FIRST_SCAN_CHUNK
            while n <= stop:
                # Small first requests, doubling while the blocks are light: full blocks
                # reach the transaction budget after a few, and are not fetched twice.
                chunk = rpc.blocks(range(n, min(n + size, stop + 1)))
                size = min(2 * size, rpc.config.batch_size)
                for number in sorted(chunk):
                    header, hashes = chunk[number]
                    headers[number] = header
                    for position, h in enumerate(hashes):
                        tx_order[h] = (number, position)
                    if len(tx_order) >= self.config.max_txs and number < stop:
                        stop = number
                        break
                n += len(chunk)
            last = stop
            raw_logs = rpc.logs(self.market, first, last)
        else:
            raw_logs = rpc.logs(self.market, first, last)
            proofs_seen = 0
            for entry in raw_logs:
                if entry.topics[:1] == (self._proof_topic,):
                    proofs_seen += 1
                    if proofs_seen >= self.config.max_txs and entry.block_number < last:
                        last = entry.block_number
            raw_logs = [e for e in raw_logs if e.block_number <= last]
            headers = rpc.headers({e.block_number for e in raw_logs} | {first, last})
        for entry in raw_logs:
            if headers[entry.block_number].hash != entry.block_hash:
                raise ReorgDetected(f"block {entry.block_number} changed while being read")
        if self.config.verify_logs:
            self._check_logs(rpc, raw_logs, headers)
        logs = [(entry, self.decoder.decode(entry)) for entry in raw_logs]
        proof_txs = {e.tx_hash for e, ev in logs if isinstance(ev, ProofSubmitted)}
        raws = rpc.raw_transactions(list(tx_order) if tx_order else list(proof_txs))
        failed = self._failed_candidates(raws, proof_txs, tx_order)
        receipts = rpc.receipts([h for _, h in failed]) if failed else {}
        blocks = {e.block_number for e, ev in logs if isinstance(ev, ProofSubmitted)}
        seeds = {self.schedule.seed_block(self.schedule.period_of(n)) for n in blocks}
        seeds |= {self.schedule.seed_block(self.schedule.period_of(n)) for n, _ in failed}
        headers.update(rpc.headers(seeds - headers.keys()))
        return _Batch(first, last, logs, headers, tx_order, raws, failed, receipts)

    def _check_logs(
        self, rpc: RpcClient, raw_logs: list[RawLog], headers: dict[int, Header]
    ) -> None:
        """The market's logs of each block are exactly those its receipts root commits to."""
        by_block: dict[int, list[RawLog]] = {}
        for entry in raw_logs:
            by_block.setdefault(entry.block_number, []).append(entry)
        for number, replies in rpc.block_receipts(by_block).items():
            receipts = [parse_receipt(r) for r in replies]
            if receipts_root(receipts) != headers[number].receipts_root:
                raise RpcGarbage(f"the receipts of block {number} do not match its header")
            committed = []
            log_index = 0
            for receipt in receipts:
                for item in receipt.logs:
                    if item.address == self.market:
                        committed.append((log_index, receipt.tx_hash, item.topics, item.data))
                    log_index += 1
            served = [(e.log_index, e.tx_hash, e.topics, e.data) for e in by_block[number]]
            if served != committed:
                raise RpcGarbage(f"the logs of block {number} are not the ones its receipts hold")

    def _process(self, batch: _Batch, head: int) -> RangeIndexed:
        """Judge and write one batch read by ``_read``."""
        with self.engine.connect() as conn:
            parent = conn.execute(
                select(db.blocks.c.hash).where(db.blocks.c.number == batch.first - 1)
            ).scalar_one_or_none()
        first_header = batch.headers.get(batch.first)
        if (
            parent is not None
            and first_header is not None
            and "0x" + first_header.parent_hash.hex() != parent
        ):
            raise ReorgDetected(f"block {batch.first} does not extend the indexed chain")
        pending = _Pending()
        books = self.books
        # One stream in chain order: events by (block, transaction, log); a reverted proof
        # transaction, which logged nothing, at its own place in its block.
        items: list[tuple[tuple[int, int, int], RawLog | bytes, LedgerEvent | None]] = []
        for entry, event in batch.logs:
            position = batch.tx_order.get(entry.tx_hash, (entry.block_number, 0))[1]
            items.append(((entry.block_number, position, entry.log_index), entry, event))
        for number, h in batch.failed:
            items.append(((number, batch.tx_order[h][1], -1), h, None))
        items.sort(key=lambda item: item[0])
        for (number, _, _), what, event in items:
            if isinstance(what, bytes):
                self._judge_failed(what, number, batch, pending)
                continue
            if event is None:
                continue
            pending.events.append(_event_row(what, event))
            if isinstance(event, ProofSubmitted):
                self._judge_accepted(what, event, batch, pending)
            _apply(books, self._proven, type(event).__name__, _event_data(event))
        self._write(batch.first, batch.last, batch.headers, pending)
        return RangeIndexed(
            batch.first,
            batch.last,
            head,
            len(pending.events),
            tuple(pending.proofs),
            tuple(pending.alarms),
        )

    def _failed_candidates(
        self, raws: dict[bytes, bytes], accepted: set[bytes], tx_order: dict[bytes, tuple[int, int]]
    ) -> list[tuple[int, bytes]]:
        """(block, tx hash) of direct ``submit_proof`` calls to the market with no event."""
        out = []
        for h, (number, _) in tx_order.items():
            if h in accepted:
                continue
            try:
                call = tx_call(raws[h])
            except MalformedProof:
                continue  # not a transaction we can read: not ours to judge
            if call.to == self.market and call.data[:4] == self.selector:
                out.append((number, h))
        return out

    # -- judging -------------------------------------------------------------------------

    def _verdict(
        self, provider: str, block: int, headers: dict[int, Header], raw: bytes
    ) -> tuple[Verdict, int]:
        """The auditor's verdict on a proof mined in ``block``, and the epoch it judged in."""
        period = self.schedule.period_of(block)
        book = self.books.get(provider, ProviderBook())
        index = book.slot_index(book.epoch, period)
        if block == self.schedule.seed_block(period):
            return Verdict(
                False, "sent in the seed block, before the window", index.total
            ), book.epoch
        try:
            call = tx_call(raw)
            if call.to != self.market:
                reason = "unverifiable: the transaction calls the market through a contract"
                return Verdict(False, reason, index.total, checked=False), book.epoch
            proof = decode_submit_proof(call.data, self.selector)
        except MalformedProof as exc:
            return Verdict(False, f"malformed: {exc}", index.total), book.epoch
        seed = headers[self.schedule.seed_block(period)].hash
        verdict = check_proof(
            seed=seed,
            provider=provider,
            period=period,
            index=index,
            challenges=self.challenges,
            call=proof,
        )
        return verdict, book.epoch

    def _judge_accepted(
        self, entry: RawLog, event: ProofSubmitted, batch: _Batch, pending: _Pending
    ) -> None:
        block = entry.block_number
        period = self.schedule.period_of(block)
        verdict, epoch = self._verdict(
            event.provider, block, batch.headers, batch.raws[entry.tx_hash]
        )
        pending.proofs.append(
            ProofChecked(
                event.tx_hash, block, event.provider, period, True, verdict, event.live_leaves
            )
        )
        seed = batch.headers[self.schedule.seed_block(period)].hash
        checks = (
            (
                verdict.valid or not verdict.checked,
                "verdict",
                f"the chain accepted a proof the auditor rejects: {verdict.reason}",
            ),
            (verdict.checked, "unverifiable", verdict.reason),
            (
                event.period == period,
                "period",
                f"event says period {event.period}, its block is in {period}",
            ),
            (
                event.seed == seed,
                "seed",
                f"event seed {event.seed.hex()[:16]} is not block hash {seed.hex()[:16]}",
            ),
            (
                event.live_leaves == verdict.live_leaves,
                "live_leaves",
                f"event {event.live_leaves}, auditor {verdict.live_leaves}",
            ),
            (event.epoch == epoch, "epoch", f"event epoch {event.epoch}, auditor {epoch}"),
        )
        for ok, kind, detail in checks:
            if not ok:
                self._alarm(
                    pending, Alarm(kind, block, event.tx_hash, event.provider, period, detail)
                )

    def _judge_failed(self, h: bytes, block: int, batch: _Batch, pending: _Pending) -> None:
        receipt = batch.receipts[h]
        if receipt.status != 0:
            raise RpcGarbage(f"transaction {h.hex()[:16]} succeeded but logged no proof")
        provider = Web3.to_checksum_address(receipt.sender)
        period = self.schedule.period_of(block)
        tx_hash = "0x" + h.hex()
        verdict, _ = self._verdict(provider, block, batch.headers, batch.raws[h])
        pending.proofs.append(ProofChecked(tx_hash, block, provider, period, False, verdict, None))
        # A valid proof may still revert for reasons outside its content: out of gas, or the
        # period was proven already.
        out_of_gas = receipt.gas_used >= tx_call(batch.raws[h]).gas
        if verdict.valid and not out_of_gas and (provider, period) not in self._proven:
            detail = "the chain rejected a proof the auditor accepts"
            self._alarm(pending, Alarm("verdict", block, tx_hash, provider, period, detail))

    @staticmethod
    def _alarm(pending: _Pending, alarm: Alarm) -> None:
        pending.alarms.append(alarm)
        log.error(
            "ALARM kind=%s provider=%s period=%d tx=%s %s",
            alarm.kind,
            alarm.provider,
            alarm.period,
            alarm.tx_hash,
            alarm.detail,
        )

    # -- writing -------------------------------------------------------------------------

    def _write(self, first: int, last: int, headers: dict[int, Header], pending: _Pending) -> None:
        keep = {r["block_number"] for r in pending.events} | {last}
        block_rows = [
            {"number": n, "hash": "0x" + headers[n].hash.hex()}
            for n in sorted(keep)
            if first <= n <= last
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
        books.setdefault(data["provider"], ProviderBook()).terminate(
            data["epoch"], data["end_period"]
        )
    elif kind == "ProofSubmitted":
        proven.add((data["provider"], data["period"]))
