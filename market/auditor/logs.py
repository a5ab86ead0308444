"""
Raw market logs to ``contracts.events`` dataclasses.

The event ABIs come from the market contract object that ``contracts.chain.LedgerClient``
builds (the one module that loads ABIs); this module only applies them: topic 0 is the
keccak of the event's signature, indexed (static) arguments are the next topics, the rest
is the ABI-encoded data. The result is the same dataclass ``LedgerClient.events`` returns
(addresses checksummed, bytes as ``bytes``); a log that does not decode is ``RpcGarbage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_hash.auto import keccak
from web3 import Web3

from contracts.events import EVENT_TYPES, LedgerEvent
from market.auditor.errors import RpcGarbage
from market.auditor.rpc import RawLog


@dataclass(frozen=True)
class _EventAbi:
    cls: type[LedgerEvent]
    indexed: tuple[tuple[str, str], ...]
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]


class LogDecoder:
    """Decodes the market's logs with the market's event ABIs."""

    def __init__(self, market_abi: list[dict[str, Any]]) -> None:
        self._by_topic: dict[bytes, _EventAbi] = {}
        for item in market_abi:
            if item.get("type") != "event" or item["name"] not in EVENT_TYPES:
                continue
            inputs = item["inputs"]
            signature = f"{item['name']}({','.join(i['type'] for i in inputs)})"
            self._by_topic[keccak(signature.encode())] = _EventAbi(
                cls=EVENT_TYPES[item["name"]],
                indexed=tuple((i["name"], i["type"]) for i in inputs if i["indexed"]),
                data_names=tuple(i["name"] for i in inputs if not i["indexed"]),
                data_types=tuple(i["type"] for i in inputs if not i["indexed"]),
            )

    def topic_of(self, cls: type[LedgerEvent]) -> bytes:
        """Topic 0 of an event type."""
        for topic, abi in self._by_topic.items():
            if abi.cls is cls:
                return topic
        raise KeyError(cls.__name__)

    def decode(self, entry: RawLog) -> LedgerEvent | None:
        """The event of ``entry``; ``None`` for an event this auditor does not know."""
        if not entry.topics:
            return None
        abi = self._by_topic.get(entry.topics[0])
        if abi is None:
            return None
        if len(entry.topics) != len(abi.indexed) + 1:
            raise RpcGarbage(f"{abi.cls.__name__} log with {len(entry.topics)} topics")
        fields: dict[str, Any] = {}
        try:
            for (name, kind), topic in zip(abi.indexed, entry.topics[1:], strict=True):
                fields[name] = _value(kind, abi_decode([kind], topic)[0])
            values = abi_decode(list(abi.data_types), entry.data)
        except (DecodingError, ValueError, OverflowError) as exc:
            raise RpcGarbage(f"{abi.cls.__name__} log does not decode: {exc}") from None
        for name, kind, value in zip(abi.data_names, abi.data_types, values, strict=True):
            fields[name] = _value(kind, value)
        return abi.cls(
            block_number=entry.block_number,
            tx_hash="0x" + entry.tx_hash.hex(),
            log_index=entry.log_index,
            **fields,
        )


def _value(kind: str, value: Any) -> Any:
    if kind == "address":
        return Web3.to_checksum_address(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return value
