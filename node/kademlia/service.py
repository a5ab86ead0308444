"""
The asyncio adapter of the Kademlia core over ``node.transport`` (stream protocol
``/depot/kad/1``, one request and one reply per stream).

It only pumps: requests the core wants sent become ``Host.request`` tasks (kept, cancelled
on ``close``), peers' requests are decoded and answered by the core, the core's timer is
one ``loop.call_at`` handle, and the core's events resolve the futures of the application's
calls. ``now`` is wall-clock Unix time (records carry absolute expiries).

    service = KademliaService(host, KademliaConfig(), policy=staked, table_path=home / "kad")
    await service.start(bootstrap=[parse_peer("<hex id>@203.0.113.7:4001")])
    await service.provide(ASKS_KEY, ask_bytes)
    asks = await service.get_providers(ASKS_KEY)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from node.errors import (
    BadSignature,
    DecodeError,
    FrameTooLarge,
    LocalError,
    NodeError,
    ProtocolViolation,
    RemoteError,
)
from node.identity import parse_peer_id, peer_short
from node.kademlia.config import KademliaConfig
from node.kademlia.core import KademliaNode, OutboundRequest
from node.kademlia.events import LookupFinished, StoreFinished
from node.kademlia.messages import (
    PROTOCOL,
    REPLY_TYPE,
    STREAM_PROTOCOL,
    Address,
    Error,
    PeerInfo,
    Reply,
    Request,
)
from node.kademlia.records import RecordPolicy, allow_all, key_for_value
from node.kademlia.snapshot import SnapshotError, TableSnapshot, load_table, save_table
from node.metrics import Registry
from node.transport import Host, Stream

log = logging.getLogger(__name__)

_REQUEST_TYPES = tuple(REPLY_TYPE)
_REPLY_TYPES = (*REPLY_TYPE.values(), Error)
_UNSPECIFIED = ("0.0.0.0", "::")


def peer_info(node_id: bytes, addrs: Iterable[tuple[str, int]]) -> PeerInfo:
    """A contact from a node id and ``(host, port)`` pairs."""
    try:
        return PeerInfo(node_id, tuple(Address(h, p) for h, p in addrs))
    except ValueError as exc:
        raise LocalError(f"bad address: {exc}") from None


def parse_peer(text: str) -> PeerInfo:
    """Parse a bootstrap peer written ``<64 hex digits>@<ip>:<port>`` (``[v6]:port``)."""
    node_hex, sep, addr = text.partition("@")
    host, colon, port = addr.rpartition(":")
    if not sep or not colon or not port.isdigit():
        raise LocalError(f"a bootstrap peer is <node id hex>@<ip>:<port>, not {text!r}")
    return peer_info(parse_peer_id(node_hex), [(host.strip("[]"), int(port))])


class KademliaMetrics:
    """The DHT's metrics in the daemon's ``Registry``."""

    def __init__(self, registry: Registry) -> None:
        self.lookups = registry.counter(
            "depot_kad_lookups_total", "DHT lookups finished", ("kind", "result")
        )
        self.lookup_seconds = registry.histogram(
            "depot_kad_lookup_seconds",
            "DHT lookup duration",
            ("kind",),
            buckets=(0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8),
        )
        self.lookup_hops = registry.histogram(
            "depot_kad_lookup_hops",
            "Hops to the node that answered a DHT lookup",
            ("kind",),
            buckets=(1, 2, 3, 4, 5, 6, 8, 10),
        )
        self.table_size = registry.gauge("depot_kad_routing_table_contacts", "Contacts")
        self.table_buckets = registry.gauge("depot_kad_routing_table_buckets", "Non-empty")
        self.table_joins = registry.counter(
            "depot_kad_table_joins_total", "Contacts added to the routing table"
        )
        self.table_leaves = registry.counter(
            "depot_kad_table_leaves_total", "Contacts evicted from the routing table"
        )
        self.connected = registry.gauge("depot_kad_connected_peers", "Connected peers")
        self.records = registry.gauge("depot_kad_records_stored", "Provider records stored")
        self.values = registry.gauge("depot_kad_values_stored", "Values stored")
        self.store_bytes = registry.gauge("depot_kad_store_bytes", "Bytes of records and values")
        self.rpcs_sent = registry.counter("depot_kad_requests_sent_total", "Requests sent")
        self.rpcs_failed = registry.counter("depot_kad_requests_failed_total", "Requests failed")
        self.served = registry.counter("depot_kad_requests_served_total", "Requests answered")
        self.dropped = registry.counter(
            "depot_kad_dropped_total", "Bad input from peers, dropped", ("reason",)
        )


class KademliaService:
    """
    A DHT node on a ``Host``.

    Parameters
    ----------
    host :
        The transport; must be listening before ``start`` unless ``advertise`` is given.
    config :
        The Kademlia parameters.
    policy :
        Accepts or refuses record signers (``records.RecordPolicy``; synchronous).
    table_path :
        Where the routing table is saved (on ``close`` and every maintenance interval)
        and reloaded from on ``start``.
    advertise :
        The addresses told to peers. Default: the host's listen addresses (an unspecified
        address such as 0.0.0.0 is not dialable and must be replaced by this). Empty:
        client mode (we ask, we are never added to tables, we cannot provide).
    """

    def __init__(
        self,
        host: Host,
        config: KademliaConfig | None = None,
        *,
        policy: RecordPolicy = allow_all,
        table_path: str | Path | None = None,
        advertise: Sequence[tuple[str, int]] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.host = host
        self.config = config or KademliaConfig()
        self.policy = policy
        self.table_path = Path(table_path) if table_path is not None else None
        self._advertise = advertise
        self.clock = clock
        self.rng = rng or random.Random()
        self.metrics = KademliaMetrics(host.registry)
        self._core: KademliaNode | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._last_save = 0.0
        self._bootstrap_peers: tuple[PeerInfo, ...] = ()
        self._closed = False

    @property
    def core(self) -> KademliaNode:
        if self._core is None:
            raise LocalError("KademliaService.start() has not been called")
        return self._core

    @property
    def peer(self) -> PeerInfo:
        """Our own contact, as others should store it."""
        return PeerInfo(self.core.node_id, self.core.addrs)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, bootstrap: Sequence[PeerInfo] = ()) -> None:
        """Serve ``/depot/kad/1``, reload the saved table, and join through ``bootstrap``."""
        if self._core is not None:
            raise LocalError("already started")
        addrs = self._advertise
        if addrs is None:
            addrs = [(h, p) for h, p in self.host.listen_addrs if h not in _UNSPECIFIED]
        now = self.clock()
        self._core = KademliaNode(
            self.host.node_id,
            peer_info(self.host.node_id, addrs).addrs,
            self.config,
            self.rng,
            now,
            key=self.host.key,
            policy=self.policy,
        )
        self.host.set_handler(STREAM_PROTOCOL, self._serve)
        self._bootstrap_peers = tuple(bootstrap)
        self._load()
        if bootstrap or len(self.core.table):
            await self.bootstrap(bootstrap)
        self._pump()

    async def bootstrap(self, peers: Sequence[PeerInfo]) -> int:
        """Join (again) through ``peers`` and our table; returns the table size after."""
        await self._wait(self.core.bootstrap(peers, self.clock()))
        return len(self.core.table)

    async def close(self) -> None:
        """Save the table, stop serving, cancel every task and timer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.host.remove_handler(STREAM_PROTOCOL)
        if self._timer is not None:
            self._timer.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for fut in self._waiters.values():
            if not fut.done():
                fut.cancel()
        if self._core is not None:
            self.save_table()

    # --- the application's calls --------------------------------------------------------

    async def find_node(self, target: bytes) -> LookupFinished:
        """The k closest nodes to ``target`` that answered."""
        event = await self._wait(self.core.find_node(target, self.clock()))
        return cast(LookupFinished, event)

    async def get_providers(self, key: bytes, want: int | None = None) -> LookupFinished:
        """
        Verified, policy-accepted provider records for ``key`` (``.records``), looked up
        over disjoint paths; stops after ``want`` providers (``None``: full lookup).
        """
        event = await self._wait(self.core.get_providers(key, self.clock(), want))
        return cast(LookupFinished, event)

    async def get_value(self, key: bytes) -> bytes | None:
        """The value stored under ``key`` (checked: it hashes to ``key``), or ``None``."""
        event = cast(LookupFinished, await self._wait(self.core.get_value(key, self.clock())))
        return event.value

    async def provide(self, key: bytes, payload: bytes = b"") -> StoreFinished:
        """Sign and store our record for ``key``; republished until ``stop_providing``."""
        event = await self._wait(self.core.provide(key, payload, self.clock()))
        return cast(StoreFinished, event)

    def stop_providing(self, key: bytes) -> None:
        self.core.stop_providing(key)

    async def put_value(self, value: bytes, ttl: float | None = None) -> bytes:
        """Store ``value`` at the k closest nodes of ``sha256(value)``; returns that key."""
        event = cast(StoreFinished, await self._wait(self.core.put_value(value, self.clock(), ttl)))
        if not event.stored:
            raise LocalError("no node accepted the value")
        return key_for_value(value)

    # --- persistence and metrics --------------------------------------------------------

    def save_table(self) -> None:
        """Write the routing table to ``table_path`` (atomically)."""
        if self.table_path is None:
            return
        snapshot = TableSnapshot(int(self.clock()), tuple(self.core.table.contacts()))
        try:
            save_table(self.table_path, snapshot)
        except OSError as exc:
            log.warning("kad: cannot save routing table to %s: %s", self.table_path, exc)

    def update_metrics(self) -> None:
        """Bring the registry's gauges and counters up to date (call before a scrape)."""
        core, m = self.core, self.metrics
        table, store, stats = core.table, core.store, core.stats
        m.table_size.set(len(table))
        m.table_buckets.set(len(table.fill()))
        _catch_up(m.table_joins.labels(), table.added)
        _catch_up(m.table_leaves.labels(), table.removed)
        m.connected.set(len(self.host.connected_peers()))
        m.records.set(store.record_count)
        m.values.set(len(store.values))
        m.store_bytes.set(store.bytes)
        _catch_up(m.rpcs_sent.labels(), stats.rpcs_sent)
        _catch_up(m.rpcs_failed.labels(), stats.rpcs_failed)
        _catch_up(m.served.labels(), stats.requests_served)
        for reason, n in stats.dropped.items():
            _catch_up(m.dropped.labels(reason=reason), n)

    def _load(self) -> None:
        if self.table_path is None:
            return
        try:
            snapshot = load_table(self.table_path)
        except SnapshotError as exc:
            log.warning("kad: starting with an empty routing table: %s", exc)
            return
        if snapshot is not None:
            self.core.add_contacts(snapshot.contacts, self.clock())
            log.info("kad: reloaded %d contacts from %s", len(self.core.table), self.table_path)

    # --- pumping ------------------------------------------------------------------------

    async def _wait(self, op: int) -> object:
        """The event that ends operation ``op``."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[op] = fut
        try:
            self._pump()  # the event may already be queued
            return await fut
        finally:
            self._waiters.pop(op, None)

    def _pump(self) -> None:
        """Send what the core queued, deliver its events, re-arm its timer."""
        if self._closed or self._core is None:
            return
        core = self._core
        for req in core.requests_to_send():
            self._spawn(self._call(req), f"kad-rpc-{req.rpc_id}")
        for event in core.events():
            if isinstance(event, LookupFinished):
                kind = event.kind.value
                result = "ok" if event.ok else "fail"
                self.metrics.lookups.labels(kind=kind, result=result).inc()
                self.metrics.lookup_seconds.labels(kind=kind).observe(
                    event.finished - event.started
                )
                self.metrics.lookup_hops.labels(kind=kind).observe(event.hops)
            fut = self._waiters.get(event.op_id)
            if fut is not None and not fut.done():
                fut.set_result(event)
        deadline = core.get_timer()
        if self._timer is None or deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            delay = max(0.0, deadline - self.clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.clock()
        core = self.core
        core.handle_timer(now)
        if now - self._last_save >= self.config.maintenance_interval:
            self._last_save = now
            self.save_table()
            if not len(core.table) and self._bootstrap_peers:
                # Everyone we knew is gone (or the bootstrap never answered): join again.
                log.info("kad: routing table empty, bootstrapping again")
                core.bootstrap(self._bootstrap_peers, now)
        self._pump()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, req: OutboundRequest) -> None:
        core = self.core
        addrs = [(a.host, a.port) for a in req.peer.addrs]
        timeout = max(0.001, req.deadline - self.clock())
        try:
            reply = await self.host.request(
                req.peer.node_id, addrs, STREAM_PROTOCOL, req.message, timeout
            )
        except (DecodeError, FrameTooLarge, ProtocolViolation, BadSignature) as exc:
            core.note_bad_input(req.peer.node_id, exc)  # garbage: counted and logged
            core.handle_failure(req.rpc_id, self.clock())
        except (NodeError, OSError) as exc:  # timeout, refused, reset, closed, wrong id
            log.debug("kad: request to %s failed: %s", peer_short(req.peer.node_id), exc)
            core.handle_failure(req.rpc_id, self.clock())
        else:
            if isinstance(reply, _REPLY_TYPES):
                core.handle_reply(req.rpc_id, cast(Reply, reply), self.clock())
            else:
                core.stats.drop("not a kad reply")
                core.handle_failure(req.rpc_id, self.clock())
        self._pump()

    async def _serve(self, stream: Stream) -> None:
        core = self.core
        try:
            async with asyncio.timeout(self.config.rpc_timeout):
                msg = await stream.recv_msg(PROTOCOL)
        except TimeoutError:
            core.stats.drop("request timeout")
            stream.reset("no request in time")
            return
        except RemoteError as exc:
            core.note_bad_input(stream.peer_id, exc)
            await stream.send_msg(Error(type(exc).__name__))
            return
        if isinstance(msg, _REQUEST_TYPES):
            reply: Reply = core.handle_request(stream.peer_id, cast(Request, msg), self.clock())
        else:
            core.stats.drop("not a kad request")
            reply = Error("not a request")
        self._pump()
        await stream.send_msg(reply)


def _catch_up(counter: Any, total: float) -> None:
    delta = total - counter.value
    if delta > 0:
        counter.inc(delta)
