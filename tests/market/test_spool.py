"""market.spool: the chunk journal under the swarm's resumable download."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from market.spool import HEADER, JOURNAL, ChunkSpool
from node.swarm.bitfield import Bitfield
from node.swarm.errors import SwarmUsageError
from node.swarm.session import ShareProgress
from node.swarm.sink import SharePiece, reverify
from node.swarm.verify import CHUNK_SIZE, layer_of

SIZE = 3 * CHUNK_SIZE + 100
PIECES = {i: SharePiece(bytes([i]) * 32, SIZE) for i in range(3)}


def chunk(share: int, index: int) -> bytes:
    n = CHUNK_SIZE if index < 3 else 100
    return bytes([share * 16 + index]) * n


def test_chunks_come_back_and_stripes_complete_once(tmp_path: Path) -> None:
    spool = ChunkSpool(tmp_path, PIECES, need=2)
    seen: list[tuple[int, set[int]]] = []
    spool.on_stripe = lambda stripe, shares: seen.append((stripe, set(shares)))
    for share, index in [(0, 0), (1, 3), (2, 0), (1, 0), (0, 3)]:
        spool.write_chunk(share, index, chunk(share, index))
    assert seen == [(0, {0, 2}), (3, {0, 1})]  # once, at the second chunk of each stripe
    assert spool.read_chunk(1, 3) == chunk(1, 3)
    assert spool.read_chunk(2, 1) == b""  # not held
    offset, length = spool.locate(0, 3)
    with open(spool.path, "rb") as f:
        f.seek(offset)
        assert f.read(length) == chunk(0, 3)
    assert [j for j, _ in spool.complete()] == [0, 3]
    assert spool.written == sum(
        len(chunk(s, i)) for s, i in [(0, 0), (1, 3), (2, 0), (1, 0), (0, 3)]
    )
    with pytest.raises(SwarmUsageError):
        spool.finish({0})
    spool.close()


def test_reopening_indexes_the_journal_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    spool = ChunkSpool(tmp_path, PIECES, need=1)
    spool.write_chunk(0, 1, chunk(0, 1))
    spool.write_chunk(2, 3, chunk(2, 3))
    spool.flush()
    spool.close()
    path = tmp_path / JOURNAL
    whole = path.stat().st_size
    with open(path, "ab") as f:  # a record cut short by a crash
        f.write(HEADER.pack(b"DPCK", 1, 0, CHUNK_SIZE) + b"x" * 1000)
    again = ChunkSpool(tmp_path, PIECES, need=1)
    assert path.stat().st_size == whole
    assert again.read_chunk(0, 1) == chunk(0, 1)
    assert again.read_chunk(2, 3) == chunk(2, 3)
    assert again.read_chunk(1, 0) == b""
    again.write_chunk(1, 0, chunk(1, 0))  # appends after the cut
    assert again.read_chunk(1, 0) == chunk(1, 0)
    again.close()


def test_foreign_records_are_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL
    path.write_bytes(HEADER.pack(b"DPCK", 9, 0, 5) + b"hello")  # a share not in this download
    spool = ChunkSpool(tmp_path, PIECES, need=1)
    assert path.stat().st_size == 0
    spool.close()


def test_the_swarm_resume_check_reads_through_the_spool(tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    layer = layer_of(data)
    pieces = {0: SharePiece(b"\x01" * 32, SIZE)}
    spool = ChunkSpool(tmp_path, pieces, need=1)
    spool.write_chunk(0, 0, data[:CHUNK_SIZE])
    spool.write_chunk(0, 1, b"\x00" * CHUNK_SIZE)  # rotten
    done = Bitfield(4)
    for i in (0, 1, 2):  # chunk 2 was never written
        done.add(i)
    kept = reverify({0: ShareProgress(layer, done)}, spool)
    assert list(kept[0].done) == [0]
    spool.close()


def test_a_preallocated_journal_reopens_at_its_last_record(tmp_path: Path) -> None:
    expected = 4 * (CHUNK_SIZE + HEADER.size)
    spool = ChunkSpool(tmp_path, PIECES, need=1, expected=expected)
    assert spool.path.stat().st_size == expected
    spool.write_chunk(1, 2, chunk(1, 2))
    spool.close()
    again = ChunkSpool(tmp_path, PIECES, need=1, expected=expected)
    assert again.read_chunk(1, 2) == chunk(1, 2)
    again.write_chunk(0, 0, chunk(0, 0))  # right after the last record, not at the end
    assert again.locate(0, 0)[0] == 2 * HEADER.size + CHUNK_SIZE
    assert again.path.stat().st_size == expected
    again.close()
