"""node/kademlia/service.py over real sockets on 127.0.0.1 (ephemeral ports)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from node.errors import LocalError
from node.identity import NodeKey
from node.kademlia.config import KademliaConfig
from node.kademlia.messages import STREAM_PROTOCOL, Error, FindNode, Nodes, Pong
from node.kademlia.records import ASKS_KEY, StakedSigners
from node.kademlia.service import KademliaService, parse_peer, peer_info
from node.transport import Host, Stream

CFG = KademliaConfig(k=8, exempt_loopback=True, rpc_timeout=2.0, initial_stall=0.5)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def network(n: int, tmp: Path | None = None, **kw: Any) -> list[KademliaService]:
    services = []
    for i in range(n):
        host = Host(NodeKey.generate())
        await host.listen("127.0.0.1", 0)
        path = tmp / f"kad{i}.table" if tmp is not None else None
        services.append(KademliaService(host, CFG, table_path=path, **kw))
    await services[0].start()
    for s in services[1:]:
        await s.start([services[0].peer])
    return services


async def shutdown(services: list[KademliaService]) -> None:
    for s in services:
        await s.close()
        await s.host.close()


def test_provide_get_providers_and_values_over_sockets() -> None:
    async def main() -> None:
        services = await network(8)
        try:
            assert all(len(s.core.table) >= 5 for s in services)
            stored = await services[2].provide(ASKS_KEY, b"ask 2")
            assert stored.stored >= CFG.k
            await services[3].provide(ASKS_KEY, b"ask 3")
            found = await services[7].get_providers(ASKS_KEY)
            assert found.ok
            assert sorted(r.payload for r in found.records) == [b"ask 2", b"ask 3"]
            assert found.records[0].addrs[0].host == "127.0.0.1"
            key = await services[1].put_value(b"manifest bytes")
            assert key == hashlib.sha256(b"manifest bytes").digest()
            assert await services[6].get_value(key) == b"manifest bytes"
            res = await services[5].find_node(services[4].core.node_id)
            assert res.closest[0].node_id == services[4].core.node_id
            services[5].update_metrics()
            reg = services[5].host.registry
            assert reg.value("depot_kad_lookups_total", kind="find_node", result="ok") >= 1
            assert reg.value("depot_kad_routing_table_contacts") == len(services[5].core.table)
        finally:
            await shutdown(services)

    run(main())


def test_garbage_and_wrong_messages_get_errors_and_node_keeps_serving() -> None:
    async def main() -> None:
        services = await network(3)
        victim = services[1]
        attacker = Host(NodeKey.generate())
        try:
            addrs = victim.host.listen_addrs
            stream = await attacker.open_stream(victim.core.node_id, addrs, STREAM_PROTOCOL)
            await stream.write((5).to_bytes(4, "big") + b"\xc1\xc1\xc1\xc1\xc1")
            await stream.close()
            assert isinstance(await stream.recv_msg(), Error)
            reply = await attacker.request(victim.core.node_id, addrs, STREAM_PROTOCOL, Pong(), 5)
            assert isinstance(reply, Error)
            assert victim.core.stats.dropped.get("DecodeError") == 1
            assert victim.core.stats.dropped.get("not a kad request") == 1
            # Still serving everyone else, attacker included.
            reply = await attacker.request(
                victim.core.node_id, addrs, STREAM_PROTOCOL, FindNode((), bytes(32)), 5
            )
            assert isinstance(reply, Nodes) and reply.closer
            res = await services[2].find_node(services[0].core.node_id)
            assert res.ok
        finally:
            await attacker.close()
            await shutdown(services)

    run(main())


def test_dead_peer_is_survived_and_counted() -> None:
    async def main() -> None:
        services = await network(6)
        try:
            await services[1].provide(ASKS_KEY, b"ask")
            gone = services[4]
            await gone.close()
            await gone.host.close()
            found = await services[5].get_providers(ASKS_KEY)
            assert found.ok
            for _ in range(2):
                await services[5].find_node(gone.core.node_id)
            assert services[5].core.stats.rpcs_failed >= 1
        finally:
            await shutdown(services)

    run(main())


def test_unstaked_provider_is_refused_over_sockets() -> None:
    async def main() -> None:
        staked = StakedSigners()
        services = await network(5, policy=staked)
        try:
            refused = await services[1].provide(ASKS_KEY, b"sybil ask")
            assert refused.stored == 1  # its own copy only
            found = await services[3].get_providers(ASKS_KEY)
            assert not found.ok and not found.records
        finally:
            await shutdown(services)

    run(main())


def test_routing_table_is_saved_and_reloaded(tmp_path: Path) -> None:
    async def main() -> None:
        services = await network(5, tmp_path)
        key = services[2].host.key
        path = services[2].table_path
        assert path is not None
        before = {c.node_id for c in services[2].core.table.contacts()}
        await shutdown(services[2:3])
        assert path.exists()
        host = Host(key)
        await host.listen("127.0.0.1", 0)
        again = KademliaService(host, CFG, table_path=path)
        try:
            await again.start()  # no bootstrap peers: the saved table is enough
            assert {c.node_id for c in again.core.table.contacts()} >= before
            res = await again.find_node(services[0].core.node_id)
            assert res.ok
        finally:
            await shutdown([again, *services[:2], *services[3:]])

    run(main())


def test_corrupt_table_file_starts_empty_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kad.table"
    path.write_bytes(b"not a table")

    async def main() -> None:
        host = Host(NodeKey.generate())
        await host.listen("127.0.0.1", 0)
        service = KademliaService(host, CFG, table_path=path)
        with caplog.at_level(logging.WARNING):
            await service.start()
        assert len(service.core.table) == 0
        await shutdown([service])

    run(main())
    assert "empty routing table" in caplog.text


def test_parse_peer() -> None:
    node_id = bytes(range(32))
    peer = parse_peer(f"{node_id.hex()}@192.0.2.1:4001")
    assert peer.node_id == node_id and peer.addrs[0].port == 4001
    assert parse_peer(f"{node_id.hex()}@[2001:db8::1]:9").addrs[0].host == "2001:db8::1"
    for bad in [
        "nope",
        f"{node_id.hex()}@host.example:1",
        "00@1.2.3.4:1",
        f"{node_id.hex()}@1.2.3.4",
    ]:
        with pytest.raises(LocalError):
            parse_peer(bad)


def test_empty_table_bootstraps_again() -> None:
    async def main() -> None:
        cfg = KademliaConfig(exempt_loopback=True, maintenance_interval=0.1, rpc_timeout=1.0)
        a_host, b_host = Host(NodeKey.generate()), Host(NodeKey.generate())
        await a_host.listen("127.0.0.1", 0)
        await b_host.listen("127.0.0.1", 0)
        a, b = KademliaService(a_host, cfg), KademliaService(b_host, cfg)
        a_peer = peer_info(a_host.node_id, a_host.listen_addrs)
        try:
            await b.start([a_peer])  # a does not serve the DHT yet: nobody answers
            assert len(b.core.table) == 0
            await a.start()
            async with asyncio.timeout(10):
                while not len(b.core.table):  # noqa: ASYNC110 (polls the core)
                    await asyncio.sleep(0.05)
            assert b.core.table.find(a_host.node_id) is not None
        finally:
            await shutdown([a, b])

    run(main())


def test_garbage_reply_is_counted_and_the_lookup_goes_on() -> None:
    async def main() -> None:
        services = await network(4)
        liar = Host(NodeKey.generate())
        await liar.listen("127.0.0.1", 0)

        async def garbage(stream: Stream) -> None:
            await stream.recv_msg()
            await stream.write((3).to_bytes(4, "big") + b"\xc1\xc1\xc1")

        liar.set_handler(STREAM_PROTOCOL, garbage)
        asker = services[3]
        try:
            asker.core.add_contacts([peer_info(liar.node_id, liar.listen_addrs)], time.time())
            res = await asker.find_node(liar.node_id)
            assert res.ok
            assert asker.core.stats.dropped.get("DecodeError", 0) >= 1
            assert liar.node_id not in {p.node_id for p in res.closest}
        finally:
            await liar.close()
            await shutdown(services)

    run(main())
