"""An in-memory, zero-latency network of Kademlia cores for unit tests (no sockets)."""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable

from node.identity import NodeKey
from node.kademlia.config import KademliaConfig
from node.kademlia.core import KademliaNode
from node.kademlia.events import Event
from node.kademlia.messages import Address, PeerInfo, Reply, Request
from node.kademlia.records import RecordPolicy, allow_all

T0 = 1_800_000_000.0
Tamper = Callable[[KademliaNode, Request, Reply], Reply]


class MemNet:
    def __init__(self, config: KademliaConfig | None = None, seed: int = 1) -> None:
        self.config = config or KademliaConfig()
        self.rng = random.Random(seed)
        self.now = T0
        self.nodes: dict[bytes, KademliaNode] = {}
        self.down: set[bytes] = set()
        self.events: dict[bytes, list[Event]] = {}
        self.tamper: dict[bytes, Tamper] = {}
        """Replies of these nodes pass through a function first (a lying node)."""
        self.delivered = 0
        self._ip = 0

    def add(
        self, *, signing: bool = True, policy: RecordPolicy = allow_all, ip: str | None = None
    ) -> KademliaNode:
        key = NodeKey.from_seed(self.rng.randbytes(32)) if signing else None
        node_id = key.node_id if key else hashlib.sha256(self.rng.randbytes(32)).digest()
        self._ip += 1
        host = ip or f"10.{self._ip // 250}.{self._ip % 250}.1"
        node = KademliaNode(
            node_id, (Address(host, 4001),), self.config, self.rng, self.now, key=key, policy=policy
        )
        self.nodes[node_id] = node
        self.events[node_id] = []
        return node

    @staticmethod
    def peer(node: KademliaNode) -> PeerInfo:
        return PeerInfo(node.node_id, node.addrs)

    def build(self, n: int, **kw: object) -> list[KademliaNode]:
        """``n`` nodes, each joining through the first."""
        nodes = [self.add(**kw) for _ in range(n)]  # type: ignore[arg-type]
        for node in nodes[1:]:
            node.bootstrap([self.peer(nodes[0])], self.now)
            self.run()
        return nodes

    def run(self) -> None:
        """Deliver every queued request and reply (zero latency) until all are quiet."""
        queue: deque[tuple[KademliaNode, object]] = deque()
        while True:
            for node in self.nodes.values():
                for req in node.requests_to_send():
                    queue.append((node, req))
                self.events[node.node_id].extend(node.events())
            if not queue:
                return
            while queue:
                src, req = queue.popleft()
                dst = self.nodes.get(req.peer.node_id)  # type: ignore[attr-defined]
                if dst is None or dst.node_id in self.down or src.node_id in self.down:
                    continue  # lost: the sender's timer fails it
                reply = dst.handle_request(src.node_id, req.message, self.now)  # type: ignore[attr-defined]
                tamper = self.tamper.get(dst.node_id)
                if tamper is not None:
                    reply = tamper(dst, req.message, reply)  # type: ignore[attr-defined]
                self.delivered += 1
                src.handle_reply(req.rpc_id, reply, self.now)  # type: ignore[attr-defined]

    def advance(self, seconds: float) -> None:
        """Let time pass, firing every node's timers in order."""
        end = self.now + seconds
        while True:
            self.run()
            live = [n for n in self.nodes.values() if n.node_id not in self.down]
            due = min((n.get_timer() for n in live), default=end)
            if due > end:
                break
            self.now = max(self.now, due)
            for node in live:
                if node.get_timer() <= self.now:
                    node.handle_timer(self.now)
        self.now = end

    def take(self, node: KademliaNode) -> list[Event]:
        self.run()
        out = self.events[node.node_id]
        self.events[node.node_id] = []
        return out
