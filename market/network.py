"""
The client's P2P node: a transport host, a DHT node in client mode and a swarm endpoint.

The client never serves the DHT (``advertise=[]``: it asks and stores values but is never
added to routing tables, so a laptop behind NAT works) and serves pieces only to the
providers it pushes to. Its record policy is the Sybil defence shared with the provers: only
provider records signed by a node id registered with stake on chain are accepted
(``node.kademlia.records.StakedSigners``, fed from ``contracts.directory``).

Joining: the configured bootstrap peers, plus (``node.chain_bootstrap``) every registered
provider's on-chain endpoint with the node id the registry binds to it, so a fresh client
needs nothing but the deployment file to find the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from contracts.chain import ProviderInfo
from market.config import NodeConfig, parse_listen
from market.errors import ConfigError
from node.errors import LocalError as NodeLocalError
from node.errors import NodeError
from node.identity import NodeKey, peer_short
from node.kademlia.config import KademliaConfig
from node.kademlia.messages import STREAM_PROTOCOL, PeerInfo, Ping, Pong
from node.kademlia.records import StakedSigners
from node.kademlia.service import KademliaService, parse_peer, peer_info
from node.swarm.service import Swarm
from node.swarm.store import FilePieceStore
from node.transport import Host

log = logging.getLogger("market.network")

Addr = tuple[str, int]


def endpoint_addrs(endpoint: str) -> tuple[Addr, ...]:
    """A registry endpoint ``IP:PORT`` (``[v6]:port``) as dialable addresses (none if bad)."""
    host, sep, port = endpoint.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return ()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return ()
    return ((host, int(port)),)


def chain_peers(providers: Iterable[ProviderInfo], staked: set[bytes]) -> list[PeerInfo]:
    """Contacts of the staked providers from their on-chain node ids and endpoints."""
    out = []
    for info in providers:
        addrs = endpoint_addrs(info.endpoint)
        if info.node_id in staked and addrs:
            out.append(peer_info(info.node_id, addrs))
    return out


class MarketNode:
    """
    Host + DHT + swarm for one client command.

    Parameters
    ----------
    key :
        The client's node identity.
    config :
        The ``[node]`` section.
    table_path :
        Where the DHT routing table is kept between runs.

    The pieces to push are served with ``serve_pieces`` (a put's staging directory).
    """

    def __init__(
        self,
        key: NodeKey,
        config: NodeConfig,
        *,
        table_path: Path | None = None,
    ) -> None:
        self.config = config
        self.host = Host(key)
        self.policy = StakedSigners()
        self.kad = KademliaService(
            self.host,
            KademliaConfig(exempt_loopback=config.exempt_loopback),
            policy=self.policy,
            table_path=table_path,
            advertise=[],
        )
        self.swarm = Swarm(self.host)
        self._stores: list[FilePieceStore] = []
        self._started = False

    @property
    def node_id(self) -> bytes:
        return self.host.node_id

    async def start(self, staked: set[bytes], providers: Sequence[ProviderInfo] = ()) -> None:
        """Listen, set the record policy, and join the DHT (configured + on-chain peers)."""
        try:
            host, port = parse_listen(self.config.listen)
            await self.host.listen(host, port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.config.listen}: {exc.strerror}") from None
        self.policy.update(staked)
        bootstrap: list[PeerInfo] = []
        for text in self.config.bootstrap:
            try:
                bootstrap.append(parse_peer(text))
            except NodeLocalError as exc:
                raise ConfigError(f"bad bootstrap peer: {exc}") from None
        if self.config.chain_bootstrap:
            bootstrap += chain_peers(providers, staked)
        self._started = True
        try:
            async with asyncio.timeout(self.config.lookup_timeout):
                await self.kad.start(bootstrap)
        except TimeoutError:
            log.warning("dht: joining took longer than %.0fs; going on", self.config.lookup_timeout)

    def serve_pieces(self, directory: Path) -> FilePieceStore:
        """Serve (push) the pieces in ``directory`` (``<root>.piece`` + ``<root>.layer``)."""
        store = FilePieceStore(directory)
        self._stores.append(store)
        self.swarm.store = store
        return store

    async def ping(self, peer_id: bytes, addrs: Sequence[Addr]) -> float | None:
        """Round trip of a DHT ping in seconds, after the connection is up (None: no answer)."""
        timeout = self.config.ping_timeout
        try:
            best: float | None = None
            for _ in range(2):  # the first one pays for the dial and the Noise handshake
                start = time.monotonic()
                reply = await self.host.request(
                    peer_id, list(addrs), STREAM_PROTOCOL, Ping(()), timeout
                )
                if not isinstance(reply, Pong):
                    return None
                elapsed = time.monotonic() - start
                best = elapsed if best is None else min(best, elapsed)
            return best
        except (NodeError, OSError) as exc:
            log.info("ping %s failed: %s", peer_short(peer_id), exc)
            return None

    async def close(self) -> None:
        """Save the routing table, stop the swarm and the DHT, close every connection."""
        with contextlib.suppress(Exception):
            await self.swarm.close()
        if self._started:
            with contextlib.suppress(Exception):
                await self.kad.close()
        await self.host.close()
        for store in self._stores:
            store.close()
