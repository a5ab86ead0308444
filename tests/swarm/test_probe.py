"""Retrieval probes over a real transport: a verified chunk, a refusal, corrupt data, silence."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from node import errors
from node.identity import NodeKey
from node.swarm.messages import PROTOCOL
from node.swarm.probe import ProbeBadData, ProbeRefused, fetch_chunk
from node.swarm.service import Swarm
from node.swarm.store import FilePieceStore
from node.swarm.verify import CHUNK_SIZE
from node.transport import Host, Stream
from tests.swarm.memswarm import make_piece

SIZE = 5 * CHUNK_SIZE + 999


class CorruptStore(FilePieceStore):
    """Serves every chunk with one bit flipped (its layer stays right)."""

    def read_chunk(self, root: bytes, index: int) -> bytes:
        data = super().read_chunk(root, index)
        return bytes([data[0] ^ 1]) + data[1:]


async def serving(
    tmp: Path, store_cls: type[FilePieceStore] = FilePieceStore
) -> tuple[Host, Swarm, bytes, bytes]:
    piece = make_piece(SIZE, seed=3)
    store = store_cls(tmp / "store")
    root = store.add(piece)
    host = Host(NodeKey.generate())
    await host.listen("127.0.0.1", 0)
    return host, Swarm(host, store), root, piece


def test_a_chunk_is_fetched_and_verified(tmp_path: Path) -> None:
    async def main() -> None:
        host, swarm, root, piece = await serving(tmp_path)
        client = Host(NodeKey.generate())
        try:
            for index in (0, 5):
                probe = await fetch_chunk(
                    client, host.node_id, host.listen_addrs, root, SIZE, index=index
                )
                assert probe.data == piece[index * CHUNK_SIZE : (index + 1) * CHUNK_SIZE]
                assert 0 < probe.ttfb <= probe.elapsed
            with pytest.raises(errors.LocalError):
                await fetch_chunk(client, host.node_id, host.listen_addrs, root, SIZE, index=6)
        finally:
            await client.close()
            await swarm.close()
            await host.close()

    asyncio.run(main())


def test_refusals_corrupt_data_and_silence_are_typed(tmp_path: Path) -> None:
    async def main() -> None:
        host, swarm, root, _ = await serving(tmp_path / "a")
        bad_host, bad_swarm, bad_root, _ = await serving(tmp_path / "b", CorruptStore)
        silent = Host(NodeKey.generate())
        await silent.listen("127.0.0.1", 0)

        async def never_answer(stream: Stream) -> None:
            await asyncio.sleep(30)

        silent.set_handler(PROTOCOL, never_answer)
        client = Host(NodeKey.generate())
        try:
            with pytest.raises(ProbeRefused, match="no such piece"):
                await fetch_chunk(client, host.node_id, host.listen_addrs, bytes(32), SIZE, index=0)
            with pytest.raises(ProbeRefused):
                await fetch_chunk(client, host.node_id, host.listen_addrs, root, SIZE + 1, index=0)
            with pytest.raises(ProbeBadData, match="does not match"):
                await fetch_chunk(
                    client, bad_host.node_id, bad_host.listen_addrs, bad_root, SIZE, index=1
                )
            with pytest.raises(errors.PeerTimeout):
                await fetch_chunk(
                    client, silent.node_id, silent.listen_addrs, root, SIZE, index=0, timeout=0.5
                )
        finally:
            for closer in (
                client.close,
                silent.close,
                bad_swarm.close,
                bad_host.close,
                swarm.close,
                host.close,
            ):
                await closer()

    asyncio.run(main())
