"""
The Kademlia protocol node, sans-I/O (Maymounkov & Mazières 2002; S/Kademlia 2007).

Messages and ``now`` (Unix seconds) go in; requests to send, events and a timer deadline
come out. No sockets, no clock, no tasks; randomness comes from the ``rng`` passed in. The
asyncio adapter (``service.py``) and the simulator (``node.sim``) drive the same class:

    node = KademliaNode(node_id, addrs, config, rng, now=now)
    op = node.get_providers(key, now)            # commands return an operation id
    for req in node.requests_to_send(): ...      # send req.message to req.peer
    node.handle_reply(req.rpc_id, reply, now)    # or handle_failure(req.rpc_id, now)
    reply = node.handle_request(peer_id, request, now)   # a peer asked us
    node.handle_timer(now) when now >= node.get_timer()
    for event in node.events(): ...              # LookupFinished, StoreFinished

Timeouts belong to the core: the adapter may also give up on a request (connection refused)
and say so with ``handle_failure``; replies or failures for unknown ids are ignored.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from node.errors import LocalError, RemoteError
from node.identity import NodeKey, peer_short
from node.kademlia.config import KademliaConfig
from node.kademlia.events import Event, LookupFinished, StoreFinished
from node.kademlia.lookup import Candidate, Lookup, LookupKind
from node.kademlia.messages import (
    ID_LEN,
    MAX_ADDRS,
    MAX_PAYLOAD,
    MAX_REASON,
    MAX_VALUE,
    REPLY_TYPE,
    AddProvider,
    Address,
    Error,
    FindNode,
    GetProviders,
    GetValue,
    Nodes,
    PeerInfo,
    Ping,
    Pong,
    ProviderRecord,
    Providers,
    PutValue,
    Reply,
    Request,
    Stored,
    Value,
)
from node.kademlia.records import (
    RecordError,
    RecordPolicy,
    allow_all,
    key_for_value,
    sign_record,
    verify_record,
)
from node.kademlia.routing import ID_BITS, RoutingTable, Seen, bucket_index, id_int
from node.kademlia.stats import KademliaStats
from node.kademlia.storage import RecordStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """A request the adapter must deliver to ``peer`` and answer with ``handle_reply``."""

    rpc_id: int
    peer: PeerInfo
    message: Request
    deadline: float
    """The core counts the request failed at this time; the adapter may use it as timeout."""


class _Purpose(Enum):
    LOOKUP = 0
    PING = 1
    STORE = 2


@dataclass(slots=True)
class _Pending:
    peer: PeerInfo
    message: Request
    purpose: _Purpose
    sent: float
    op_id: int = 0
    candidate: Candidate | None = None


@dataclass(slots=True)
class _StoreOp:
    op_id: int
    key: bytes
    message: Request
    internal: bool
    stored: int = 0
    attempted: int = 0
    outstanding: int = 0
    local: bool = False
    """Whether we stored it ourselves (counted in ``stored``)."""


@dataclass(slots=True)
class _Provided:
    payload: bytes
    seq: int
    republish_at: float


_STALL = 0
_DEADLINE = 1
_NO_RECORDS: tuple[ProviderRecord, ...] = ()


class KademliaNode:
    """
    One Kademlia node: routing table, record store, lookups and maintenance.

    Parameters
    ----------
    node_id :
        Our id, ``sha256(public key)``; must match ``key`` if one is given.
    addrs :
        The addresses we accept connections on, told to every peer we ask (empty: client
        mode, we are never added to others' tables).
    config :
        All parameters.
    rng :
        Source of randomness (refresh targets, samples, jitter); seeded in simulations.
    now :
        Current Unix time.
    key :
        Our identity key, needed to sign provider records (``provide``).
    policy :
        Decides which signers' records we accept (see ``records.RecordPolicy``).
    """

    def __init__(
        self,
        node_id: bytes,
        addrs: tuple[Address, ...],
        config: KademliaConfig,
        rng: random.Random,
        now: float,
        *,
        key: NodeKey | None = None,
        policy: RecordPolicy = allow_all,
    ) -> None:
        if len(node_id) != ID_LEN:
            raise LocalError(f"a node id has {ID_LEN} bytes")
        if key is not None and key.node_id != node_id:
            raise LocalError("node id does not match the key")
        if len(addrs) > MAX_ADDRS:
            raise LocalError(f"at most {MAX_ADDRS} addresses")
        self.node_id = node_id
        self.addrs = addrs
        self.config = config
        self.rng = rng
        self.key = key
        self.policy = policy
        self.table = RoutingTable(node_id, config)
        self.store = RecordStore(config)
        self.stats = KademliaStats()
        self._next_id = 1
        self._pending: dict[int, _Pending] = {}
        self._timers: list[tuple[float, int, int]] = []
        self._outbox: list[OutboundRequest] = []
        self._events: list[Event] = []
        self._lookups: dict[int, Lookup] = {}
        self._stores: dict[int, _StoreOp] = {}
        self._joins: set[int] = set()
        """Self-lookups of a join: bucket refreshes follow them."""
        self._provided: dict[bytes, _Provided] = {}
        self._last_seq = 0
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._next_maintenance = now + config.maintenance_interval * rng.random()

    # --- commands -----------------------------------------------------------------------

    def bootstrap(self, peers: Iterable[PeerInfo], now: float) -> int:
        """
        Join the network through ``peers`` (section 2.3): look up our own id, seeded with
        them and our table; once that converges, refresh every bucket farther away than our
        closest neighbour. Returns the operation id of the self-lookup (``LookupFinished``).
        """
        op = self._start_lookup(LookupKind.FIND_NODE, self.node_id, now, extra_seeds=list(peers))
        self._joins.add(op)
        self._finish_if_done(op, now)
        return op

    def find_node(self, target: bytes, now: float) -> int:
        """Look up the k closest nodes to ``target``; reported by ``LookupFinished``."""
        op = self._start_lookup(LookupKind.FIND_NODE, _check_id(target), now)
        self._finish_if_done(op, now)
        return op

    def get_providers(self, key: bytes, now: float, want: int | None = None) -> int:
        """
        Find provider records for ``key`` over ``config.disjoint_paths`` disjoint paths.
        Stops once ``want`` providers are known (``None``: when the paths converge).
        """
        op = self._start_lookup(
            LookupKind.GET_PROVIDERS,
            _check_id(key),
            now,
            paths=self.config.disjoint_paths,
            want=want,
        )
        lookup = self._lookups[op]
        local = self._verified(self.store.get_records(key, now, self._reply_cap(), self.rng), now)
        if local:
            lookup.records.update((r.node_id, r) for r in local)
        self._finish_if_done(op, now)
        return op

    def get_value(self, key: bytes, now: float) -> int:
        """Find the value stored under ``key`` (over disjoint paths; stops at the first)."""
        op = self._start_lookup(
            LookupKind.GET_VALUE, _check_id(key), now, paths=self.config.disjoint_paths
        )
        stored = self.store.get_value(key, now)
        if stored is not None:
            lookup = self._lookups[op]
            lookup.value, lookup.value_expiry = stored.value, int(stored.expiry)
        self._finish_if_done(op, now)
        return op

    def provide(self, key: bytes, payload: bytes, now: float) -> int:
        """
        Announce that we provide ``key`` (with an opaque ``payload``, e.g. our ask): sign a
        record, store it at the k closest nodes, and republish it every
        ``republish_interval`` until ``stop_providing``. Reported by ``StoreFinished``.
        """
        _check_id(key)
        if self.key is None:
            raise LocalError("providing needs the node key")
        if len(payload) > MAX_PAYLOAD:
            raise LocalError(f"payload above {MAX_PAYLOAD} bytes")
        if not self.addrs:
            raise LocalError("a node in client mode cannot provide")
        seq = self._new_seq(now)
        self._provided[key] = _Provided(payload, seq, now + self.config.republish_interval)
        return self._publish(key, payload, seq, now, internal=False)

    def stop_providing(self, key: bytes) -> None:
        """Stop republishing our record for ``key`` (it expires where it is stored)."""
        self._provided.pop(key, None)

    def put_value(self, value: bytes, now: float, ttl: float | None = None) -> int:
        """Store ``value`` under ``sha256(value)`` at the k closest nodes (``StoreFinished``)."""
        if len(value) > MAX_VALUE:
            raise LocalError(f"values are at most {MAX_VALUE} bytes")
        ttl = self.config.max_record_ttl if ttl is None else ttl
        if not 0 < ttl <= self.config.max_record_ttl:
            raise LocalError("ttl out of range")
        expiry = int(now + ttl)
        key = key_for_value(value)
        local = self.store.put_value(key, value, expiry, now).ok
        return self._start_store(key, PutValue(self.addrs, value, expiry), now, False, local)

    def add_contacts(self, peers: Iterable[PeerInfo], now: float) -> None:
        """Insert contacts into the table without asking them (a reloaded table)."""
        for peer in peers:
            self.table.seen(peer, now)

    # --- inputs -------------------------------------------------------------------------

    def handle_request(self, peer_id: bytes, msg: Request, now: float) -> Reply:
        """
        Answer a request from ``peer_id`` (authenticated by the transport). Never raises
        for anything the peer sent: bad requests are answered with ``Error`` and counted.
        """
        self.stats.requests_served += 1
        sender = getattr(msg, "sender", None)
        if sender is None or peer_id == self.node_id:
            self.stats.drop("unknown request")
            return Error("unknown request")
        if sender:
            self._seen(PeerInfo(peer_id, sender), now)
        if isinstance(msg, FindNode):
            return Nodes(self._closer(msg.target, peer_id))
        if isinstance(msg, GetProviders):
            records = self.store.get_records(msg.key, now, self._reply_cap(), self.rng)
            return Providers(tuple(records), self._closer(msg.key, peer_id))
        if isinstance(msg, GetValue):
            stored = self.store.get_value(msg.key, now)
            if stored is not None:
                return Value(stored.value, int(stored.expiry), ())
            return Value(None, 0, self._closer(msg.key, peer_id))
        if isinstance(msg, AddProvider):
            return self._accept_record(peer_id, msg.record, now)
        if isinstance(msg, PutValue):
            return self._accept_value(msg, now)
        return Pong()

    def handle_reply(self, rpc_id: int, reply: Reply, now: float) -> None:
        """The reply to request ``rpc_id`` arrived."""
        pending = self._pending.pop(rpc_id, None)
        if pending is None:
            return
        if type(reply) is not REPLY_TYPE[type(pending.message)]:
            if not isinstance(reply, Error):
                self.stats.drop("wrong reply type")
            self._fail(pending, now)
            return
        self._sample_rtt(now - pending.sent)
        self._seen(pending.peer, now)
        if pending.purpose is _Purpose.LOOKUP:
            self._lookup_reply(pending, reply, now)
        elif pending.purpose is _Purpose.PING:
            self.table.ping_answered(pending.peer.node_id)
        else:
            assert isinstance(reply, Stored)
            self._store_reply(pending.op_id, reply.ok, now)

    def handle_failure(self, rpc_id: int, now: float) -> None:
        """Request ``rpc_id`` failed (no connection, reset, undecodable reply)."""
        pending = self._pending.pop(rpc_id, None)
        if pending is not None:
            self._fail(pending, now)

    def note_bad_input(self, peer_id: bytes | None, error: RemoteError) -> None:
        """The adapter dropped something undecodable from a peer: count and log it."""
        reason = type(error).__name__
        self.stats.drop(reason)
        log.info("kad: dropped input from %s: %s: %s", peer_short(peer_id), reason, error)

    def handle_timer(self, now: float) -> None:
        """Fire due stall and request timeouts, and run maintenance when it is due."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, rpc_id, kind = heapq.heappop(timers)
            pending = self._pending.get(rpc_id)
            if pending is None:
                continue
            if kind == _DEADLINE:
                del self._pending[rpc_id]
                self._fail(pending, now)
            elif pending.candidate is not None:
                lookup = self._lookups.get(pending.op_id)
                if lookup is not None:
                    lookup.on_stall(pending.candidate)
                    self._advance(lookup, now)
        if now >= self._next_maintenance:
            self._next_maintenance = now + self.config.maintenance_interval
            self._maintain(now)

    def get_timer(self) -> float:
        """When ``handle_timer`` must next be called."""
        timers = self._timers
        while timers and timers[0][1] not in self._pending:
            heapq.heappop(timers)
        if timers and timers[0][0] < self._next_maintenance:
            return timers[0][0]
        return self._next_maintenance

    # --- outputs ------------------------------------------------------------------------

    def requests_to_send(self) -> list[OutboundRequest]:
        """Requests queued since the last call."""
        out, self._outbox = self._outbox, []
        return out

    def events(self) -> list[Event]:
        """Events since the last call."""
        out, self._events = self._events, []
        return out

    def running(self, op_id: int) -> bool:
        """Whether operation ``op_id`` (a lookup or a store) is still under way."""
        return op_id in self._lookups or op_id in self._stores

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def stall_timeout(self) -> float:
        """RFC 6298's retransmission timeout, used as the lookup stall timeout."""
        cfg = self.config
        if self._srtt is None:
            return cfg.initial_stall
        rto = self._srtt + max(cfg.stall_granularity, 4 * self._rttvar)
        return min(rto, cfg.rpc_timeout)

    # --- requests served ----------------------------------------------------------------

    def _closer(self, target: bytes, requester: bytes) -> tuple[PeerInfo, ...]:
        return tuple(self.table.closest(id_int(target), self.config.k, exclude=requester))

    def _reply_cap(self) -> int:
        return self.config.max_providers_per_reply

    def _accept_record(self, peer_id: bytes, record: ProviderRecord, now: float) -> Stored:
        try:
            verify_record(record, now, self.config.max_record_ttl, self.policy)
        except RemoteError as exc:
            self.stats.drop(type(exc).__name__)
            log.info("kad: refused record from %s: %s", peer_short(peer_id), exc)
            return Stored(False, str(exc)[:MAX_REASON])
        outcome = self.store.put_record(record)
        if outcome.ok:
            self.stats.records_accepted += 1
        else:
            self.stats.drop(f"record {outcome.value}")
        return Stored(outcome.ok, "" if outcome.ok else outcome.value)

    def _accept_value(self, msg: PutValue, now: float) -> Stored:
        if not now < msg.expiry <= now + self.config.max_record_ttl:
            self.stats.drop("value expiry out of range")
            return Stored(False, "expiry out of range")
        outcome = self.store.put_value(key_for_value(msg.value), msg.value, msg.expiry, now)
        if outcome.ok:
            self.stats.values_accepted += 1
        else:
            self.stats.drop(f"value {outcome.value}")
        return Stored(outcome.ok, "" if outcome.ok else outcome.value)

    # --- requests sent ------------------------------------------------------------------

    def _send(
        self,
        peer: PeerInfo,
        message: Request,
        purpose: _Purpose,
        now: float,
        *,
        op_id: int = 0,
        candidate: Candidate | None = None,
    ) -> None:
        rpc_id = self._next_id
        self._next_id += 1
        self._pending[rpc_id] = _Pending(peer, message, purpose, now, op_id, candidate)
        deadline = now + self.config.rpc_timeout
        heapq.heappush(self._timers, (deadline, rpc_id, _DEADLINE))
        if candidate is not None:
            heapq.heappush(self._timers, (now + self.stall_timeout, rpc_id, _STALL))
        self._outbox.append(OutboundRequest(rpc_id, peer, message, deadline))
        self.stats.rpcs_sent += 1

    def _fail(self, pending: _Pending, now: float) -> None:
        self.stats.rpcs_failed += 1
        self.table.failed(pending.peer.node_id, now)
        if pending.purpose is _Purpose.LOOKUP:
            lookup = self._lookups.get(pending.op_id)
            if lookup is not None and pending.candidate is not None:
                lookup.on_failure(pending.candidate)
                self._advance(lookup, now)
        elif pending.purpose is _Purpose.STORE:
            self._store_reply(pending.op_id, False, now)

    def _seen(self, peer: PeerInfo, now: float) -> None:
        result = self.table.seen(peer, now)
        if result.outcome is Seen.ADDED:
            self._hand_over(peer, now)
        elif result.outcome is Seen.CACHED and result.ping is not None:
            # Section 2.2: ping the least-recently seen contact; evict it only if it fails.
            self._send(result.ping, Ping(self.addrs), _Purpose.PING, now)

    def _hand_over(self, newcomer: PeerInfo, now: float) -> None:
        """
        Section 2.5: a node that learns of a new node stores on it the pairs for which the
        new node is among the k closest. So that one node does it and not k, only the
        holder closest to the key (by its own table, the newcomer aside) hands over.
        """
        store = self.store
        if not store.providers and not store.values:
            return
        k = self.config.k
        new_n = id_int(newcomer.node_id)
        keys = list(store.providers) + list(store.values)
        for key in keys:
            key_n = id_int(key)
            mine = self.n ^ key_n
            others = self.table.closest(key_n, k, exclude=newcomer.node_id)
            if others and id_int(others[0].node_id) ^ key_n < mine:
                continue  # a closer holder will do it
            if len(others) >= k and id_int(others[-1].node_id) ^ key_n < new_n ^ key_n:
                continue  # the newcomer is not among the k closest
            for record in store.get_records(key, now, self._reply_cap(), self.rng):
                self._send(newcomer, AddProvider(self.addrs, record), _Purpose.STORE, now)
            stored = store.get_value(key, now)
            if stored is not None:
                message = PutValue(self.addrs, stored.value, int(stored.expiry))
                self._send(newcomer, message, _Purpose.STORE, now)

    def _sample_rtt(self, r: float) -> None:
        # RFC 6298 section 2 (alpha = 1/8, beta = 1/4).
        if self._srtt is None:
            self._srtt, self._rttvar = r, r / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - r)
            self._srtt = 0.875 * self._srtt + 0.125 * r

    # --- lookups ------------------------------------------------------------------------

    def _start_lookup(
        self,
        kind: LookupKind,
        target: bytes,
        now: float,
        *,
        paths: int = 1,
        want: int | None = None,
        internal: bool = False,
        extra_seeds: list[PeerInfo] | None = None,
    ) -> int:
        op = self._next_id
        self._next_id += 1
        target_n = id_int(target)
        k = self.config.k
        seeds = self.table.closest(target_n, k * paths)
        if len(seeds) < k:  # nothing better known: give failed contacts another chance
            seeds = self.table.closest(target_n, k * paths, questionable=True)
        if extra_seeds:
            seeds = seeds + [p for p in extra_seeds if p.node_id != self.node_id]
        self.table.touch(self.table.bucket_of(target_n), now)
        self._lookups[op] = Lookup(
            op,
            kind,
            target,
            k=k,
            alpha=self.config.alpha,
            paths=paths,
            seeds=seeds,
            self_id=self.node_id,
            started=now,
            want=want,
            internal=internal,
        )
        return op

    def _finish_if_done(self, op: int, now: float) -> None:
        lookup = self._lookups.get(op)
        if lookup is not None:
            self._advance(lookup, now)

    def _advance(self, lookup: Lookup, now: float) -> None:
        """Send what the lookup wants to send, or finish it."""
        if not lookup.check_done():
            queries = lookup.next_queries()
            if queries:
                message = self._lookup_message(lookup)
                for c in queries:
                    self._send(
                        c.peer, message, _Purpose.LOOKUP, now, op_id=lookup.lookup_id, candidate=c
                    )
                return  # a query in flight within the k closest: not converged
            if not lookup.check_done():
                return
        self._finish_lookup(lookup, now)

    def _lookup_message(self, lookup: Lookup) -> Request:
        if lookup.kind is LookupKind.GET_PROVIDERS:
            return GetProviders(self.addrs, lookup.target)
        if lookup.kind is LookupKind.GET_VALUE:
            return GetValue(self.addrs, lookup.target)
        return FindNode(self.addrs, lookup.target)

    def _lookup_reply(self, pending: _Pending, reply: Reply, now: float) -> None:
        lookup = self._lookups.get(pending.op_id)
        c = pending.candidate
        if lookup is None or c is None:
            return
        closer: tuple[PeerInfo, ...] = getattr(reply, "closer", ())
        if isinstance(reply, Providers) and reply.records:
            good = self._verified(reply.records, now, lookup.target, pending.peer.node_id)
            if good is None:  # forged records: ignore everything this peer said
                self.table.remove(pending.peer.node_id, now)
                lookup.on_failure(c)
                self._advance(lookup, now)
                return
            lookup.found_records(c, good)
        elif isinstance(reply, Value) and reply.value is not None:
            if key_for_value(reply.value) == lookup.target:
                lookup.found_value(c, reply.value, reply.expiry)
            else:
                self.stats.drop("value does not hash to its key")
                self.table.remove(pending.peer.node_id, now)
                lookup.on_failure(c)
                self._advance(lookup, now)
                return
        lookup.on_reply(c, closer)
        self._advance(lookup, now)

    def _verified(
        self,
        records: Iterable[ProviderRecord],
        now: float,
        key: bytes | None = None,
        source: bytes | None = None,
    ) -> list[ProviderRecord] | None:
        """
        The records that verify and pass the policy. ``None`` if any is forged (a bad
        signature or a record for another key): only a lying peer returns those.
        """
        good = []
        for r in records:
            if key is not None and r.key != key:
                self.stats.drop("record for another key")
                return None
            try:
                verify_record(r, now, self.config.max_record_ttl, self.policy)
            except RecordError as exc:  # expired meanwhile, or a signer we do not accept
                self.stats.drop(type(exc).__name__)
                continue
            except RemoteError as exc:
                self.stats.drop(type(exc).__name__)
                log.info("kad: forged record from %s: %s", peer_short(source), exc)
                return None
            good.append(r)
        return good

    def _finish_lookup(self, lookup: Lookup, now: float) -> None:
        del self._lookups[lookup.lookup_id]
        closest = lookup.closest()
        if lookup.lookup_id in self._joins:
            self._joins.discard(lookup.lookup_id)
            self._refresh_after_join(now)
        store = self._stores.get(lookup.lookup_id)
        if store is not None:
            self._send_stores(store, [c.peer for c in closest], now)
        if lookup.internal:
            return
        kind = lookup.kind
        if kind is LookupKind.GET_PROVIDERS:
            ok = bool(lookup.records) and len(lookup.records) >= (lookup.want or 1)
        elif kind is LookupKind.GET_VALUE:
            ok = lookup.value is not None
        else:
            ok = bool(closest)
        hops = lookup.hops()
        stats = self.stats
        stats.lookups[kind.value] = stats.lookups.get(kind.value, 0) + 1
        if ok:
            stats.lookups_ok[kind.value] = stats.lookups_ok.get(kind.value, 0) + 1
        stats.lookup_seconds.observe(now - lookup.started)
        stats.lookup_hops.observe(hops)
        self._events.append(
            LookupFinished(
                op_id=lookup.lookup_id,
                kind=kind,
                target=lookup.target,
                ok=ok,
                closest=tuple(c.peer for c in closest),
                records=tuple(lookup.records.values()) if lookup.records else _NO_RECORDS,
                value=lookup.value,
                hops=hops,
                queried=lookup.queried,
                failed=lookup.failed,
                started=lookup.started,
                finished=now,
            )
        )

    def _refresh_after_join(self, now: float) -> None:
        # Section 2.3: refresh all buckets farther away than our closest neighbour.
        nearest = self.table.closest(self.n, 1)
        if not nearest:
            return  # nobody answered: the adapter bootstraps again later
        for i in range(bucket_index(self.n ^ id_int(nearest[0].node_id)) + 1, ID_BITS):
            self._refresh(i, now)

    @property
    def n(self) -> int:
        return self.table.n

    # --- stores -------------------------------------------------------------------------

    def _publish(self, key: bytes, payload: bytes, seq: int, now: float, internal: bool) -> int:
        assert self.key is not None
        expiry = int(now + self.config.record_ttl)
        record = sign_record(
            self.key, key, addrs=self.addrs, payload=payload, seq=seq, expiry=expiry
        )
        local = self.store.put_record(record).ok
        return self._start_store(key, AddProvider(self.addrs, record), now, internal, local)

    def _start_store(
        self, key: bytes, message: Request, now: float, internal: bool, local: bool
    ) -> int:
        lookup_op = self._start_lookup(LookupKind.FIND_NODE, key, now, internal=True)
        op = _StoreOp(lookup_op, key, message, internal, stored=int(local), local=local)
        self._stores[lookup_op] = op
        self._finish_if_done(lookup_op, now)
        return lookup_op

    def _send_stores(self, op: _StoreOp, closest: list[PeerInfo], now: float) -> None:
        targets = closest[: self.config.k]
        op.attempted = len(targets) + int(op.local)
        op.outstanding = len(targets)
        for peer in targets:
            self._send(peer, op.message, _Purpose.STORE, now, op_id=op.op_id)
        if not targets:
            self._finish_store(op, now)

    def _store_reply(self, op_id: int, ok: bool, now: float) -> None:
        op = self._stores.get(op_id)
        if op is None:
            return
        op.stored += int(ok)
        op.outstanding -= 1
        if op.outstanding <= 0:
            self._finish_store(op, now)

    def _finish_store(self, op: _StoreOp, now: float) -> None:
        del self._stores[op.op_id]
        if not op.internal:
            self._events.append(StoreFinished(op.op_id, op.key, op.stored, op.attempted, now))

    def _new_seq(self, now: float) -> int:
        # Milliseconds since the epoch, strictly increasing: survives restarts without state.
        self._last_seq = max(self._last_seq + 1, int(now * 1000))
        return self._last_seq

    # --- maintenance --------------------------------------------------------------------

    def _refresh(self, index: int, now: float) -> None:
        target = self.table.random_id_in(index, self.rng)
        self._finish_if_done(
            self._start_lookup(LookupKind.FIND_NODE, target, now, internal=True), now
        )

    def _maintain(self, now: float) -> None:
        cfg = self.config
        self.store.expire(now)
        for index in self.table.stale_buckets(now, cfg.refresh_interval):
            self._refresh(index, now)
        for key, provided in self._provided.items():
            if provided.republish_at <= now:
                provided.seq = self._new_seq(now)
                provided.republish_at = now + cfg.republish_interval
                self._publish(key, provided.payload, provided.seq, now, internal=True)
        for key, stored in self.store.values_to_republish(now):
            message = PutValue(self.addrs, stored.value, int(stored.expiry))
            self._start_store(key, message, now, internal=True, local=True)


def _check_id(value: bytes) -> bytes:
    if len(value) != ID_LEN:
        raise LocalError(f"keys and ids have {ID_LEN} bytes")
    return value
