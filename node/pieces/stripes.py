"""
One stripe at a time: plaintext -> ``n`` share chunks, and any ``k`` of them -> plaintext.

``StripeCodec`` is the sans-I/O core (bytes in, bytes out). ``encode_stripe_range`` is the
worker job of ``prepare_file``: it reads a range of stripes from the input file, encodes
them, and writes each share chunk and its layer entry at their offsets in the output
files, so that any number of workers can fill one set of shares in parallel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from node.pieces.crypto import ChunkCipher
from node.pieces.erasure import Block, StripeCoder
from node.pieces.errors import InvalidArgument, UnreadableInput
from node.pieces.files import pwrite_all
from node.pieces.layout import (
    CHUNK_SIZE,
    PLAINTEXT_CHUNK_SIZE,
    block_size,
    chunk_count,
    stripe_count,
    stripe_span,
)
from node.pieces.merkle import HASH_SIZE, chunk_root
from node.pieces.modes import Copies, Mode


class StripeCodec:
    """
    Encrypts and codes the stripes of one file, and decodes and decrypts them back.

    Parameters
    ----------
    file_size :
        Plaintext size of the file.
    mode :
        Redundancy mode.
    salt :
        The file's salt (bound into every chunk's associated data).
    stream_keys :
        ``FileKeys.stream_keys``: one key per copy, or the one key of an erasure-coded file.
    """

    def __init__(self, file_size: int, mode: Mode, salt: bytes, stream_keys: tuple[bytes, ...]):
        if len(stream_keys) != mode.streams:
            raise InvalidArgument(f"{mode} needs {mode.streams} stream keys")
        self.file_size = file_size
        self.mode = mode
        self.k = mode.k
        self.n = mode.n
        self.chunks = chunk_count(file_size)
        self.stripes = stripe_count(file_size, self.k)
        self._ciphers = [ChunkCipher(key, salt, s) for s, key in enumerate(stream_keys)]
        self._coder = None if isinstance(mode, Copies) else StripeCoder(mode.k, mode.n)

    def plaintext_span(self, stripe: int) -> tuple[int, int]:
        """``(offset, length)`` of the plaintext of stripe ``stripe`` in the file."""
        self._check(stripe)
        offset = stripe * self.k * PLAINTEXT_CHUNK_SIZE
        return offset, min(self.k * PLAINTEXT_CHUNK_SIZE, self.file_size - offset)

    def block_size(self, stripe: int) -> int:
        """Bytes of every share's chunk ``stripe``."""
        self._check(stripe)
        return block_size(self.file_size, self.k, stripe)

    def encode(self, stripe: int, plaintext: bytes | memoryview) -> list[Block]:
        """Chunk ``stripe`` of every share, in share order, from the stripe's plaintext."""
        if len(plaintext) != self.plaintext_span(stripe)[1]:
            raise InvalidArgument(f"stripe {stripe} has {self.plaintext_span(stripe)[1]} bytes")
        first = stripe * self.k
        sealed: list[list[bytes]] = [[] for _ in self._ciphers]
        for c in range(first, min(first + self.k, self.chunks)):
            at = (c - first) * PLAINTEXT_CHUNK_SIZE
            piece = plaintext[at : at + PLAINTEXT_CHUNK_SIZE]
            for stream, cipher in enumerate(self._ciphers):
                sealed[stream].append(cipher.seal(c, c == self.chunks - 1, piece))
        if self._coder is None:
            return [chunks[0] for chunks in sealed]
        return self._coder.encode(sealed[0])

    def decode(self, stripe: int, blocks: Mapping[int, Block]) -> list[bytes]:
        """
        The plaintext chunks of stripe ``stripe`` from chunk ``stripe`` of any ``k`` shares.

        Raises ``Tampered`` if a chunk does not authenticate (nothing of the stripe is
        returned then), ``NotEnoughShares`` with fewer than ``k`` blocks.
        """
        self._check(stripe)
        if self._coder is None:
            share = min(blocks)
            if not 0 <= share < self.n:
                raise InvalidArgument(f"share index {share} out of range for n={self.n}")
            if len(blocks[share]) != self.block_size(stripe):
                raise InvalidArgument(f"chunk {stripe} of share {share} has the wrong size")
            return [self._ciphers[share].open(stripe, stripe == self.chunks - 1, blocks[share])]
        offset, length = stripe_span(self.file_size, self.k, stripe)
        data = self._coder.decode(blocks, length)
        if length == self.k * CHUNK_SIZE:
            ciphertext = data  # a full stripe: data block i is ciphertext chunk i
        else:
            joined = memoryview(b"".join(data))[:length]
            ciphertext = [joined[o : o + CHUNK_SIZE] for o in range(0, length, CHUNK_SIZE)]
        first = offset // CHUNK_SIZE
        return [
            self._ciphers[0].open(first + i, first + i == self.chunks - 1, chunk)
            for i, chunk in enumerate(ciphertext)
        ]

    def _check(self, stripe: int) -> None:
        if not 0 <= stripe < self.stripes:
            raise InvalidArgument(f"stripe {stripe} out of range ({self.stripes} stripes)")


@dataclass(frozen=True, repr=False)
class StripeJob:
    """Worker job: encode stripes ``[first, end)`` of ``input_path`` into the share files."""

    input_path: str
    file_size: int
    mode: Mode
    salt: bytes
    stream_keys: tuple[bytes, ...]
    share_paths: tuple[str, ...]
    layer_paths: tuple[str, ...]
    first: int
    end: int


def encode_stripe_range(job: StripeJob) -> None:
    """
    Run a ``StripeJob``: for each stripe, read its plaintext, encode it, and write chunk
    ``j`` of share ``i`` at ``j * CHUNK_SIZE`` in share file ``i`` and its root at
    ``j * 32`` in layer file ``i``. Files are written in place (already sized by the
    caller); one stripe is in memory at a time.
    """
    codec = StripeCodec(job.file_size, job.mode, job.salt, job.stream_keys)
    buffer = bytearray(codec.k * PLAINTEXT_CHUNK_SIZE)
    view = memoryview(buffer)
    layers = [bytearray() for _ in job.share_paths]
    fds: list[int] = []
    try:
        try:
            source = os.open(job.input_path, os.O_RDONLY)
        except OSError as exc:
            raise UnreadableInput(f"{job.input_path}: {exc.strerror}") from exc
        fds.append(source)
        shares = []
        for path in job.share_paths:
            shares.append(os.open(path, os.O_WRONLY))
            fds.append(shares[-1])
        for stripe in range(job.first, job.end):
            offset, length = codec.plaintext_span(stripe)
            try:
                got = os.preadv(source, [view[:length]], offset)
            except OSError as exc:
                raise UnreadableInput(f"{job.input_path}: {exc.strerror}") from exc
            if got != length:
                raise UnreadableInput(f"{job.input_path}: shrank while it was read")
            for i, block in enumerate(codec.encode(stripe, view[:length])):
                layers[i] += chunk_root(block)
                pwrite_all(shares[i], block, stripe * CHUNK_SIZE)
        for path, layer in zip(job.layer_paths, layers, strict=True):
            fd = os.open(path, os.O_WRONLY)
            fds.append(fd)
            pwrite_all(fd, layer, job.first * HASH_SIZE)
    finally:
        for fd in fds:
            os.close(fd)
