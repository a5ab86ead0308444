"""
Logs checked against their block: the receipts root (Yellow Paper §4.3 and appendix D).

A block header commits to all of its receipts through ``receiptsRoot``: the root of the
Merkle-Patricia trie that maps ``rlp(i)`` to the encoding of receipt ``i`` (EIP-2718: a
typed receipt is ``type || rlp([status, cumulativeGasUsed, logsBloom, logs])``, a legacy one
the bare list; each log is ``[address, [topics], data]``). The indexer reads a block's
receipts, recomputes that root, and compares it with the header's; the market's logs it
indexes must then be exactly the market's logs of those receipts, in order. A log that an
RPC node garbled (a flipped digit in an amount, a dropped or invented event) no longer
matches, and the range is read again instead of indexed.

This module has the three pieces that takes: an RLP encoder (appendix B), the trie root
(appendix D: hex-prefix encoding, branch, extension and leaf nodes, nodes of 32 bytes or
more referenced by their keccak), and the receipt encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from market.auditor.fastverify import keccak256
from market.auditor.rpc import ADDRESS_LEN, HASH_LEN, hex_bytes, hex_int

RlpItem: TypeAlias = bytes | list["RlpItem"]


def rlp_encode(item: RlpItem) -> bytes:
    """RLP (Yellow Paper appendix B) of a byte string or a nested list of them."""
    if isinstance(item, bytes):
        if len(item) == 1 and item[0] < 0x80:
            return item
        return _length_prefix(len(item), 0x80) + item
    payload = b"".join(rlp_encode(x) for x in item)
    return _length_prefix(len(payload), 0xC0) + payload


def _length_prefix(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes([offset + length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(size)]) + size


def _int(value: int) -> bytes:
    """An integer as RLP wants it: big-endian, no leading zeros (0 is empty)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _hex_prefix(nibbles: Sequence[int], leaf: bool) -> bytes:
    """Hex-prefix encoding of a nibble path (appendix C)."""
    flag = 2 if leaf else 0
    if len(nibbles) % 2:
        packed = [(flag + 1) << 4 | nibbles[0]]
        rest = nibbles[1:]
    else:
        packed = [flag << 4]
        rest = nibbles
    packed += [rest[i] << 4 | rest[i + 1] for i in range(0, len(rest), 2)]
    return bytes(packed)


def _nibbles(key: bytes) -> tuple[int, ...]:
    return tuple(n for b in key for n in (b >> 4, b & 0x0F))


def _node(pairs: list[tuple[tuple[int, ...], bytes]], depth: int) -> RlpItem:
    """The trie node holding ``pairs`` (sorted, distinct keys) below ``depth`` nibbles."""
    if len(pairs) == 1:
        key, value = pairs[0]
        return [_hex_prefix(key[depth:], leaf=True), value]
    first, last = pairs[0][0], pairs[-1][0]
    shared = 0
    while (
        depth + shared < len(first)
        and depth + shared < len(last)
        and first[depth + shared] == last[depth + shared]
    ):
        shared += 1  # sorted keys: the first and last share what all share
    if shared:
        child = _node(pairs, depth + shared)
        return [_hex_prefix(first[depth : depth + shared], leaf=False), _ref(child)]
    branch: list[RlpItem] = [b""] * 17
    start = 0
    if len(pairs[0][0]) == depth:
        branch[16] = pairs[0][1]
        start = 1
    i = start
    while i < len(pairs):
        nibble = pairs[i][0][depth]
        j = i
        while j < len(pairs) and pairs[j][0][depth] == nibble:
            j += 1
        branch[nibble] = _ref(_node(pairs[i:j], depth + 1))
        i = j
    return branch


def _ref(node: RlpItem) -> RlpItem:
    """A child as its parent holds it: inline below 32 bytes, else by its hash."""
    encoded = rlp_encode(node)
    return node if len(encoded) < HASH_LEN else keccak256(encoded)


def trie_root(values: Sequence[bytes]) -> bytes:
    """Root of the trie mapping ``rlp(i)`` to ``values[i]`` (transactions, receipts)."""
    if not values:
        return keccak256(rlp_encode(b""))
    pairs = sorted((_nibbles(rlp_encode(_int(i))), v) for i, v in enumerate(values))
    return keccak256(rlp_encode(_node(pairs, 0)))


@dataclass(frozen=True)
class ReceiptLog:
    """One log as its receipt commits to it."""

    address: bytes
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True)
class BlockReceipt:
    """One receipt of ``eth_getBlockReceipts``, checked for shape."""

    tx_hash: bytes
    tx_type: int
    status: int
    cumulative_gas: int
    bloom: bytes
    logs: tuple[ReceiptLog, ...]

    def encode(self) -> bytes:
        """The receipt as the trie holds it (EIP-2718)."""
        body = rlp_encode(
            [
                _int(self.status),
                _int(self.cumulative_gas),
                self.bloom,
                [[log.address, list(log.topics), log.data] for log in self.logs],
            ]
        )
        return body if self.tx_type == 0 else bytes([self.tx_type]) + body


def parse_receipt(value: Any) -> BlockReceipt:
    from market.auditor.errors import RpcGarbage  # noqa: PLC0415 (avoid a cycle at import)

    if not isinstance(value, dict) or not isinstance(value.get("logs"), list):
        raise RpcGarbage("a receipt of the wrong shape")
    logs = []
    for entry in value["logs"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("topics"), list):
            raise RpcGarbage("a receipt log of the wrong shape")
        logs.append(
            ReceiptLog(
                address=hex_bytes(entry.get("address"), ADDRESS_LEN),
                topics=tuple(hex_bytes(t, HASH_LEN) for t in entry["topics"]),
                data=hex_bytes(entry.get("data")),
            )
        )
    return BlockReceipt(
        tx_hash=hex_bytes(value.get("transactionHash"), HASH_LEN),
        tx_type=hex_int(value.get("type", "0x0")),
        status=hex_int(value.get("status")),
        cumulative_gas=hex_int(value.get("cumulativeGasUsed")),
        bloom=hex_bytes(value.get("logsBloom"), 256),
        logs=tuple(logs),
    )


def receipts_root(receipts: Sequence[BlockReceipt]) -> bytes:
    """The ``receiptsRoot`` a header must carry for these receipts."""
    return trie_root([r.encode() for r in receipts])
