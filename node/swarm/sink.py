"""
Where verified chunks go, and the resume state of a partial download.

``ChunkSink`` is the interface a download writes to: only verified chunks reach it. The
market plugs in the pieces Reassembler; ``FileSink`` writes each share to its own sparse
file and is what providers (repair pulls, push receipts) and resumable downloads use.

Resume: ``ResumeState`` is a small JSON file (layers and verified-chunk bitfields per
share) written atomically. The data files are fsynced *before* the state that mentions
their chunks is written, so after a crash the state never claims a chunk the disk lost;
at worst a few verified chunks are fetched again.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from node.swarm.bitfield import Bitfield
from node.swarm.errors import StateFileError, SwarmProtocolError
from node.swarm.session import ShareProgress, Source
from node.swarm.store import fsync_dir, write_atomic
from node.swarm.verify import CHUNK_SIZE, chunk_count, chunk_length, verify_chunk, verify_layer

STATE_VERSION: Final = 1


class ChunkSink(Protocol):
    """Receives verified chunks of a download."""

    def write_chunk(self, share: int, index: int, data: bytes | memoryview) -> None:
        """Chunk ``index`` of share ``share``, verified against its root."""
        ...

    def flush(self) -> None:
        """Make every chunk written so far durable (called before the state is saved)."""
        ...


@dataclass(frozen=True)
class SharePiece:
    root: bytes
    size: int


def pieces_of(sources: list[Source]) -> dict[int, SharePiece]:
    """Share index -> piece, from a session's sources."""
    return {s.share: SharePiece(s.root, s.piece_size) for s in sources}


class FileSink:
    """
    Each share in a sparse file ``<directory>/<root hex>.part``, chunk ``j`` at offset
    ``j * CHUNK_SIZE``. ``finish()`` fsyncs and renames complete shares to ``.piece``.
    """

    def __init__(self, directory: Path, shares: Mapping[int, SharePiece]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shares = dict(shares)
        self._fds: dict[int, int] = {}
        for share, piece in self.shares.items():
            fd = os.open(self.part_path(share), os.O_RDWR | os.O_CREAT, 0o644)
            if os.fstat(fd).st_size != piece.size:
                os.ftruncate(fd, piece.size)
                # Reserve the blocks now: chunks arrive out of order, and writing into a
                # preallocated file is several times cheaper than filling a sparse one.
                with contextlib.suppress(OSError):
                    os.posix_fallocate(fd, 0, piece.size)
            self._fds[share] = fd

    def part_path(self, share: int) -> Path:
        return self.directory / f"{self.shares[share].root.hex()}.part"

    def piece_path(self, share: int) -> Path:
        return self.directory / f"{self.shares[share].root.hex()}.piece"

    def write_chunk(self, share: int, index: int, data: bytes | memoryview) -> None:
        fd = self._fds[share]
        offset = index * CHUNK_SIZE
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n

    def read_chunk(self, share: int, index: int) -> bytes:
        piece = self.shares[share]
        return os.pread(self._fds[share], chunk_length(piece.size, index), index * CHUNK_SIZE)

    def flush(self) -> None:
        for fd in self._fds.values():
            os.fsync(fd)

    def finish(self, complete: set[int]) -> dict[int, Path]:
        """fsync, close, and rename the complete shares to ``.piece``; returns their paths."""
        self.flush()
        out = {}
        for share in complete:
            os.replace(self.part_path(share), self.piece_path(share))
            out[share] = self.piece_path(share)
        fsync_dir(self.directory)
        self.close()
        return out

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class ResumeState:
    """The ``state.json`` of a resumable download: per share, its layer and done chunks."""

    def __init__(self, path: Path, shares: Mapping[int, SharePiece]) -> None:
        self.path = Path(path)
        self.shares = dict(shares)

    def load(self) -> dict[int, ShareProgress]:
        """Progress saved by an earlier run (empty if none). Layers are re-checked."""
        if not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text())
            if doc.get("version") != STATE_VERSION:
                raise StateFileError(f"{self.path}: unsupported version {doc.get('version')!r}")
            out = {}
            for key, entry in doc["shares"].items():
                share = int(key)
                piece = self.shares.get(share)
                if (
                    piece is None
                    or entry["root"] != piece.root.hex()
                    or entry["size"] != piece.size
                ):
                    raise StateFileError(f"{self.path}: share {share} is not this download's")
                count = chunk_count(piece.size)
                layer = bytes.fromhex(entry["layer"]) if entry["layer"] else None
                if layer is not None and not verify_layer(piece.root, piece.size, layer):
                    raise StateFileError(f"{self.path}: layer of share {share} is corrupt")
                done = Bitfield(count, bytes.fromhex(entry["done"]))
                if layer is None and len(done):
                    raise StateFileError(f"{self.path}: chunks of share {share} without a layer")
                out[share] = ShareProgress(layer, done)
            return out
        except (ValueError, KeyError, TypeError, SwarmProtocolError) as exc:
            raise StateFileError(f"{self.path}: unreadable resume state: {exc}") from None

    def save(self, progress: Mapping[int, ShareProgress]) -> None:
        """Write the state atomically (call after the sink's ``flush``)."""
        doc = {
            "version": STATE_VERSION,
            "shares": {
                str(share): {
                    "root": self.shares[share].root.hex(),
                    "size": self.shares[share].size,
                    "layer": p.layer.hex() if p.layer is not None else None,
                    "done": p.done.to_bytes().hex(),
                }
                for share, p in sorted(progress.items())
            },
        }
        write_atomic(self.path, json.dumps(doc, indent=1).encode())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def reverify(progress: Mapping[int, ShareProgress], sink: FileSink) -> dict[int, ShareProgress]:
    """Drop from ``progress`` every chunk whose bytes on disk no longer match the layer."""
    out = {}
    for share, p in progress.items():
        done = Bitfield(p.done.size, p.done.to_bytes())
        if p.layer is not None:
            for index in p.done:
                if not verify_chunk(p.layer, index, sink.read_chunk(share, index)):
                    done.discard(index)
        out[share] = ShareProgress(p.layer, done)
    return out
