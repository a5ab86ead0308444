"""Constants and helpers shared by the pieces tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from eth_account import Account

from node.pieces.config import PiecesConfig
from node.pieces.layout import CHUNK_SIZE, PLAINTEXT_CHUNK_SIZE

LEAF = 1024
P = PLAINTEXT_CHUNK_SIZE
C = CHUNK_SIZE
MIB = 1024 * 1024
SIZES = [0, 1, LEAF - 1, LEAF, LEAF + 1, P - 1, P, P + 1, C - 1, C, C + 1, 3 * P, 5 * MIB + 7]
"""Round-trip sizes: empty, one byte, around a leaf, around a plaintext chunk (where the
ciphertext chunk is full), around CHUNK_SIZE, an exact multiple, several MiB."""

ACCOUNT = Account.from_key(b"\x01" * 32)
"""The client's Ethereum account (signs manifests)."""
SECRET = b"\x07" * 32
"""The client's secret."""

INLINE = PiecesConfig(workers=1)
"""Everything in the test process."""
PARALLEL = PiecesConfig(workers=2, parallel_threshold=1, task_size=C)
"""Every job on two worker processes, in tasks of one chunk or stripe."""


def pseudo_random(size: int, seed: int = 0) -> bytes:
    """Deterministic incompressible bytes (SHA-256 in counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed.to_bytes(8, "big") + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def listing(directory: Path) -> list[str]:
    """Every name in ``directory``, hidden temporary files included."""
    return sorted(p.name for p in directory.iterdir())
