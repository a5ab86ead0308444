"""
Geometry of a prepared file: how plaintext bytes map to ciphertext chunks, stripes and
share chunks. Pure functions of the file size and ``k``; docs/pieces.md draws the picture.

- The plaintext is cut into chunks of ``PLAINTEXT_CHUNK_SIZE`` bytes (the last one shorter;
  an empty file is one empty chunk). Each is sealed into a ciphertext chunk of its length
  plus ``TAG_SIZE``, so every ciphertext chunk but the last is exactly ``CHUNK_SIZE``.
- Stripe ``j`` is the ciphertext range ``[j*k*CHUNK_SIZE, (j+1)*k*CHUNK_SIZE)`` (the last
  stripe shorter). Its ``L`` bytes are zero-padded to ``k*B`` with ``B = ceil(L / k)`` and
  cut into ``k`` blocks of ``B`` bytes; for every stripe but the last, ``B = CHUNK_SIZE``
  and block ``i`` is ciphertext chunk ``j*k + i``. Erasure coding turns the ``k`` blocks
  into ``n``; block ``i`` of stripe ``j`` is chunk ``j`` of share ``i``, stored at offset
  ``j*CHUNK_SIZE`` of the share. Replication is ``k = 1``, each copy its own ciphertext.
- So every share has ``stripe_count`` chunks and ``share_size`` bytes, its chunks are
  aligned with the commitment's 256-leaf subtrees, and chunk ``j`` of any ``k`` shares
  rebuilds stripe ``j``.
"""

from __future__ import annotations

from typing import Final

from contracts.spec.commitment import LEAF_SIZE, MAX_PROOF_DEPTH

CHUNK_SIZE: Final = 256 * 1024
"""Transfer unit of the swarm, stripe unit of the erasure code and proof-layer unit."""
LEAVES_PER_CHUNK: Final = CHUNK_SIZE // LEAF_SIZE
TAG_SIZE: Final = 16
"""Poly1305 tag appended to every ciphertext chunk (RFC 8439 §2.8)."""
PLAINTEXT_CHUNK_SIZE: Final = CHUNK_SIZE - TAG_SIZE
MAX_SHARES: Final = 256
"""zfec works over GF(2^8): at most 256 distinct shares."""
MAX_PIECE_SIZE: Final = (1 << MAX_PROOF_DEPTH) * LEAF_SIZE
"""Largest piece the ledger can challenge (2**40 leaves, 1 PiB)."""


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative ``a`` and positive ``b``."""
    return -(-a // b)


def chunk_count(file_size: int) -> int:
    """Number of ciphertext chunks of a file: ``max(1, ceil(size / PLAINTEXT_CHUNK_SIZE))``."""
    return max(1, ceil_div(file_size, PLAINTEXT_CHUNK_SIZE))


def ciphertext_size(file_size: int) -> int:
    """Bytes of a file's ciphertext: the plaintext plus one tag per chunk."""
    return file_size + TAG_SIZE * chunk_count(file_size)


def plaintext_span(file_size: int, chunk: int) -> tuple[int, int]:
    """``(offset, length)`` of plaintext chunk ``chunk`` in the file."""
    offset = chunk * PLAINTEXT_CHUNK_SIZE
    return offset, min(PLAINTEXT_CHUNK_SIZE, file_size - offset)


def stripe_count(file_size: int, k: int) -> int:
    """Stripes of a file coded ``k``-of-``n``: also the chunk count of every share."""
    return ceil_div(chunk_count(file_size), k)


def stripe_span(file_size: int, k: int, stripe: int) -> tuple[int, int]:
    """``(offset, length)`` of stripe ``stripe`` in the ciphertext."""
    offset = stripe * k * CHUNK_SIZE
    return offset, min(k * CHUNK_SIZE, ciphertext_size(file_size) - offset)


def block_size(file_size: int, k: int, stripe: int) -> int:
    """Bytes of each of the ``n`` blocks of stripe ``stripe`` (= share chunk ``stripe``)."""
    return ceil_div(stripe_span(file_size, k, stripe)[1], k)


def share_size(file_size: int, k: int) -> int:
    """Bytes of every share (piece) of a file coded with ``k`` data shares."""
    last = stripe_count(file_size, k) - 1
    return last * CHUNK_SIZE + block_size(file_size, k, last)


def piece_chunk_count(piece_size: int) -> int:
    """Chunks of a piece (entries of its layer): ``ceil(piece_size / CHUNK_SIZE)``."""
    return ceil_div(piece_size, CHUNK_SIZE)


def piece_chunk_size(piece_size: int, chunk: int) -> int:
    """Bytes of chunk ``chunk`` of a piece of ``piece_size`` bytes."""
    return min(CHUNK_SIZE, piece_size - chunk * CHUNK_SIZE)
