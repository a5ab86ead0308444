"""market.assemble: stripes decoded on workers as they complete, the digest checked, atomically."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
from pathlib import Path

import pytest
from eth_account import Account

from market.assemble import StripeAssembler
from market.errors import RetrievalFailed
from market.spool import ChunkSpool
from node.pieces.config import PiecesConfig
from node.pieces.layout import CHUNK_SIZE, PLAINTEXT_CHUNK_SIZE
from node.pieces.modes import Copies, ErasureCode, Mode
from node.pieces.prepare import PreparedFile, prepare_file
from node.pieces.workers import start_pool
from node.swarm.sink import SharePiece

ACCOUNT = Account.from_key(b"\x05" * 32)
SECRET = b"\x09" * 32
INLINE = PiecesConfig(workers=1)


def prepare(tmp_path: Path, mode: Mode, size: int) -> tuple[Path, PreparedFile]:
    src = tmp_path / "input.bin"
    src.write_bytes(os.urandom(size))
    out = tmp_path / "prepared"
    out.mkdir()
    return src, prepare_file(src, SECRET, mode, out, ACCOUNT, config=INLINE)


def spool_for(prepared: PreparedFile, directory: Path) -> ChunkSpool:
    m = prepared.manifest.manifest
    pieces = {i: SharePiece(prepared.shares[i].root, m.share_size) for i in range(m.n)}
    return ChunkSpool(directory, pieces, m.k)


def read_chunk(prepared: PreparedFile, share: int, stripe: int) -> bytes:
    with open(prepared.shares[share].piece_path, "rb") as f:
        f.seek(stripe * CHUNK_SIZE)
        return f.read(prepared.manifest.manifest.block_size(stripe))


def feed(prepared: PreparedFile, spool: ChunkSpool, shares: list[int], seed: int) -> None:
    """Chunks of ``shares`` into the spool the way a swarm delivers them: in random order."""
    m = prepared.manifest.manifest
    order = [(j, s) for j in range(m.stripes) for s in shares]
    random.Random(seed).shuffle(order)
    for stripe, share in order:
        spool.write_chunk(share, stripe, read_chunk(prepared, share, stripe))


async def rebuild(prepared: PreparedFile, tmp_path: Path, shares: list[int], **kw: object) -> Path:
    m = prepared.manifest.manifest
    spool = spool_for(prepared, tmp_path / "spool")
    out = tmp_path / "out.bin"
    assembler = StripeAssembler(m, SECRET, out, spool, **kw)  # type: ignore[arg-type]
    spool.on_stripe = assembler.ready
    try:
        feed(prepared, spool, shares, 1)
        return await assembler.finish()
    except BaseException:
        assembler.abort()
        raise
    finally:
        spool.close()


@pytest.mark.parametrize(
    ("mode", "size", "shares"),
    [
        (Copies(3), 5 * PLAINTEXT_CHUNK_SIZE + 17, [0, 1, 2]),
        (Copies(2), 0, [1]),
        (ErasureCode(3, 5), 7 * PLAINTEXT_CHUNK_SIZE + 1, [1, 3, 4]),
        (ErasureCode(2, 4), 4 * PLAINTEXT_CHUNK_SIZE, [0, 1, 2, 3]),
    ],
)
def test_the_file_comes_back_from_any_arrival_order(
    tmp_path: Path, mode: Mode, size: int, shares: list[int]
) -> None:
    src, prepared = prepare(tmp_path, mode, size)
    out = asyncio.run(rebuild(prepared, tmp_path, shares, config=INLINE))
    assert out.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_on_worker_processes(tmp_path: Path) -> None:
    src, prepared = prepare(tmp_path, ErasureCode(2, 3), 9 * PLAINTEXT_CHUNK_SIZE + 5)
    config = PiecesConfig(workers=2, parallel_threshold=1)
    pool = start_pool(config)
    try:
        out = asyncio.run(rebuild(prepared, tmp_path, [0, 2], config=config, pool=pool))
    finally:
        pool.shutdown()
    assert out.read_bytes() == src.read_bytes()


def test_a_digest_mismatch_leaves_no_file(tmp_path: Path) -> None:
    _, prepared = prepare(tmp_path, Copies(2), 3 * PLAINTEXT_CHUNK_SIZE)
    m = prepared.manifest.manifest
    forged = dataclasses.replace(m, plaintext_mac=bytes(32))
    bad = PreparedFile(
        dataclasses.replace(prepared.manifest, manifest=forged),
        prepared.manifest_path,
        prepared.shares,
    )
    with pytest.raises(RetrievalFailed, match="digest"):
        asyncio.run(rebuild(bad, tmp_path, [0], config=INLINE))
    assert not (tmp_path / "out.bin").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".out.bin")] == []


def test_missing_stripes_fail_cleanly(tmp_path: Path) -> None:
    _, prepared = prepare(tmp_path, Copies(2), 3 * PLAINTEXT_CHUNK_SIZE)
    m = prepared.manifest.manifest
    first = read_chunk(prepared, 0, 0)

    async def partial() -> Path:
        spool = spool_for(prepared, tmp_path / "spool")
        assembler = StripeAssembler(m, SECRET, tmp_path / "out.bin", spool, config=INLINE)
        spool.on_stripe = assembler.ready
        spool.write_chunk(0, 0, first)  # one stripe of three
        try:
            return await assembler.finish()
        finally:
            spool.close()

    with pytest.raises(RetrievalFailed, match="never complete"):
        asyncio.run(partial())
    assert list(p.name for p in tmp_path.iterdir() if "out.bin" in p.name) == []
