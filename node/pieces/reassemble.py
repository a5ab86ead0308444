"""
The way back: chunks of any ``k`` shares per stripe -> the original file, byte for byte.

``Reassembler`` takes share chunks in any order (stripe ``j`` from chunk ``j`` of any ``k``
shares, different stripes from different shares, as a swarm download delivers them),
decodes and decrypts each stripe as soon as it has ``k`` chunks, and writes its plaintext
in place in a temporary file beside the output. Memory holds only incomplete stripes, up
to ``PiecesConfig.reassembly_memory``; beyond that their chunks wait in a spool file.
``finish`` checks the keyed plaintext digest over the whole output, then fsyncs and
renames it into place: a wrong key, a tampered chunk or a missing stripe never leaves a
file under the output name.

``reassemble_from_share_files`` is the whole-file convenience: it checks each share file
against its root from the manifest, excludes corrupt ones, and streams the rest stripe by
stripe.
"""

from __future__ import annotations

import contextlib
import hmac
import os
from collections.abc import Mapping
from concurrent.futures import Executor
from pathlib import Path
from types import TracebackType

from node.pieces.config import DEFAULT_CONFIG, PiecesConfig
from node.pieces.errors import (
    CorruptShare,
    InvalidArgument,
    NotEnoughShares,
    Tampered,
    UnreadableInput,
    UnwritableOutput,
)
from node.pieces.files import (
    ensure_space,
    fsync_dir,
    pwrite_all,
    remove_quietly,
    reserve,
    temp_path,
)
from node.pieces.layout import CHUNK_SIZE
from node.pieces.manifest import Manifest, SignedManifest
from node.pieces.merkle import piece_roots_and_layers
from node.pieces.stripes import StripeCodec

_Spooled = tuple[int, int]
"""``(offset, length)`` of a chunk parked in the spool file."""


class Reassembler:
    """
    Rebuilds one file from share chunks.

    Parameters
    ----------
    manifest :
        The file's manifest (decoded and verified).
    secret :
        The client's secret; ``WrongKey`` at once if it did not prepare the file.
    out_path :
        Where the file goes; written only by ``finish``, atomically.
    config :
        ``reassembly_memory`` bounds the chunks held for incomplete stripes.

    Use as a context manager, or call ``abort`` on failure, to remove the temporary files.
    """

    def __init__(
        self,
        manifest: Manifest | SignedManifest,
        secret: bytes,
        out_path: str | os.PathLike[str],
        *,
        config: PiecesConfig = DEFAULT_CONFIG,
    ) -> None:
        self.manifest = manifest.manifest if isinstance(manifest, SignedManifest) else manifest
        m = self.manifest
        keys = m.keys(secret)
        self._codec = StripeCodec(m.file_size, m.redundancy, m.salt, keys.stream_keys)
        self._mac = keys.plaintext_mac()
        self._config = config
        self.out_path = Path(out_path)
        if not self.out_path.parent.is_dir():
            raise UnwritableOutput(f"{self.out_path.parent}: not a directory")
        ensure_space(self.out_path.parent, m.file_size)
        self._done = bytearray(m.stripes)
        self._remaining = m.stripes
        self._mac_next = 0
        self._pending: dict[int, dict[int, bytes | _Spooled]] = {}
        self._in_memory = 0
        self._spool_path = temp_path(self.out_path.with_name(self.out_path.name + ".spool"))
        self._spool_fd: int | None = None
        self._spool_end = 0
        self._tmp = temp_path(self.out_path)
        try:
            self._fd = os.open(self._tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise UnwritableOutput(f"{self._tmp}: {exc.strerror}") from exc
        self._closed = False
        try:
            reserve(self._fd, m.file_size, self.out_path.parent)
        except BaseException:
            self.abort()
            raise

    @property
    def stripes(self) -> int:
        """Stripes of the file."""
        return self.manifest.stripes

    @property
    def remaining(self) -> int:
        """Stripes not yet rebuilt."""
        return self._remaining

    def is_complete(self, stripe: int) -> bool:
        """True once stripe ``stripe`` is decoded and written."""
        return bool(self._done[stripe])

    def add(self, stripe: int, share_index: int, data: bytes | bytearray | memoryview) -> bool:
        """
        Give chunk ``stripe`` of share ``share_index`` (verified against its layer by the
        caller, or not: the AEAD catches what the layer would have).

        Returns
        -------
        used : bool
            False if the stripe was already rebuilt or already holds that share's chunk.

        Raises
        ------
        CorruptShare
            ``data`` does not have the length of that chunk.
        Tampered
            The stripe, now complete, does not authenticate; its chunks are dropped so
            that it can be retried from other shares.
        """
        self._check_open()
        if not 0 <= stripe < self.stripes or not 0 <= share_index < self.manifest.n:
            raise InvalidArgument(f"no chunk {stripe} of share {share_index} in this file")
        if len(data) != self.manifest.block_size(stripe):
            raise CorruptShare(
                f"chunk {stripe} of share {share_index} is {len(data)} bytes, expected "
                f"{self.manifest.block_size(stripe)}",
                share_index,
            )
        if self._done[stripe]:
            return False
        held = self._pending.setdefault(stripe, {})
        if share_index in held:
            return False
        held[share_index] = self._hold(data if isinstance(data, bytes) else bytes(data))
        if len(held) == self.manifest.k:
            self._complete(stripe, self._pending.pop(stripe))
        return True

    def finish(self) -> Path:
        """
        Check the plaintext digest, then move the file into place.

        Raises ``NotEnoughShares`` (and keeps the state, so more chunks can be added) if a
        stripe is missing, ``Tampered`` (and removes everything) if the digest differs.
        """
        self._check_open()
        if self._remaining:
            raise NotEnoughShares(
                f"{self._remaining} of {self.stripes} stripes lack {self.manifest.k} chunks"
            )
        self._advance_mac(None, -1)
        if not hmac.compare_digest(self._mac.digest(), self.manifest.plaintext_mac):
            self.abort()
            raise Tampered("the rebuilt file does not match the manifest's plaintext digest")
        os.fsync(self._fd)
        os.replace(self._tmp, self.out_path)
        fsync_dir(self.out_path.parent)
        self._close()
        return self.out_path

    def abort(self) -> None:
        """Drop everything written so far."""
        if not self._closed:
            self._close()
            remove_quietly(self._tmp)

    def __enter__(self) -> Reassembler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()

    def _hold(self, data: bytes) -> bytes | _Spooled:
        if self._in_memory + len(data) <= self._config.reassembly_memory:
            self._in_memory += len(data)
            return data
        if self._spool_fd is None:
            self._spool_fd = os.open(self._spool_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        offset = self._spool_end
        pwrite_all(self._spool_fd, data, offset)
        self._spool_end += len(data)
        return offset, len(data)

    def _release(self, held: bytes | _Spooled) -> bytes:
        if isinstance(held, bytes):
            self._in_memory -= len(held)
            return held
        assert self._spool_fd is not None
        offset, length = held
        return os.pread(self._spool_fd, length, offset)

    def _complete(self, stripe: int, held: dict[int, bytes | _Spooled]) -> None:
        blocks = {share: self._release(h) for share, h in held.items()}
        plaintext = self._codec.decode(stripe, blocks)
        offset = self._codec.plaintext_span(stripe)[0]
        for chunk in plaintext:
            pwrite_all(self._fd, chunk, offset)
            offset += len(chunk)
        self._done[stripe] = 1
        self._remaining -= 1
        self._advance_mac(plaintext, stripe)

    def _advance_mac(self, plaintext: list[bytes] | None, stripe: int) -> None:
        """Feed the digest every rebuilt stripe in file order: from memory for the stripe
        just rebuilt, read back from the output for those rebuilt earlier out of order."""
        while self._mac_next < self.stripes and self._done[self._mac_next]:
            if self._mac_next == stripe and plaintext is not None:
                for chunk in plaintext:
                    self._mac.update(chunk)
            else:
                offset, length = self._codec.plaintext_span(self._mac_next)
                self._mac.update(os.pread(self._fd, length, offset))
            self._mac_next += 1

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgument("this Reassembler is finished or aborted")

    def _close(self) -> None:
        self._closed = True
        os.close(self._fd)
        if self._spool_fd is not None:
            os.close(self._spool_fd)
            remove_quietly(self._spool_path)
        self._pending.clear()


def reassemble_from_share_files(
    manifest: Manifest | SignedManifest,
    secret: bytes,
    share_paths: Mapping[int, str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    *,
    pool: Executor | None = None,
    config: PiecesConfig = DEFAULT_CONFIG,
) -> Path:
    """
    Rebuild a file from share files on disk.

    The first ``k`` shares in share order (data shares first: they need no decoding) are
    checked against their roots, all at once on the workers; a missing, wrong-sized or
    corrupt share is excluded and replaced by the next, until ``k`` are good.

    Parameters
    ----------
    share_paths :
        Share index -> file holding that share.

    Raises
    ------
    WrongKey
        The secret did not prepare this file (checked before any share is read).
    NotEnoughShares
        Fewer than ``k`` good shares; ``excluded`` says what was wrong with the others.
    """
    m = manifest.manifest if isinstance(manifest, SignedManifest) else manifest
    m.keys(secret)  # WrongKey before any work
    for index in share_paths:
        if not 0 <= index < m.n:
            raise InvalidArgument(f"share index {index} out of range for n = {m.n}")
    good: list[int] = []
    excluded: dict[int, str] = {}
    candidates = sorted(share_paths)
    while len(good) < m.k and candidates:
        batch, candidates = candidates[: m.k - len(good)], candidates[m.k - len(good) :]
        sized = []
        for index in batch:
            try:
                actual = os.stat(share_paths[index]).st_size
            except OSError as exc:
                excluded[index] = f"unreadable: {exc.strerror}"
                continue
            if actual != m.share_size:
                excluded[index] = f"{actual} bytes, expected {m.share_size}"
            else:
                sized.append(index)
        commitments = piece_roots_and_layers(
            [(share_paths[i], m.share_size) for i in sized], pool=pool, config=config
        )
        for index, commitment in zip(sized, commitments, strict=True):
            if commitment is None:
                excluded[index] = "unreadable"
            elif commitment[0] != m.shares[index].root:
                excluded[index] = "does not match its root"
            else:
                good.append(index)
    if len(good) < m.k:
        raise NotEnoughShares(
            f"{len(good)} good shares of {m.n}, {m.k} needed; excluded: {excluded}", excluded
        )
    with contextlib.ExitStack() as files, Reassembler(m, secret, out_path, config=config) as out:
        fds = {}
        for index in good:
            try:
                fds[index] = os.open(share_paths[index], os.O_RDONLY)
            except OSError as exc:
                raise UnreadableInput(f"{share_paths[index]}: {exc.strerror}") from exc
            files.callback(os.close, fds[index])
        for stripe in range(m.stripes):
            size = m.block_size(stripe)
            for index, fd in fds.items():
                chunk = os.pread(fd, size, stripe * CHUNK_SIZE)
                if len(chunk) != size:
                    raise UnreadableInput(f"{share_paths[index]}: shrank while it was read")
                out.add(stripe, index, chunk)
        return out.finish()
