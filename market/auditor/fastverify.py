"""
Fast variants of the two reference functions the checker runs 46 times per proof:
``contracts.spec.challenge.challenge_index`` and ``contracts.spec.commitment.verify_leaf``.

The references stay the specification; these compute the same values with less Python
per call (the 96-byte prefix of the challenge preimage is built once per proof, the audit
path is folded inline with ``hashlib``), and keccak-256 comes from the fastest backend
installed: ``safe-pysha3``'s C implementation when present (about 1 µs per hash here,
against 7-11 µs through ``eth_hash``'s pycryptodome backend), else ``eth_hash``.
tests/auditor/test_fastverify.py holds both to the references with Hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from hashlib import sha256
from typing import Final

from contracts.spec.commitment import LEAF_PREFIX, LEAF_SIZE, MAX_PROOF_DEPTH, NODE_PREFIX


def _keccak_backend() -> tuple[str, Callable[[bytes], bytes]]:
    try:
        import sha3  # type: ignore[import-not-found]  # noqa: PLC0415 (safe-pysha3, optional)

        keccak_256 = sha3.keccak_256

        def pysha3(data: bytes) -> bytes:
            return bytes(keccak_256(data).digest())

        return "pysha3", pysha3
    except ImportError:
        from eth_hash.auto import keccak  # noqa: PLC0415

        return "eth_hash", keccak


KECCAK_BACKEND, keccak256 = _keccak_backend()
WORD: Final = 32


def challenge_indices(
    seed: bytes, provider: str, period: int, count: int, leaf_range: int
) -> list[int]:
    """``[challenge_index(seed, provider, period, i, leaf_range) for i in range(count)]``."""
    prefix = (
        seed
        + bytes.fromhex(provider.removeprefix("0x")).rjust(WORD, b"\x00")
        + period.to_bytes(WORD, "big")
    )
    k = keccak256
    return [
        int.from_bytes(k(prefix + i.to_bytes(WORD, "big")), "big") % leaf_range
        for i in range(count)
    ]


def verify_leaf(root: bytes, leaves: int, index: int, leaf: bytes, path: Sequence[bytes]) -> bool:
    """
    ``commitment.verify_leaf`` for a piece of ``leaves`` leaves (RFC 9162 §2.1.3.2).
    """
    if len(leaf) != LEAF_SIZE or not 0 <= index < leaves or len(path) > MAX_PROOF_DEPTH:
        return False
    r = sha256(LEAF_PREFIX + leaf).digest()
    fn, sn = index, leaves - 1
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha256(NODE_PREFIX + p + r).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
