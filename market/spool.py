"""
Where a download's verified chunks wait to be decoded: one append-only journal file.

The swarm's resumable sink is a ``FileSink`` (``node.swarm.sink``: chunks at their offsets
in one sparse file per share). A client download writes ``k`` of every ``n`` share chunks,
out of order, into ``n`` sparse files, and deleting such files costs the kernel far more
than deleting one contiguous file of the same data (measured: ~0.5 s against ~0.1 s per
GiB here). ``ChunkSpool`` keeps the ``FileSink`` contract the swarm's resume relies on
(``write_chunk``, ``read_chunk``, ``flush``: data durable before the state that names it)
over a journal instead::

    record = magic "DPCK" (4) || share (u32) || index (u32) || length (u32) || data

appended in arrival order, big-endian. Reopening scans the records and drops a torn tail
(a record cut by a crash); which chunks *count* is still decided by the swarm's resume
state, re-verified against the layers (``node.swarm.sink.reverify``), so the journal never
needs to be trusted beyond its framing.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from node.swarm.errors import SwarmUsageError
from node.swarm.sink import FileSink, SharePiece
from node.swarm.verify import chunk_count, chunk_length

MAGIC: Final = b"DPCK"
HEADER: Final = struct.Struct(">4sIII")
JOURNAL: Final = "chunks.spool"


class ChunkSpool(FileSink):
    """
    Verified chunks of a download in one journal (module docstring), with which shares'
    chunks of each stripe are held (``have[stripe]``); ``on_stripe(stripe, shares)`` is called
    once per stripe, when its ``need``-th chunk is written. ``expected``: bytes to allocate
    up front (the records of ``need`` chunks per stripe).
    """

    def __init__(
        self, directory: Path, shares: Mapping[int, SharePiece], need: int, expected: int = 0
    ) -> None:
        # FileSink.__init__ is deliberately not called: it would create one file per share.
        # Every FileSink method the swarm uses is overridden below.
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shares = dict(shares)
        self.need = need
        self.path = self.directory / JOURNAL
        self.have: dict[int, set[int]] = {}
        self.written = 0
        self.on_stripe: Callable[[int, set[int]], None] | None = None
        self._where: dict[tuple[int, int], tuple[int, int]] = {}
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self._end = self._scan()
        if expected > self._end:
            # Reserve the blocks now: a full disk shows before the download, not half way
            # (no measurable difference in speed either way here).
            try:
                os.posix_fallocate(self._fd, self._end, expected - self._end)
            except OSError:
                self.close()
                raise

    def _scan(self) -> int:
        """Index the records on disk; cut a torn or foreign tail (and the unused
        preallocation after it). Returns the end offset."""
        size = os.fstat(self._fd).st_size
        offset = 0
        while offset + HEADER.size <= size:
            magic, share, index, length = HEADER.unpack(os.pread(self._fd, HEADER.size, offset))
            piece = self.shares.get(share)
            if (
                magic != MAGIC
                or piece is None
                or index >= chunk_count(piece.size)
                or length != chunk_length(piece.size, index)
                or offset + HEADER.size + length > size
            ):
                break
            self._where[(share, index)] = (offset + HEADER.size, length)
            offset += HEADER.size + length
        if offset != size:
            os.ftruncate(self._fd, offset)
        return offset

    # ------------------------------------------------------------------ FileSink

    def write_chunk(self, share: int, index: int, data: bytes | memoryview) -> None:
        header = HEADER.pack(MAGIC, share, index, len(data))
        offset = self._end
        total = HEADER.size + len(data)
        if os.pwritev(self._fd, [header, data], offset) != total:
            # Regular files only write short when the disk is full; the swarm fails the
            # download on a sink error, and the record is cut off at the next open.
            raise OSError(errno.ENOSPC, f"short write to {self.path}")
        self._end += total
        self._where[(share, index)] = (offset + HEADER.size, len(data))
        self.written += len(data)
        held = self.have.setdefault(index, set())
        held.add(share)
        if len(held) == self.need and self.on_stripe is not None:
            self.on_stripe(index, held)

    def read_chunk(self, share: int, index: int) -> bytes:
        """Chunk ``index`` of ``share`` (empty if the journal does not hold it: it then
        fails verification, and a resumed download fetches it again)."""
        where = self._where.get((share, index))
        if where is None:
            return b""
        return os.pread(self._fd, where[1], where[0])

    def flush(self) -> None:
        os.fsync(self._fd)

    def finish(self, complete: set[int]) -> dict[int, Path]:
        raise SwarmUsageError("a chunk spool holds chunks, not whole shares")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # ------------------------------------------------------------------ decoding

    def locate(self, share: int, index: int) -> tuple[int, int]:
        """``(offset, length)`` of a held chunk in the journal (for decode jobs)."""
        return self._where[(share, index)]

    def complete(self) -> list[tuple[int, set[int]]]:
        """The stripes with ``need`` chunks held already (after a resume)."""
        return [(j, shares) for j, shares in sorted(self.have.items()) if len(shares) >= self.need]
