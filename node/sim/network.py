"""
Simulated network: ``KademliaNode`` cores exchanging message objects with one-way latency,
loss and churn.

Messages are passed as the (immutable) wire dataclasses themselves, not encoded: the codec
is tested on its own, and encoding every message would make the simulator several times
slower without changing what it measures. A request to a node that has left is silently
lost (the sender only learns it from its own timeout), which is the harsh case of a host that
vanished, not one that answers with a TCP reset.

Churn (``median_session``): every node gets an exponential session length with that median;
when it ends the node leaves without warning and a new node with a fresh identity joins
through a random live node, so the population stays constant.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from node.identity import NodeKey
from node.kademlia.config import KademliaConfig
from node.kademlia.core import KademliaNode, OutboundRequest
from node.kademlia.events import Event
from node.kademlia.messages import Address, PeerInfo, Reply
from node.kademlia.routing import ID_BITS, id_int
from node.sim.engine import EventQueue

EPOCH = 1_800_000_000.0
"""Simulated Unix time at the start (records carry absolute expiries)."""
PORT = 4001


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """Parameters of the simulated network."""

    latency: float = 0.050
    """One-way latency, seconds."""
    jitter: float = 0.0
    """Each message's latency is ``latency * (1 + jitter * u)``, ``u`` uniform in [-1, 1]."""
    loss: float = 0.0
    """Probability that any one message is lost."""
    median_session: float | None = 3600.0
    """Median of the exponential session length, seconds; ``None``: no churn."""
    seed: int = 1


@dataclass(slots=True, eq=False)
class SimNode:
    core: KademliaNode
    peer: PeerInfo
    joined: float
    alive: bool = True
    timer_at: float = math.inf
    slot: int = -1
    """Position in ``SimNetwork.live``."""
    ready_op: int = 0
    """The join lookup; the node is ready for application lookups once it is done."""

    @property
    def ready(self) -> bool:
        return self.alive and not self.core.running(self.ready_op)


class SimNetwork:
    """All nodes, the event queue, delivery and churn."""

    def __init__(
        self,
        config: NetworkConfig,
        kad: KademliaConfig,
        on_event: Callable[[SimNode, Event], None] | None = None,
    ) -> None:
        self.config = config
        self.kad = kad
        self.rng = random.Random(config.seed)
        self.queue = EventQueue(EPOCH)
        self.by_id: dict[bytes, SimNode] = {}
        self.live: list[SimNode] = []
        self.on_event = on_event
        self.on_leave: Callable[[SimNode], None] | None = None
        self.on_join: Callable[[SimNode], None] | None = None
        self.joins = 0
        self.leaves = 0
        self.messages = 0
        self.lost = 0
        self._mean_session = (
            config.median_session / math.log(2) if config.median_session is not None else None
        )

    @property
    def now(self) -> float:
        return self.queue.now

    # --- population ---------------------------------------------------------------------

    def new_node(self, *, signing: bool = False) -> SimNode:
        """A node with a fresh identity (not yet in the network). ``signing``: give it a
        real Ed25519 key so that it can publish provider records."""
        rng = self.rng
        key: NodeKey | None = None
        if signing:
            key = NodeKey.from_seed(rng.randbytes(32))
            node_id = key.node_id
        else:
            # sha256 of 32 random bytes standing in for a public key: same distribution as
            # sha256(pubkey) without paying for key generation in nodes that never sign.
            node_id = hashlib.sha256(rng.randbytes(32)).digest()
        addrs = (Address(_random_ip(rng), PORT),)
        core = KademliaNode(node_id, addrs, self.kad, rng, self.now, key=key)
        return SimNode(core, PeerInfo(node_id, addrs), self.now)

    def add(self, node: SimNode) -> None:
        """Put ``node`` online (its table may be empty) and start its session clock."""
        node.slot = len(self.live)
        self.live.append(node)
        self.by_id[node.core.node_id] = node
        node.joined = self.now
        self.joins += 1
        if self._mean_session is not None:
            self.queue.after(self.rng.expovariate(1 / self._mean_session), self._leave, node)
        self.pump(node)

    def join(self, node: SimNode) -> None:
        """Add ``node`` and bootstrap it through a random live node (section 2.3)."""
        via = self.random_live()
        self.add(node)
        node.ready_op = node.core.bootstrap([via.peer] if via is not None else [], self.now)
        self.pump(node)
        if self.on_join is not None:
            self.on_join(node)

    def random_live(self, ready: bool = False) -> SimNode | None:
        if not self.live:
            return None
        for _ in range(100):
            node = self.live[self.rng.randrange(len(self.live))]
            if not ready or node.ready:
                return node
        return None

    def _leave(self, node: SimNode) -> None:
        if not node.alive:
            return
        node.alive = False
        last = self.live.pop()
        if last is not node:
            self.live[node.slot] = last
            last.slot = node.slot
        del self.by_id[node.core.node_id]
        self.leaves += 1
        if self.on_leave is not None:
            self.on_leave(node)
        self.join(self.new_node())

    def fill_tables(self, nodes: list[SimNode]) -> None:
        """
        Oracle start: fill every table as a converged network would have it, each bucket
        with up to k random nodes from its range of the id space, and give every bucket a
        random age so that refreshes do not all fall at once.
        """
        ids = sorted((id_int(n.core.node_id), n) for n in nodes)
        keys = [i for i, _ in ids]
        rng = self.rng
        k = self.kad.k
        interval = self.kad.refresh_interval
        for node in nodes:
            x = id_int(node.core.node_id)
            table = node.core.table
            for i in range(ID_BITS - 1, -1, -1):
                lo = ((x >> (i + 1)) << (i + 1)) | ((x ^ (1 << i)) & (1 << i))
                a = bisect.bisect_left(keys, lo)
                b = bisect.bisect_left(keys, lo + (1 << i))
                if a < b:
                    chosen = rng.sample(range(a, b), min(k, b - a))
                    for j in chosen:
                        table.seen(ids[j][1].peer, self.now)
                shared_lo = (x >> i) << i
                if (
                    bisect.bisect_left(keys, shared_lo + (1 << i))
                    - bisect.bisect_left(keys, shared_lo)
                    <= 1
                ):
                    break
            for bucket in table.buckets.values():
                bucket.last_active = self.now - rng.uniform(0, interval)

    # --- delivery -----------------------------------------------------------------------

    def pump(self, node: SimNode) -> None:
        """Move a core's output into the network: requests, events, its next timer."""
        core = node.core
        for req in core.requests_to_send():
            self._transmit(self._deliver_request, node, req)
        events = core.events()
        if events and self.on_event is not None:
            for event in events:
                self.on_event(node, event)
        t = core.get_timer()
        if t < node.timer_at:
            node.timer_at = t
            self.queue.at(max(t, self.now), self._fire_timer, node, t)

    def _transmit(self, deliver: Callable[..., None], *args: object) -> None:
        cfg = self.config
        self.messages += 1
        if cfg.loss and self.rng.random() < cfg.loss:
            self.lost += 1
            return
        delay = cfg.latency
        if cfg.jitter:
            delay *= 1 + cfg.jitter * (2 * self.rng.random() - 1)
        self.queue.after(delay, deliver, *args)

    def _deliver_request(self, src: SimNode, req: OutboundRequest) -> None:
        dst = self.by_id.get(req.peer.node_id)
        if dst is None or dst.peer.addrs != req.peer.addrs:
            return  # gone: the sender times out
        reply = dst.core.handle_request(src.core.node_id, req.message, self.now)
        self.pump(dst)
        self._transmit(self._deliver_reply, src, req.rpc_id, reply)

    def _deliver_reply(self, src: SimNode, rpc_id: int, reply: Reply) -> None:
        if src.alive:
            src.core.handle_reply(rpc_id, reply, self.now)
            self.pump(src)

    def _fire_timer(self, node: SimNode, t: float) -> None:
        if not node.alive or node.timer_at != t:
            return
        due = node.core.get_timer()
        if due > self.now:  # what this wake-up was for is gone (the reply came first)
            node.timer_at = due
            self.queue.at(due, self._fire_timer, node, due)
            return
        node.timer_at = math.inf
        node.core.handle_timer(self.now)
        self.pump(node)


_FIRST_OCTETS = [o for o in range(1, 224) if o not in (10, 127)]


def _random_ip(rng: random.Random) -> str:
    """A random public-looking IPv4 address (first octet 1..223, not 10 or 127)."""
    first = rng.choice(_FIRST_OCTETS)
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
