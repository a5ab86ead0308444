"""
Erasure coding of one stripe, ``k``-of-``n`` Reed-Solomon over GF(2^8) with zfec (Rizzo,
"Effective erasure codes for reliable computer communication protocols", 1997).

zfec's code is systematic: blocks ``0..k-1`` are the data itself, blocks ``k..n-1`` are
parity, and any ``k`` distinct blocks give the data back. The stripe layout (how a
stripe's bytes become ``k`` equal blocks) is ``node.pieces.layout``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import zfec

from node.pieces.errors import InvalidArgument, NotEnoughShares
from node.pieces.layout import MAX_SHARES, ceil_div

Block = bytes | bytearray | memoryview


def check_code(k: int, n: int) -> None:
    """Raise ``InvalidArgument`` unless ``1 <= k <= n <= MAX_SHARES``."""
    if not 1 <= k <= n <= MAX_SHARES:
        raise InvalidArgument(f"need 1 <= k <= n <= {MAX_SHARES}, got k={k}, n={n}")


class StripeCoder:
    """Encodes stripes into ``n`` blocks and decodes any ``k`` of them."""

    def __init__(self, k: int, n: int) -> None:
        check_code(k, n)
        self.k = k
        self.n = n
        self._encoder = zfec.Encoder(k, n)
        self._decoder = zfec.Decoder(k, n)
        self._parity = list(range(k, n))

    def data_blocks(self, chunks: Sequence[Block]) -> list[Block]:
        """
        The ``k`` equal data blocks of a stripe given as its ciphertext chunks (at most
        ``k``): the chunks themselves for a full stripe, else the stripe's bytes
        zero-padded to ``k * ceil(L / k)`` and cut into ``k`` blocks.
        """
        if not 1 <= len(chunks) <= self.k:
            raise InvalidArgument(f"a stripe holds 1..{self.k} chunks, not {len(chunks)}")
        size = len(chunks[0])
        if len(chunks) == self.k and all(len(c) == size for c in chunks):
            return list(chunks)
        data = b"".join(chunks)
        block = ceil_div(len(data), self.k)
        data += bytes(block * self.k - len(data))
        return [data[i * block : (i + 1) * block] for i in range(self.k)]

    def encode(self, chunks: Sequence[Block]) -> list[Block]:
        """All ``n`` blocks of a stripe: block ``i`` goes to share ``i``."""
        data = self.data_blocks(chunks)
        if not self._parity:
            return data
        return [*data, *self._encoder.encode(data, self._parity)]

    def decode(self, blocks: Mapping[int, Block], length: int) -> list[Block]:
        """
        The ``k`` data blocks of a stripe of ``length`` bytes from any ``k`` of its blocks
        (their concatenation, cut at ``length``, is the stripe).

        Parameters
        ----------
        blocks :
            Share index -> that share's block of this stripe; at least ``k`` entries.
            Data blocks (indices below ``k``) are preferred: they need no arithmetic.
        length :
            The stripe's length before padding (``layout.stripe_span``).
        """
        if len(blocks) < self.k:
            raise NotEnoughShares(f"{len(blocks)} blocks of a stripe, {self.k} needed")
        size = ceil_div(length, self.k)
        chosen = sorted(blocks)[: self.k]
        for i in chosen:
            if not 0 <= i < self.n:
                raise InvalidArgument(f"share index {i} out of range for n={self.n}")
            if len(blocks[i]) != size:
                raise InvalidArgument(f"block of share {i} is {len(blocks[i])} bytes, not {size}")
        if chosen[-1] < self.k:
            return [blocks[i] for i in chosen]
        # Indices are distinct (dict keys) and in range: zfec hangs on duplicates.
        return list(self._decoder.decode([blocks[i] for i in chosen], chosen))
