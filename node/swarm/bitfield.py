"""Have-bitfields in BitTorrent's layout (BEP 3): bit 0 is the high bit of byte 0."""

from __future__ import annotations

from collections.abc import Iterator

from node.swarm.errors import SwarmProtocolError


class Bitfield:
    """A fixed-length set of chunk indices, stored as BEP 3 bytes."""

    __slots__ = ("_bits", "_count", "size")

    def __init__(self, size: int, data: bytes | None = None) -> None:
        if size < 0:
            raise ValueError(f"negative bitfield size {size}")
        self.size = size
        self._bits = bytearray((size + 7) // 8)
        self._count = 0
        if data is not None:
            if len(data) != len(self._bits):
                raise SwarmProtocolError(
                    f"bitfield of {len(data)} bytes for {size} chunks (want {len(self._bits)})"
                )
            spare = len(self._bits) * 8 - size
            if spare and data[-1] & ((1 << spare) - 1):
                raise SwarmProtocolError("spare bits of a bitfield must be zero (BEP 3)")
            self._bits[:] = data
            self._count = sum(b.bit_count() for b in self._bits)

    @classmethod
    def full(cls, size: int) -> Bitfield:
        """A bitfield with every index set."""
        field = cls(size)
        field._bits[:] = b"\xff" * len(field._bits)
        spare = len(field._bits) * 8 - size
        if spare:
            field._bits[-1] &= 0xFF << spare & 0xFF
        field._count = size
        return field

    def __contains__(self, index: int) -> bool:
        return 0 <= index < self.size and bool(self._bits[index >> 3] & (0x80 >> (index & 7)))

    def __len__(self) -> int:
        """Number of indices set."""
        return self._count

    def __iter__(self) -> Iterator[int]:
        """The set indices, ascending."""
        for byte_index, byte in enumerate(self._bits):
            if byte:
                base = byte_index << 3
                for bit in range(8):
                    if byte & (0x80 >> bit):
                        yield base + bit

    def add(self, index: int) -> None:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size}")
        mask = 0x80 >> (index & 7)
        if not self._bits[index >> 3] & mask:
            self._bits[index >> 3] |= mask
            self._count += 1

    def discard(self, index: int) -> None:
        if index in self:
            self._bits[index >> 3] &= ~(0x80 >> (index & 7)) & 0xFF
            self._count -= 1

    def complete(self) -> bool:
        return self._count == self.size

    def to_bytes(self) -> bytes:
        return bytes(self._bits)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bitfield) and (self.size, self._bits) == (other.size, other._bits)

    def __hash__(self) -> int:
        raise TypeError("Bitfield is mutable")

    def __repr__(self) -> str:
        return f"Bitfield({self._count}/{self.size})"
