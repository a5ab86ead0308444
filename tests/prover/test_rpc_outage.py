"""
The RPC endpoint goes away and comes back (a TCP proxy in front of anvil, stopped and
restarted): the daemon keeps serving P2P and its API, refuses new deals with a clear reason,
and proves again once the chain is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.devnet import start_anvil
from contracts.offers import DealActivated, DealDecision
from node.swarm.session import Source
from node.swarm.sink import FileSink, pieces_of
from prover.daemon import ProverNode
from tests.prover.helpers import (
    DealClient,
    fast_config,
    make_devnet,
    make_home,
    peer_of,
    random_piece,
)
from tests.prover.test_daemon import eventually, run

pytestmark = pytest.mark.slow


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target port; ``stop`` drops every connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


def test_the_rpc_endpoint_going_away_and_coming_back(anvil: Any, tmp_path: Path) -> None:
    devnet = make_devnet(anvil.url, tmp_path, index=4)

    async def scenario() -> None:
        proxy = TcpProxy(anvil.port)
        await proxy.start()
        config = fast_config(chain={"rpc_url": proxy.url})
        home = make_home(tmp_path / "prover", devnet, config)
        node = ProverNode(home, home.load_config(), devnet.provider)
        info = await node.start()
        client = await DealClient(devnet, tmp_path / "client").start()
        ctx, peer = node.ctx, peer_of(info)
        try:
            await eventually(lambda: ctx.taking_deals, 20, "registration")
            piece = random_piece(400_000, seed=31)
            result = await client.deal(peer, devnet.provider.address, piece, periods=20)
            assert isinstance(result, DealActivated)
            start = ctx.db.deal_by_chain_id(result.deal_id).start_period
            await eventually(
                lambda: (p := ctx.db.proof(start)) is not None and p.state == "confirmed",
                30,
                "a proof before the outage",
            )

            await proxy.stop()
            assert ctx.chain is not None
            await eventually(lambda: not ctx.chain.up, 10, "the outage to be noticed")
            async with httpx.AsyncClient(base_url=info["api"]) as api:
                status = (await api.get("/status")).json()
            assert status["chain"]["up"] is False and status["chain"]["last_error"]
            # P2P goes on: the piece is served, proposals get a clear answer.
            root = ctx.db.deal_by_chain_id(result.deal_id).piece_root
            sources = [Source(peer[0], (peer[1],), bytes.fromhex(root), len(piece), 0)]
            sink = FileSink(tmp_path / "download", pieces_of(sources))
            await client.swarm.download(sources, 1, sink)
            assert sink.finish({0})[0].read_bytes() == piece
            refused = await client.deal(peer, devnet.provider.address, random_piece(1000, 32))
            assert isinstance(refused, DealDecision) and not refused.accepted
            assert "chain" in refused.reason
            outage_head = await asyncio.to_thread(client.ledger.current_block)
            await asyncio.sleep(6)  # a period and a half without the chain

            await proxy.start()
            await eventually(lambda: ctx.chain.up, 20, "the endpoint to come back")
            later = devnet.deployment.schedule.period_of(outage_head) + 3
            await eventually(
                lambda: (p := ctx.db.proof(later)) is not None and p.state == "confirmed",
                40,
                f"a proof after the outage (period {later})",
            )
            assert client.ledger.is_proven(devnet.provider.address, later)
            assert ctx.metrics.chain_up.labels().value == 1
        finally:
            await client.close()
            await node.stop()
            with contextlib.suppress(Exception):
                await proxy.stop()

    run(scenario(), timeout=180)


def test_a_chain_that_restarts_empty_is_not_acted_on(tmp_path: Path) -> None:
    """anvil restarted on the same port with a fresh state: another chain answers there."""
    first = start_anvil(block_time=0.5)
    port = first.port
    devnet = make_devnet(first.url, tmp_path)
    home = make_home(tmp_path / "prover", devnet)

    async def scenario() -> None:
        node = ProverNode(home, home.load_config(), devnet.provider)
        info = await node.start()
        ctx = node.ctx
        second = None
        try:
            await eventually(lambda: ctx.taking_deals, 20, "registration")
            first.stop()
            second = await asyncio.to_thread(start_anvil, port=port, block_time=0.5)
            await eventually(lambda: ctx.chain_reset is not None, 30, "the reset to be seen")
            assert not ctx.taking_deals
            async with httpx.AsyncClient(base_url=info["api"]) as api:
                status = (await api.get("/status")).json()
            assert status["chain"]["reset"] and status["taking_deals"] is False
            assert node.fatal is None  # still serving, waiting for the chain it knows
        finally:
            await node.stop()
            if second is not None:
                second.stop()

    try:
        run(scenario())
    finally:
        first.stop()
