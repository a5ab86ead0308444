"""
Decoding a download while it runs: stripes are decoded and decrypted on worker processes as
soon as ``k`` of their chunks are on disk, and the keyed plaintext digest follows the
decoded prefix on a thread, so that the file is rebuilt with the download's last chunk
instead of in a second pass after it.

The work per stripe is ``node.pieces.stripes.StripeCodec.decode`` (zfec, then ChaCha20-
Poly1305 with the chunk's index and last-chunk flag: docs/pieces.md), the same as the
pieces ``Reassembler``; what differs is the schedule. The event loop that receives and
verifies chunks keeps one core; decoding takes the other; the digest (OpenSSL, which drops
the GIL on large updates) runs beside both. Output goes to a preallocated temporary file
beside the target; ``finish`` checks the digest against the manifest, fsyncs and renames:
the target appears whole and verified, or not at all.

Chunks reach the download's journal (``market.spool.ChunkSpool``) with ``pwrite`` before
their stripe is handed over, so a worker reading them by offset sees them through the page
cache.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import os
import queue
import threading
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from market.errors import RetrievalFailed, UsageError
from market.spool import ChunkSpool
from node.pieces.config import DEFAULT_CONFIG, PiecesConfig
from node.pieces.errors import NoSpace, PiecesError
from node.pieces.files import (
    ensure_space,
    fsync_dir,
    pwrite_all,
    remove_quietly,
    reserve,
    temp_path,
)
from node.pieces.layout import CHUNK_SIZE
from node.pieces.manifest import Manifest
from node.pieces.modes import Mode
from node.pieces.stripes import StripeCodec
from node.pieces.workers import pool_for

BATCH_BYTES: Final = 32 * 1024 * 1024
"""Plaintext handed to a worker per job: large enough to amortise the round trip, small
enough that the last job after the download's end is short."""
MAC_READ: Final = 8 * 1024 * 1024
"""Bytes read back per digest update."""


Stripes = tuple[tuple[int, tuple[tuple[int, int, int], ...]], ...]
"""(stripe, ((share, offset, length) of each of ``k`` chunks in the spool)), in order."""


@dataclass(frozen=True, repr=False)
class DecodeJob:
    """Worker job: decode ``stripes`` from the share files into the output file."""

    file_size: int
    mode: Mode
    salt: bytes
    stream_keys: tuple[bytes, ...]
    spool_path: str
    stripes: Stripes
    out_path: str


def decode_stripes(job: DecodeJob) -> int:
    """Run a ``DecodeJob`` (in a worker process or a thread); returns the stripes written."""
    codec = StripeCodec(job.file_size, job.mode, job.salt, job.stream_keys)
    spool = os.open(job.spool_path, os.O_RDONLY)
    try:
        out = os.open(job.out_path, os.O_WRONLY)
        try:
            for stripe, chunks in job.stripes:
                blocks = {share: os.pread(spool, n, at) for share, at, n in chunks}
                offset = codec.plaintext_span(stripe)[0]
                for chunk in codec.decode(stripe, blocks):
                    pwrite_all(out, chunk, offset)
                    offset += len(chunk)
            return len(job.stripes)
        finally:
            os.close(out)
    finally:
        os.close(spool)


class StripeAssembler:
    """
    Rebuilds one file from stripes handed over as they complete (``ready``).

    Parameters
    ----------
    manifest :
        The file's manifest.
    secret :
        The client's secret (``WrongKey`` at once if it is not the owner's).
    out_path :
        The target; written only by ``finish``, atomically.
    spool :
        The download's chunk journal (where ``ready`` looks the chunks up).
    config :
        Worker processes (files under ``parallel_threshold`` are decoded on a thread).
    """

    def __init__(
        self,
        manifest: Manifest,
        secret: bytes,
        out_path: Path,
        spool: ChunkSpool,
        *,
        config: PiecesConfig = DEFAULT_CONFIG,
        pool: Executor | None = None,
    ) -> None:
        self.m = manifest
        keys = manifest.keys(secret)
        self.out_path = out_path
        self._spool = spool
        self._mac = keys.plaintext_mac()
        self._codec = StripeCodec(
            manifest.file_size, manifest.redundancy, manifest.salt, keys.stream_keys
        )
        self._template = DecodeJob(
            manifest.file_size,
            manifest.redundancy,
            manifest.salt,
            keys.stream_keys,
            str(spool.path),
            (),
            "",
        )
        try:
            ensure_space(out_path.parent, manifest.file_size)
        except NoSpace as exc:
            raise UsageError(str(exc)) from None
        self._tmp = temp_path(out_path)
        fd = os.open(self._tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            reserve(fd, manifest.file_size, out_path.parent)
        except PiecesError as exc:
            os.close(fd)
            remove_quietly(self._tmp)
            raise UsageError(str(exc)) from None
        self._fd = fd
        self._pool = pool_for(pool, config, manifest.file_size)
        self._per_job = max(1, BATCH_BYTES // max(1, manifest.k * CHUNK_SIZE))
        self._batch: list[tuple[int, tuple[tuple[int, int, int], ...]]] = []
        self._jobs: list[asyncio.Future[int]] = []
        self._decoded = bytearray(manifest.stripes)
        self._prefix = 0
        """Stripes [0, prefix) are decoded."""
        self._mac_queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._mac_error: BaseException | None = None
        self._mac_thread = threading.Thread(target=self._mac_loop, name="plaintext-mac")
        self._mac_thread.start()
        self._closed = False

    # ------------------------------------------------------------------ feeding

    def ready(self, stripe: int, shares: Iterable[int]) -> None:
        """Stripe ``stripe`` can be decoded from ``shares`` (at least ``k``; data ones first)."""
        chosen = sorted(shares)[: self.m.k]  # data shares first: zfec has nothing to do
        where = tuple((sh, *self._spool.locate(sh, stripe)) for sh in chosen)
        self._batch.append((stripe, where))
        if len(self._batch) >= self._per_job:
            self.flush()

    def flush(self) -> None:
        """Hand the stripes gathered so far to a worker."""
        if not self._batch:
            return
        stripes = tuple(self._batch)
        self._batch = []
        job = DecodeJob(
            self._template.file_size,
            self._template.mode,
            self._template.salt,
            self._template.stream_keys,
            self._template.spool_path,
            stripes,
            str(self._tmp),
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int]
        if self._pool is None:
            future = loop.run_in_executor(None, decode_stripes, job)
        else:
            future = asyncio.wrap_future(self._pool.submit(decode_stripes, job), loop=loop)
        future.add_done_callback(functools.partial(self._decoded_some, stripes=stripes))
        self._jobs.append(future)

    def _decoded_some(self, future: asyncio.Future[int], *, stripes: Stripes) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        for stripe, _ in stripes:
            self._decoded[stripe] = 1
        start = self._prefix
        while self._prefix < self.m.stripes and self._decoded[self._prefix]:
            self._prefix += 1
        if self._prefix > start:
            self._mac_queue.put(self._prefix)

    def _mac_loop(self) -> None:
        """Feed the digest the decoded prefix of the file, in order."""
        position = 0
        try:
            while True:
                prefix = self._mac_queue.get()
                if prefix is None:
                    return
                end = (
                    self.m.file_size
                    if prefix >= self.m.stripes
                    else self._codec.plaintext_span(prefix)[0]
                )
                while position < end:
                    data = os.pread(self._fd, min(MAC_READ, end - position), position)
                    if not data:
                        raise OSError("the output file is shorter than what was decoded")
                    self._mac.update(data)
                    position += len(data)
        except BaseException as exc:  # reported by finish
            self._mac_error = exc

    # ------------------------------------------------------------------ finishing

    async def finish(self) -> Path:
        """Wait for every stripe, check the digest, and move the file into place."""
        self.flush()
        try:
            await asyncio.gather(*self._jobs)
        except PiecesError as exc:
            self.abort()
            raise RetrievalFailed(f"the downloaded shares do not rebuild the file: {exc}") from None
        except OSError as exc:
            self.abort()
            raise UsageError(f"cannot write {self.out_path}: {exc}") from None
        if self._prefix < self.m.stripes:
            self.abort()
            raise RetrievalFailed(f"{self.m.stripes - self._prefix} stripes were never complete")
        self._mac_queue.put(None)
        await asyncio.to_thread(self._mac_thread.join)
        if self._mac_error is not None:
            self.abort()
            raise UsageError(f"cannot read back {self._tmp}: {self._mac_error}")
        if not hmac.compare_digest(self._mac.digest(), self.m.plaintext_mac):
            self.abort()
            raise RetrievalFailed("the rebuilt file does not match the manifest's digest")
        await asyncio.to_thread(self._commit)
        return self.out_path

    def _commit(self) -> None:
        os.fsync(self._fd)
        os.replace(self._tmp, self.out_path)
        fsync_dir(self.out_path.parent)
        self._close()

    def abort(self) -> None:
        """Drop the temporary output (idempotent); running jobs finish into the void."""
        if self._closed:
            return
        for job in self._jobs:
            job.cancel()
        self._mac_queue.put(None)
        self._mac_thread.join()
        self._close()
        remove_quietly(self._tmp)

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)
