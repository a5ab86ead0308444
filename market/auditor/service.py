"""
``auditor run``: the daemon. One asyncio loop drives four loops and the HTTP server:

- indexer: ``Indexer.step`` until caught up, then every ``poll_interval``; an RPC failure
  backs off exponentially (the database keeps its last good state);
- bounties: ``BountyHunter.step`` after each indexer pass;
- retrieval: ``RetrievalChecker.round`` every ``retrieval.interval``;
- report: ``reputation.json`` and ``report.html`` rewritten every ``report_interval``;
- HTTP: the FastAPI app (``api``) on ``config.api`` with uvicorn.

Chain and database work is blocking; it runs on one worker thread, so that the indexer's
in-memory books are never read while they change. SIGTERM/SIGINT cancel every task, close
the transport and the HTTP server, and dispose of the database engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import uvicorn
from sqlalchemy import Engine

from contracts.chain import LedgerClient
from contracts.deployment import Deployment
from contracts.errors import LocalError as LedgerLocalError
from contracts.offers import ASKS_KEY
from market.auditor.api import ApiState, create_app
from market.auditor.bounty import BountyHunter, Claim
from market.auditor.config import AuditorConfig, parse_hostport
from market.auditor.errors import LocalError
from market.auditor.indexer import Indexer, RangeIndexed
from market.auditor.report import write_report
from market.auditor.reputation import build_reputation
from market.auditor.retrieval import AddressBook, RetrievalChecker, RetrievalResult
from node.errors import NodeError
from node.identity import NodeKey
from node.kademlia.service import KademliaService, parse_peer
from node.metrics import Registry
from node.transport import Host

log = logging.getLogger("market.auditor")

T = TypeVar("T")
MAX_BACKOFF: Final = 60.0


class AuditorMetrics:
    """The auditor's Prometheus metrics."""

    def __init__(self, registry: Registry) -> None:
        self.events = registry.counter(
            "depot_auditor_events_indexed_total", "Market events indexed"
        )
        self.proofs = registry.counter(
            "depot_auditor_proofs_checked_total",
            "Proof transactions re-verified",
            ("chain", "auditor"),
        )
        self.alarms = registry.counter(
            "depot_auditor_alarms_total", "Disagreements with the chain", ("kind",)
        )
        self.reorgs = registry.counter("depot_auditor_reorgs_total", "Reorgs rolled back")
        self.rpc_errors = registry.counter(
            "depot_auditor_rpc_errors_total", "Indexer steps failed on the RPC"
        )
        self.indexed = registry.gauge("depot_auditor_indexed_block", "Last indexed block")
        self.head = registry.gauge("depot_auditor_head_block", "Chain head last seen")
        self.claims = registry.counter(
            "depot_auditor_claims_total", "Fault reports by outcome", ("status",)
        )
        self.bounties = registry.counter(
            "depot_auditor_bounty_tokens_total", "Bounties won, in whole tokens"
        )
        self.retrievals = registry.counter(
            "depot_auditor_retrievals_total", "Retrieval checks by outcome", ("outcome",)
        )
        self.retrieval_seconds = registry.histogram(
            "depot_auditor_retrieval_seconds", "Latency of successful retrieval checks"
        )

    def on_range(self, step: RangeIndexed) -> None:
        self.events.inc(step.events)
        self.head.set(step.head)
        if step.reorg_from is not None:
            self.reorgs.inc()
        else:
            self.indexed.set(step.last)
        for p in step.proofs:
            self.proofs.labels(
                chain="accepted" if p.chain_accepted else "rejected",
                auditor="valid" if p.verdict.valid else "invalid",
            ).inc()
        for a in step.alarms:
            self.alarms.labels(kind=a.kind).inc()

    def on_claims(self, claims: list[Claim]) -> None:
        for c in claims:
            self.claims.labels(status=c.status).inc()
            if c.status == "won":
                self.bounties.inc(c.bounty / 10**18)

    def on_retrievals(self, results: list[RetrievalResult]) -> None:
        for r in results:
            self.retrievals.labels(outcome=r.outcome).inc()
            if r.latency_ms is not None:
                self.retrieval_seconds.observe(r.latency_ms / 1000)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the daemon's handlers stop everything."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Auditor:
    """Everything ``auditor run`` runs, wired together."""

    config: AuditorConfig
    home: Path
    engine: Engine
    deployment: Deployment
    indexer: Indexer
    hunter: BountyHunter | None
    node_key: NodeKey
    ledger: LedgerClient
    registry: Registry = field(default_factory=Registry)
    ready: Callable[[dict[str, Any]], None] = lambda info: None
    """Called once the API answers, with where everything listens."""

    def __post_init__(self) -> None:
        self.metrics = AuditorMetrics(self.registry)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auditor-chain")
        self._head: int | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()

    async def _blocking(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn)

    # -- loops -----------------------------------------------------------------------

    async def _index_loop(self) -> None:
        backoff = self.config.poll_interval
        while True:
            try:
                step = await self._blocking(self._index_and_hunt)
                backoff = self.config.poll_interval
                if step.idle:
                    await asyncio.sleep(self.config.poll_interval)
            except (LocalError, LedgerLocalError):
                raise  # ours to fix: stop the daemon with the error
            except Exception as exc:  # the chain or its RPC node: back off and try again
                self.metrics.rpc_errors.inc()
                log.warning(
                    "indexer step failed error=%s %s retry_in=%.1fs",
                    type(exc).__name__,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _index_and_hunt(self) -> RangeIndexed:
        step = self.indexer.step()
        self._head = step.head
        self.metrics.on_range(step)
        if step.events or step.proofs:
            log.info(
                "indexed blocks=%d-%d events=%d proofs=%d alarms=%d",
                step.first,
                step.last,
                step.events,
                len(step.proofs),
                len(step.alarms),
            )
        if self.hunter is not None:
            self.metrics.on_claims(self.hunter.step())
        return step

    async def _retrieval_loop(self, checker: RetrievalChecker, dht: KademliaService | None) -> None:
        while True:
            await asyncio.sleep(self.config.retrieval.interval)
            if dht is not None:
                try:
                    found = await dht.get_providers(ASKS_KEY)
                except NodeError as exc:
                    log.info("dht lookup of asks failed: %s", exc)
                else:
                    for record in found.records:
                        checker.addresses.dht[record.node_id] = [
                            (a.host, a.port) for a in record.addrs
                        ]
            head = self._head
            if head is None:
                continue
            period = self.deployment.schedule.period_of(head)
            # The books belong to the chain worker thread: read them there.
            live = await self._blocking(lambda p=period: checker.live_deals(p))  # type: ignore[misc]
            results = await checker.round(period, live)
            self.metrics.on_retrievals(results)

    async def _report_loop(self) -> None:
        while True:
            await self.write_report()
            await asyncio.sleep(self.config.report_interval)

    async def write_report(self) -> tuple[Path, Path]:
        doc = await self._blocking(lambda: build_reputation(self.engine, self.deployment))
        return await self._blocking(lambda: write_report(self.home / "report", doc))

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or ``stop``)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        host = Host(self.node_key, registry=self.registry)
        listen = parse_hostport(self.config.listen, "listen")
        await host.listen(*listen)
        dht: KademliaService | None = None
        if self.config.bootstrap:
            dht = KademliaService(host, advertise=[])
            await dht.start([parse_peer(p) for p in self.config.bootstrap])
        state = ApiState(self.engine, self.deployment, self.registry, head=lambda: self._head)
        api_host, api_port = parse_hostport(self.config.api, "api")
        server = _QuietServer(
            uvicorn.Config(
                create_app(state), host=api_host, port=api_port, log_level="warning", lifespan="off"
            )
        )
        checker = RetrievalChecker(
            self.engine, host, self.indexer, AddressBook(self.engine), config=self.config.retrieval
        )
        self._spawn(server.serve(), "api")
        self._spawn(self._index_loop(), "indexer")
        self._spawn(self._report_loop(), "report")
        if self.config.retrieval.enabled:
            self._spawn(self._retrieval_loop(checker, dht), "retrieval")
        try:
            while not server.started:
                if any(t.done() for t in self._tasks):
                    break
                await asyncio.sleep(0.05)
            for task in self._tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            port = server.servers[0].sockets[0].getsockname()[1] if server.servers else api_port
            self.ready(
                {
                    "api": f"http://{api_host}:{port}",
                    "p2p": "{}@{}:{}".format(self.node_key.node_id.hex(), *host.listen_addrs[0]),
                    "account": self.ledger.address if self.hunter is not None else None,
                    "market": self.deployment.market,
                }
            )
            stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait([stop, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            for task in self._tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            log.info("auditor stopping")
            server.should_exit = True
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if dht is not None:
                await dht.close()
            await host.close()
            self._worker.shutdown(wait=True)
            self.indexer.close()
            self.engine.dispose()

    def stop(self) -> None:
        self._stop.set()

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)
