"""
Fast piece commitment: the Merkle Tree Hash of ``contracts.spec.commitment`` (RFC 9162
§2.1.1 over 1 KiB leaves), computed chunk by chunk, streaming, on several cores.

This is the same function as ``contracts.spec.commitment.merkle_root``, only faster; the
tests hold the two together (``tests/pieces/test_merkle.py``). Three facts make it fast:

- The commitment over the leaves equals ``root_of_nodes`` over the roots of the aligned
  256-leaf chunks (the spec's ``root_of_nodes`` docstring), so chunks are hashed
  independently, by any process, and their roots are the piece's *layer*.
- RFC 9162's tree (split at the largest power of two below ``n``) is the tree built level
  by level, pairing neighbours and carrying an odd last node up unchanged. That loop needs
  no recursion or slicing (``fold``).
- Per hash, Python pays a fixed cost (~0.25 µs for OpenSSL's context set-up) next to
  ~0.5 µs of SHA-256 work per leaf, so the loops below are kept to the bare calls.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from hashlib import sha256
from typing import Final

from contracts.spec.commitment import (
    EMPTY_ROOT,
    LEAF_PREFIX,
    LEAF_SIZE,
    NODE_PREFIX,
    Hash32,
    hash_leaf,
)
from node.pieces.config import DEFAULT_CONFIG, PiecesConfig
from node.pieces.errors import UnreadableInput
from node.pieces.layout import CHUNK_SIZE, piece_chunk_count
from node.pieces.workers import pool_for, run_tasks, split_range

HASH_SIZE: Final = 32


def leaf_hashes(data: bytes | bytearray | memoryview) -> list[bytes]:
    """``hash_leaf`` of every leaf of ``data``, the last one zero-padded."""
    view = memoryview(data)
    full = len(view) - len(view) % LEAF_SIZE
    out: list[bytes] = []
    append = out.append
    for offset in range(0, full, LEAF_SIZE):
        h = sha256(LEAF_PREFIX)
        h.update(view[offset : offset + LEAF_SIZE])
        append(h.digest())
    if full < len(view):
        append(hash_leaf(bytes(view[full:])))
    return out


def tree_levels(nodes: Sequence[bytes]) -> list[list[bytes]]:
    """
    Every level of the RFC 9162 tree over ``nodes``, bottom first, built level by level:
    neighbours pair up and an odd last node is carried up unchanged.

    That is RFC 9162's tree (split at the largest power of two below ``n``): at every
    level the nodes of the left, power-of-two part pair among themselves, and an odd last
    node is the root of the right part so far, carried up until it meets its sibling.
    """
    levels = [list(nodes)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        pairs = iter(level)
        upper = [sha256(NODE_PREFIX + a + b).digest() for a, b in zip(pairs, pairs, strict=False)]
        if len(level) & 1:
            upper.append(level[-1])
        levels.append(upper)
    return levels


def fold(nodes: Sequence[bytes]) -> Hash32:
    """RFC 9162 Merkle Tree Hash over already-hashed nodes (``root_of_nodes``, faster)."""
    return Hash32(tree_levels(nodes)[-1][0]) if nodes else EMPTY_ROOT


def chunk_root(data: bytes | bytearray | memoryview) -> Hash32:
    """Root of one chunk (at most ``CHUNK_SIZE`` bytes): the MTH over its leaves."""
    return fold(leaf_hashes(data))


def layer_of(data: bytes | bytearray | memoryview) -> bytes:
    """The layer of an in-memory piece: its chunk roots, concatenated."""
    view = memoryview(data)
    return b"".join(chunk_root(view[o : o + CHUNK_SIZE]) for o in range(0, len(view), CHUNK_SIZE))


def split_layer(layer: bytes) -> list[bytes]:
    """The 32-byte chunk roots of a layer."""
    return [layer[i : i + HASH_SIZE] for i in range(0, len(layer), HASH_SIZE)]


def root_of_layer(layer: bytes) -> Hash32:
    """The piece root a layer commits to (``EMPTY_ROOT`` for an empty piece)."""
    return fold(split_layer(layer))


class PieceHasher:
    """
    Streaming commitment of one piece: feed its bytes in any slices, then ``finish``.

    Memory is one chunk plus the layer (32 bytes per 256 KiB).
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._layer = bytearray()
        self._size = 0
        self._done = False

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._size

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the piece."""
        if self._done:
            raise ValueError("PieceHasher.update after finish")
        view = memoryview(data)
        self._size += len(view)
        if self._pending:
            take = min(CHUNK_SIZE - len(self._pending), len(view))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < CHUNK_SIZE:
                return
            self._layer += chunk_root(self._pending)
            self._pending.clear()
        full = len(view) - len(view) % CHUNK_SIZE
        for offset in range(0, full, CHUNK_SIZE):
            self._layer += chunk_root(view[offset : offset + CHUNK_SIZE])
        self._pending += view[full:]

    def finish(self) -> tuple[Hash32, bytes]:
        """The piece's ``(root, layer)``; the hasher cannot be fed afterwards."""
        if not self._done:
            self._done = True
            if self._pending:
                self._layer += chunk_root(self._pending)
                self._pending = bytearray()
        layer = bytes(self._layer)
        return root_of_layer(layer), layer


@dataclass(frozen=True)
class _LayerTask:
    path: str
    piece_size: int
    first_chunk: int
    end_chunk: int
    read_size: int


def _layer_of_range(task: _LayerTask) -> bytes | None:
    """Worker: the layer entries of chunks ``[first_chunk, end_chunk)`` of a piece file,
    or None if the file cannot be read or is shorter than ``piece_size``."""
    per_read = max(1, task.read_size // CHUNK_SIZE) * CHUNK_SIZE
    buffer = bytearray(per_read)
    view = memoryview(buffer)
    layer = bytearray()
    position = task.first_chunk * CHUNK_SIZE
    end = min(task.end_chunk * CHUNK_SIZE, task.piece_size)
    try:
        fd = os.open(task.path, os.O_RDONLY)
    except OSError:
        return None
    try:
        while position < end:
            want = min(per_read, end - position)
            if os.preadv(fd, [view[:want]], position) != want:
                return None
            for offset in range(0, want, CHUNK_SIZE):
                layer += chunk_root(view[offset : min(offset + CHUNK_SIZE, want)])
            position += want
    except OSError:
        return None
    finally:
        os.close(fd)
    return bytes(layer)


def piece_roots_and_layers(
    pieces: Sequence[tuple[str | os.PathLike[str], int]],
    *,
    pool: Executor | None = None,
    config: PiecesConfig = DEFAULT_CONFIG,
) -> list[tuple[Hash32, bytes] | None]:
    """
    Commitments of several stored pieces at once, all their chunks spread over the workers.

    Parameters
    ----------
    pieces :
        ``(path, piece_size)`` of each piece; only the first ``piece_size`` bytes count.
    pool, config :
        As for ``piece_root_and_layer``.

    Returns
    -------
    commitments : list
        ``(root, layer)`` per piece, in order, or None for a file that cannot be read or
        is shorter than its size.
    """
    total = sum(size for _, size in pieces)
    executor = pool_for(pool, config, total)
    per_task = max(1, config.task_size // CHUNK_SIZE)
    if executor is not None:
        # At least two tasks per worker, so that a slow worker does not hold the end.
        chunks = sum(piece_chunk_count(size) for _, size in pieces)
        per_task = min(per_task, max(1, chunks // (2 * config.worker_count())))
    tasks, owners = [], []
    for number, (path, size) in enumerate(pieces):
        for a, b in split_range(0, piece_chunk_count(size), per_task):
            tasks.append(_LayerTask(os.fspath(path), size, a, b, config.read_size))
            owners.append(number)
    parts: list[list[bytes | None]] = [[] for _ in pieces]
    for number, part in zip(owners, run_tasks(executor, _layer_of_range, tasks), strict=True):
        parts[number].append(part)
    results: list[tuple[Hash32, bytes] | None] = []
    for piece_parts in parts:
        if any(part is None for part in piece_parts):
            results.append(None)
        else:
            layer = b"".join(p for p in piece_parts if p is not None)
            results.append((root_of_layer(layer), layer))
    return results


def piece_root_and_layer(
    path: str | os.PathLike[str],
    *,
    pool: Executor | None = None,
    config: PiecesConfig = DEFAULT_CONFIG,
) -> tuple[Hash32, bytes]:
    """
    Commitment of a piece stored in a file: ``(root, layer)``.

    Parameters
    ----------
    path :
        The piece file; its whole content is the piece.
    pool :
        Worker processes for a piece larger than ``config.parallel_threshold``; by
        default the process's shared pool (``node.pieces.workers.shared_pool``).
    config :
        Worker count, thresholds and read size.

    Raises
    ------
    UnreadableInput
        The file cannot be opened or read, or shrank while it was read.
    """
    name = os.fspath(path)
    try:
        piece_size = os.stat(name).st_size
    except OSError as exc:
        raise UnreadableInput(f"{name}: {exc.strerror}") from exc
    result = piece_roots_and_layers([(name, piece_size)], pool=pool, config=config)[0]
    if result is None:
        raise UnreadableInput(f"{name}: unreadable, or shrank while it was read")
    return result


def piece_root(data: bytes | bytearray | memoryview) -> Hash32:
    """Root of an in-memory piece (same value as ``contracts.spec.commitment.merkle_root``)."""
    return root_of_layer(layer_of(data))
