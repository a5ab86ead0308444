"""
Where served pieces come from and where pushed or pulled pieces go.

``PieceStore`` is what the serving side reads; ``PieceImporter`` is what the receiving side
of a push (or a pull for repair) hands a complete, verified, fsynced file to. The prover
implements both over its blob store; ``FilePieceStore`` is the simple file-backed one
(one ``<root>.piece`` and one ``<root>.layer`` file per piece) used by tests, benchmarks
and clients that push from disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from contracts.spec.commitment import root_of_nodes
from node.swarm.errors import SwarmUsageError
from node.swarm.verify import CHUNK_SIZE, HASH_SIZE, chunk_count, chunk_length, layer_of


class PieceStore(Protocol):
    """Read side of a node's pieces (everything the swarm serves)."""

    def has(self, root: bytes) -> bool:
        """True if the whole piece is held."""
        ...

    def size(self, root: bytes) -> int:
        """Byte size of a held piece."""
        ...

    def layer(self, root: bytes) -> bytes:
        """The piece's chunk roots, 32 bytes each (``node.swarm.verify``)."""
        ...

    def read_chunk(self, root: bytes, index: int) -> bytes:
        """Chunk ``index`` of a held piece (``CHUNK_SIZE`` bytes, the last may be short)."""
        ...


class PieceImporter(Protocol):
    """Write side: takes pieces that arrived by push or pull."""

    def accept_push(self, peer_id: bytes, root: bytes, size: int) -> str | None:
        """``None`` to accept a piece ``peer_id`` offers, else the reason for refusing."""
        ...

    def staging_dir(self) -> Path:
        """Directory for partial files, on the same filesystem as the store (rename)."""
        ...

    def import_piece(self, root: bytes, size: int, path: Path, layer: bytes) -> None:
        """Take ownership of ``path``: complete, verified against ``root``, fsynced."""
        ...


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX: fsync the directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: temp file, fsync, rename, fsync dir."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


class FilePieceStore:
    """
    Pieces as files in one directory: ``<root hex>.piece`` and ``<root hex>.layer``.

    Push acceptance is explicit: ``expect(root, size)`` first (a provider expects the
    pieces of the deals it accepted); ``accept_all=True`` accepts any offer (tests).
    """

    def __init__(self, directory: Path, *, accept_all: bool = False) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "staging").mkdir(exist_ok=True)
        self._accept_all = accept_all
        self._expected: dict[bytes, int] = {}
        self._fds: dict[bytes, int] = {}
        self._layers: dict[bytes, bytes] = {}

    def _path(self, root: bytes, suffix: str) -> Path:
        return self.directory / f"{root.hex()}.{suffix}"

    # -- PieceStore ------------------------------------------------------------------------
    def has(self, root: bytes) -> bool:
        return root in self._fds or (
            self._path(root, "piece").exists() and self._path(root, "layer").exists()
        )

    def size(self, root: bytes) -> int:
        return os.fstat(self._fd(root)).st_size

    def layer(self, root: bytes) -> bytes:
        layer = self._layers.get(root)
        if layer is None:
            layer = self._layers[root] = self._path(root, "layer").read_bytes()
        return layer

    def read_chunk(self, root: bytes, index: int) -> bytes:
        fd = self._fd(root)
        length = chunk_length(os.fstat(fd).st_size, index)
        data = os.pread(fd, length, index * CHUNK_SIZE)
        if len(data) != length:
            raise OSError(f"short read of chunk {index} of {root.hex()}")
        return data

    def _fd(self, root: bytes) -> int:
        fd = self._fds.get(root)
        if fd is None:
            fd = self._fds[root] = os.open(self._path(root, "piece"), os.O_RDONLY)
        return fd

    # -- PieceImporter ---------------------------------------------------------------------
    def expect(self, root: bytes, size: int) -> None:
        """Accept a future push of ``root`` (``size`` bytes)."""
        self._expected[root] = size

    def accept_push(self, peer_id: bytes, root: bytes, size: int) -> str | None:
        if self.has(root):
            return "already stored"
        if self._accept_all or self._expected.get(root) == size:
            return None
        return "not expected"

    def staging_dir(self) -> Path:
        return self.directory / "staging"

    def import_piece(self, root: bytes, size: int, path: Path, layer: bytes) -> None:
        if len(layer) != chunk_count(size) * HASH_SIZE or os.path.getsize(path) != size:
            raise SwarmUsageError(f"import of {root.hex()}: size or layer does not match")
        write_atomic(self._path(root, "layer"), layer)
        os.replace(path, self._path(root, "piece"))
        fsync_dir(self.directory)
        self._expected.pop(root, None)

    # -- convenience -----------------------------------------------------------------------
    def add(self, piece: bytes) -> bytes:
        """Store a piece held in memory; returns its root."""
        layer = layer_of(piece)
        root = bytes(root_of_nodes([layer[i : i + 32] for i in range(0, len(layer), 32)]))  # type: ignore[misc]
        write_atomic(self._path(root, "piece"), piece)
        write_atomic(self._path(root, "layer"), layer)
        return root

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
