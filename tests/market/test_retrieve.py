"""
market.retrieve + market.assemble over real sockets: a download interrupted half way
continues from its chunk spool, and the file comes back whole. Providers are swarm nodes
serving prepared shares from a FilePieceStore on 127.0.0.1 (rate-capped, so that the
interruption lands mid-download).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account

from market.assemble import StripeAssembler
from market.errors import RetrievalFailed, UsageError
from market.progress import LogProgress
from market.retrieve import close_spool, fetch_stripes, open_spool, parse_file_id
from market.spool import JOURNAL
from node.identity import NodeKey
from node.pieces.config import PiecesConfig
from node.pieces.layout import PLAINTEXT_CHUNK_SIZE
from node.pieces.modes import ErasureCode
from node.pieces.prepare import prepare_file
from node.swarm.config import SwarmConfig
from node.swarm.service import Swarm
from node.swarm.session import Source
from node.swarm.store import FilePieceStore
from node.transport import Host

ACCOUNT = Account.from_key(b"\x05" * 32)
SECRET = b"\x09" * 32
RATE = 1024 * 1024
"""Bytes per second each provider serves: the download takes about two seconds."""


@dataclass
class Node:
    """What ``fetch_stripes`` uses of a session: ``s.node.swarm``."""

    swarm: Swarm


@dataclass
class FakeSessionView:
    node: Node


def test_file_ids() -> None:
    assert parse_file_id("AB" * 32) == "ab" * 32
    for bad in ("", "ab" * 31, "zz" * 32, "ab" * 33):
        with pytest.raises(UsageError):
            parse_file_id(bad)


def test_an_interrupted_download_resumes_from_its_spool(tmp_path: Path) -> None:
    src = tmp_path / "input.bin"
    src.write_bytes(os.urandom(24 * PLAINTEXT_CHUNK_SIZE + 5))
    prepared_dir = tmp_path / "prepared"
    prepared_dir.mkdir()
    prepared = prepare_file(
        src, SECRET, ErasureCode(2, 3), prepared_dir, ACCOUNT, config=PiecesConfig(workers=1)
    )
    m = prepared.manifest.manifest
    workdir = tmp_path / "download"

    async def main() -> tuple[int, int]:
        providers = []
        sources = []
        for share in prepared.shares:
            host = Host(NodeKey.generate())
            _, port = await host.listen("127.0.0.1", 0)
            Swarm(host, FilePieceStore(prepared_dir), config=SwarmConfig(peer_upload_rate=RATE))
            providers.append(host)
            sources.append(
                Source(host.node_id, (("127.0.0.1", port),), share.root, m.share_size, share.index)
            )
        client = Host(NodeKey.generate())
        swarm = Swarm(client, config=SwarmConfig(state_save_interval=0.1))
        view = FakeSessionView(Node(swarm))
        try:
            # First run: cancelled after some chunks are durable.
            spool = open_spool(prepared.manifest, sources, workdir)
            half = asyncio.Event()
            complete: list[int] = []

            def count(stripe: int, shares: set[int]) -> None:
                complete.append(stripe)
                if len(complete) >= m.stripes // 2:
                    half.set()

            spool.on_stripe = count
            task = asyncio.ensure_future(
                fetch_stripes(
                    view,  # type: ignore[arg-type]
                    prepared.manifest,
                    sources,
                    spool,
                    progress=LogProgress(),
                    label="t",
                )
            )
            await half.wait()
            await asyncio.sleep(0.3)  # a state save
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            spool.close()
            first = spool.written
            # Second run: what is on disk counts, the rest comes over the network.
            spool = open_spool(prepared.manifest, sources, workdir)
            resumed = len(spool.complete())
            assert 0 < resumed < m.stripes
            out = tmp_path / "out.bin"
            assembler = StripeAssembler(m, SECRET, out, spool, config=PiecesConfig(workers=1))
            spool.on_stripe = assembler.ready
            for stripe, shares in spool.complete():
                assembler.ready(stripe, shares)
            await fetch_stripes(
                view,
                prepared.manifest,
                sources,
                spool,  # type: ignore[arg-type]
                progress=LogProgress(),
                label="t",
            )
            await assembler.finish()
            second = spool.written
            close_spool(spool)
            return first, second
        finally:
            await swarm.close()
            await client.close()
            for host in providers:
                await host.close()

    first, second = asyncio.run(main())
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    total = m.k * m.share_size
    assert second < total  # the resumed run did not fetch everything again
    assert first + second >= total
    assert not workdir.exists()  # the journal and the state are gone once the file is out


def test_too_few_holders_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "input.bin"
    src.write_bytes(os.urandom(1000))
    out = tmp_path / "prepared"
    out.mkdir()
    prepared = prepare_file(
        src, SECRET, ErasureCode(2, 3), out, ACCOUNT, config=PiecesConfig(workers=1)
    )
    share = prepared.shares[0]
    only_one = [Source(b"\x01" * 32, (("127.0.0.1", 9),), share.root, share.size, 0)]
    with pytest.raises(RetrievalFailed, match="only 1 of the 2 shares"):
        open_spool(prepared.manifest, only_one, tmp_path / "dl")
    assert not (tmp_path / "dl" / JOURNAL).exists()
