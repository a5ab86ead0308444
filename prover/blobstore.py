"""
The content-addressed blob store: pieces by root, each with its proof layer beside it.

    <blobs>/pieces/<first 2 hex digits>/<root hex>.piece    the piece's bytes
    <blobs>/pieces/<first 2 hex digits>/<root hex>.layer    its 256 KiB chunk roots
    <blobs>/staging/                                        partial uploads (swarm)

It is the swarm's ``PieceStore`` (what retrievals and repair pulls read) and its
``PieceImporter`` (where verified pushes land). A push is accepted only when a deal expects
exactly that root and size from that peer (``expect``); the swarm verifies the layer against
the root and every chunk against the layer while it writes the staging file, and
``import_piece`` re-checks the layer, writes it atomically and renames the fsynced piece
into place, fsyncing the directory. Only then does the push's ``Stored`` go out, so a piece
that was ever acknowledged survives a kill -9 at any instant. The layer is written before
the piece: a layer without its piece is an orphan that ``scan`` removes; a piece is never
present without its layer.

Proofs read the one challenged 256 KiB chunk and hash it (``node.pieces.layer.prove_leaf``),
so rot is caught before a proof goes on chain (``PieceMissing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from contracts.spec.commitment import verify_leaf
from node.pieces.errors import PiecesError
from node.pieces.files import atomic_write, free_space, fsync_dir
from node.pieces.layer import LayerTree, prove_leaf
from node.swarm.errors import SwarmUsageError
from node.swarm.verify import CHUNK_SIZE, HASH_SIZE, chunk_count, chunk_length, chunk_root
from node.swarm.verify import verify_layer as swarm_verify_layer
from prover.errors import NoSpace, PieceMissing, StorageError

MAX_OPEN_FILES: Final = 128
"""Piece files kept open for serving (least recently used are closed first)."""


@dataclass
class _Expected:
    size: int
    peer_id: bytes
    done: asyncio.Future[None]


class BlobStore:
    """
    Pieces on disk by root, with capacity accounting.

    Parameters
    ----------
    directory :
        The store's root directory (created if missing).
    capacity :
        Most bytes of pieces held at once, expected uploads included.
    reserve :
        Disk space left free whatever the capacity says.
    """

    def __init__(self, directory: Path, capacity: int, reserve: int = 0) -> None:
        self.directory = Path(directory)
        self.capacity = capacity
        self.reserve = reserve
        self._pieces_dir = self.directory / "pieces"
        self._staging = self.directory / "staging"
        self._pieces_dir.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(parents=True, exist_ok=True)
        self._held: dict[bytes, int] = {}
        self._expected: dict[bytes, _Expected] = {}
        self._trees: dict[bytes, LayerTree] = {}
        self._fds: OrderedDict[bytes, int] = OrderedDict()

    # ------------------------------------------------------------------ inventory

    def scan(self) -> dict[bytes, int]:
        """
        Find the pieces on disk (a piece with its layer, of a consistent length), remove
        leftovers of interrupted writes (temporary files, orphan layers, staging), and
        return root -> size. Contents are not hashed here (see ``verify``).
        """
        shutil.rmtree(self._staging, ignore_errors=True)
        self._staging.mkdir(parents=True, exist_ok=True)
        self._held.clear()
        for sub in sorted(self._pieces_dir.iterdir()):
            if not sub.is_dir():
                continue
            for path in sorted(sub.iterdir()):
                if path.name.startswith("."):  # a temporary file of an interrupted write
                    path.unlink(missing_ok=True)
                    continue
                root = _root_of(path)
                if root is None:
                    continue
                if path.suffix == ".layer" and not self.path(root).exists():
                    path.unlink(missing_ok=True)
                elif path.suffix == ".piece":
                    size = path.stat().st_size
                    layer = self.layer_path(root)
                    if (
                        size > 0
                        and layer.exists()
                        and layer.stat().st_size == (chunk_count(size) * HASH_SIZE)
                    ):
                        self._held[root] = size
        return dict(self._held)

    def path(self, root: bytes) -> Path:
        hexroot = root.hex()
        return self._pieces_dir / hexroot[:2] / f"{hexroot}.piece"

    def layer_path(self, root: bytes) -> Path:
        hexroot = root.hex()
        return self._pieces_dir / hexroot[:2] / f"{hexroot}.layer"

    def held(self) -> dict[bytes, int]:
        """Root -> size of every piece in the store."""
        return dict(self._held)

    @property
    def used(self) -> int:
        """Bytes of pieces held plus bytes promised to expected uploads."""
        return sum(self._held.values()) + sum(e.size for e in self._expected.values())

    @property
    def stored_bytes(self) -> int:
        return sum(self._held.values())

    def free_bytes(self) -> int:
        """What a new piece may take: the capacity left, bounded by the disk's free space."""
        disk = free_space(self.directory) - self.reserve
        return max(0, min(self.capacity - self.used, disk))

    # ------------------------------------------------------------------ PieceStore

    def has(self, root: bytes) -> bool:
        return root in self._held

    def size(self, root: bytes) -> int:
        return self._held[root]

    def layer(self, root: bytes) -> bytes:
        return self.tree(root).layer

    def read_chunk(self, root: bytes, index: int) -> bytes:
        """Chunk ``index`` of a held piece (serving side; raises ``OSError`` if unreadable)."""
        fd = self._fd(root)
        length = chunk_length(self._held[root], index)
        data = os.pread(fd, length, index * CHUNK_SIZE)
        if len(data) != length:
            raise OSError(errno.EIO, f"short read of chunk {index} of {root.hex()[:16]}")
        return data

    # ------------------------------------------------------------------ PieceImporter

    def expect(self, root: bytes, size: int, peer_id: bytes) -> asyncio.Future[None]:
        """
        Reserve ``size`` bytes for a push of ``root`` from ``peer_id``; the future completes
        when the piece is stored (or fails with the reason the import failed).

        Raises
        ------
        NoSpace
            The piece does not fit in the capacity or on the disk.
        StorageError
            The piece is already stored or expected.
        """
        if root in self._held or root in self._expected:
            raise StorageError(f"piece {root.hex()[:16]} is already stored or expected here")
        free = self.free_bytes()
        if size > free:
            raise NoSpace(f"a piece of {size} bytes does not fit ({free} bytes free)")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._expected[root] = _Expected(size, peer_id, done)
        return done

    def forget_expected(self, root: bytes) -> None:
        """Drop the reservation for ``root`` (the deal ended before or after the push)."""
        expected = self._expected.pop(root, None)
        if expected is not None and not expected.done.done():
            expected.done.cancel()

    def accept_push(self, peer_id: bytes, root: bytes, size: int) -> str | None:
        expected = self._expected.get(root)
        if root in self._held:
            return "already stored"
        if expected is None or expected.done.done():
            return "no deal expects this piece"
        if expected.size != size:
            return f"the deal is for {expected.size} bytes, not {size}"
        if expected.peer_id != peer_id:
            return "the deal was proposed by another peer"
        return None

    def staging_dir(self) -> Path:
        return self._staging

    def import_piece(self, root: bytes, size: int, path: Path, layer: bytes) -> None:
        """Take a verified, fsynced upload: layer first, then the piece, then fsync the dir."""
        expected = self._expected.get(root)
        try:
            if expected is None or expected.size != size or os.path.getsize(path) != size:
                raise SwarmUsageError(f"import of {root.hex()[:16]}: not the expected piece")
            if not swarm_verify_layer(root, size, layer):
                raise SwarmUsageError(f"import of {root.hex()[:16]}: layer does not match root")
            target = self.path(root)
            target.parent.mkdir(exist_ok=True)
            try:
                atomic_write(self.layer_path(root), layer)
            except PiecesError as exc:  # node.pieces.errors.NoSpace
                raise OSError(errno.ENOSPC, str(exc)) from None
            os.replace(path, target)
            fsync_dir(target.parent)
        except BaseException as exc:
            if expected is not None and not expected.done.done():
                expected.done.set_exception(
                    NoSpace(str(exc)) if isinstance(exc, OSError) else PieceMissing(root, str(exc))
                )
            raise
        self._held[root] = size
        self._expected.pop(root, None)
        if not expected.done.done():
            expected.done.set_result(None)

    # ------------------------------------------------------------------ proofs and checks

    def tree(self, root: bytes) -> LayerTree:
        """The layer tree of a held piece, read once and cached (``PieceMissing`` if bad)."""
        tree = self._trees.get(root)
        if tree is None:
            size = self._held.get(root)
            if size is None:
                raise PieceMissing(root, "not in the store")
            try:
                layer = self.layer_path(root).read_bytes()
            except OSError as exc:
                raise PieceMissing(root, f"layer unreadable: {exc.strerror}") from None
            if len(layer) != chunk_count(size) * HASH_SIZE:
                raise PieceMissing(root, "layer has the wrong length")
            tree = LayerTree(layer, size)
            if tree.root != root:
                raise PieceMissing(root, "layer does not match the root")
            self._trees[root] = tree
        return tree

    def prove(self, root: bytes, size: int, leaf: int) -> tuple[bytes, list[bytes]]:
        """
        The challenged ``leaf`` of piece ``root`` with its audit path, checked against the
        root with the reference verifier before it is returned (thread-safe: opens the file).

        Raises
        ------
        PieceMissing
            The piece is not held, unreadable, shorter than its size, or rotten.
        """
        if self._held.get(root) != size:
            raise PieceMissing(root, "not in the store with this size")
        tree = self.tree(root)
        try:
            data, path = prove_leaf(self.path(root), tree, size, leaf)
        except PiecesError as exc:
            raise PieceMissing(root, str(exc)) from None
        if not verify_leaf(root, size, leaf, data, path):  # type: ignore[arg-type]
            raise PieceMissing(root, f"leaf {leaf} does not verify against the root")
        return data, list(path)

    def present(self, root: bytes) -> bool:
        """Cheap check: the piece file exists with its size (no hashing)."""
        size = self._held.get(root)
        try:
            return size is not None and self.path(root).stat().st_size == size
        except OSError:
            return False

    def verify_chunk(self, root: bytes, index: int) -> bool:
        """Re-hash chunk ``index`` from disk against the layer (the scrub; thread-safe)."""
        size = self._held.get(root)
        if size is None:
            return False
        try:
            with open(self.path(root), "rb", buffering=0) as f:
                data = os.pread(f.fileno(), chunk_length(size, index), index * CHUNK_SIZE)
            entry = self.tree(root).chunk_root(index)
        except (OSError, PieceMissing):
            return False
        return len(data) == chunk_length(size, index) and chunk_root(data) == entry

    def delete(self, root: bytes) -> None:
        """Remove a piece and its layer (after its deals closed and its slot retired)."""
        fd = self._fds.pop(root, None)
        if fd is not None:
            os.close(fd)
        self._held.pop(root, None)
        self._trees.pop(root, None)
        self.path(root).unlink(missing_ok=True)
        self.layer_path(root).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            fsync_dir(self.path(root).parent)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    # ------------------------------------------------------------------ internal

    def _fd(self, root: bytes) -> int:
        fd = self._fds.get(root)
        if fd is not None:
            self._fds.move_to_end(root)
            return fd
        if root not in self._held:
            raise OSError(errno.ENOENT, f"piece {root.hex()[:16]} not held")
        fd = os.open(self.path(root), os.O_RDONLY)
        self._fds[root] = fd
        if len(self._fds) > MAX_OPEN_FILES:
            _, oldest = self._fds.popitem(last=False)
            os.close(oldest)
        return fd


def _root_of(path: Path) -> bytes | None:
    if path.suffix not in (".piece", ".layer") or len(path.stem) != 64:
        return None
    try:
        return bytes.fromhex(path.stem)
    except ValueError:
        return None
