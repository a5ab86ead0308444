"""
A small, suspicious JSON-RPC client for the indexer's bulk reads.

The indexer reads far more than the daemons' ``LedgerClient`` (every log with its block
hash, block headers for reorg checks, every proof transaction raw), so it speaks JSON-RPC
itself: batched requests (JSON-RPC 2.0 §6) over one keep-alive HTTP session, and every
reply checked before anything is built from it: the ids must match, every field must have
its type and size, a raw transaction must hash to the hash asked for, a log must belong to
the block hash the header says. Anything else is ``RpcGarbage``; an unreachable node is
``RpcError``. Both are retried with exponential backoff (``RpcConfig``), and the caller
keeps its last good state: garbage is never indexed.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import requests
from eth_hash.auto import keccak

from market.auditor.errors import RpcError, RpcGarbage

log = logging.getLogger("market.auditor.rpc")

T = TypeVar("T")
HASH_LEN: Final = 32
ADDRESS_LEN: Final = 20


@dataclass(frozen=True)
class RpcConfig:
    """How the auditor talks to its JSON-RPC node."""

    timeout: float = 30.0
    """Seconds before a request is considered lost."""
    batch_size: int = 100
    """Calls per JSON-RPC batch (public endpoints cap batches; anvil takes any)."""
    log_range: int = 2_000
    """Blocks per ``eth_getLogs`` request (public endpoints cap the range)."""
    attempts: int = 4
    """Tries per request before giving up with ``RpcError``/``RpcGarbage``."""
    backoff: float = 0.25
    """Seconds before the first retry; doubled on each retry."""
    max_backoff: float = 10.0
    """Longest wait between two retries."""


@dataclass(frozen=True)
class Header:
    """The part of a block header the indexer keeps."""

    number: int
    hash: bytes
    parent_hash: bytes
    receipts_root: bytes


@dataclass(frozen=True)
class RawLog:
    """An ``eth_getLogs`` entry, checked for shape."""

    address: bytes
    topics: tuple[bytes, ...]
    data: bytes
    block_number: int
    block_hash: bytes
    tx_hash: bytes
    log_index: int


@dataclass(frozen=True)
class Receipt:
    """The part of a transaction receipt the auditor reads."""

    sender: bytes
    status: int
    gas_used: int
    block_number: int


# ---------------------------------------------------------------------- field checks


def hex_int(value: Any) -> int:
    """A JSON-RPC quantity (``0x``-prefixed hex)."""
    if not isinstance(value, str) or not value.startswith("0x") or len(value) < 3:
        raise RpcGarbage(f"not a quantity: {value!r:.80}")
    try:
        return int(value, 16)
    except ValueError:
        raise RpcGarbage(f"not a quantity: {value!r:.80}") from None


def hex_bytes(value: Any, length: int | None = None) -> bytes:
    """JSON-RPC data (``0x``-prefixed hex), optionally of an exact length."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcGarbage(f"not hex data: {value!r:.80}")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise RpcGarbage(f"not hex data: {value!r:.80}") from None
    if length is not None and len(raw) != length:
        raise RpcGarbage(f"expected {length} bytes, got {len(raw)}")
    return raw


def _obj(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RpcGarbage(f"expected an object, got {type(value).__name__}")
    return value


def _field(obj: dict[str, Any], name: str) -> Any:
    try:
        return obj[name]
    except KeyError:
        raise RpcGarbage(f"reply lacks {name!r}") from None


def parse_header(value: Any) -> Header:
    obj = _obj(value)
    return Header(
        number=hex_int(_field(obj, "number")),
        hash=hex_bytes(_field(obj, "hash"), HASH_LEN),
        parent_hash=hex_bytes(_field(obj, "parentHash"), HASH_LEN),
        receipts_root=hex_bytes(_field(obj, "receiptsRoot"), HASH_LEN),
    )


def parse_log(value: Any) -> RawLog:
    obj = _obj(value)
    topics = _field(obj, "topics")
    if not isinstance(topics, list):
        raise RpcGarbage("log topics are not a list")
    return RawLog(
        address=hex_bytes(_field(obj, "address"), ADDRESS_LEN),
        topics=tuple(hex_bytes(t, HASH_LEN) for t in topics),
        data=hex_bytes(_field(obj, "data")),
        block_number=hex_int(_field(obj, "blockNumber")),
        block_hash=hex_bytes(_field(obj, "blockHash"), HASH_LEN),
        tx_hash=hex_bytes(_field(obj, "transactionHash"), HASH_LEN),
        log_index=hex_int(_field(obj, "logIndex")),
    )


# ---------------------------------------------------------------------- client


class RpcClient:
    """
    Batched, checked JSON-RPC over HTTP.

    Parameters
    ----------
    url :
        The node's HTTP JSON-RPC endpoint.
    config :
        Timeouts, batch sizes and the retry policy.
    sleep :
        Waits between retries (tests pass a no-op).
    """

    def __init__(
        self,
        url: str,
        config: RpcConfig | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.config = config or RpcConfig()
        self._sleep = sleep
        self._session = requests.Session()
        self._next_id = 1
        self.requests = 0
        """HTTP requests sent (a batch counts once)."""
        self.failures = 0
        """Failed attempts (unreachable or garbage), retried or not."""
        self.seconds: dict[str, float] = defaultdict(float)
        """Wall time spent waiting for HTTP replies, by method (a batch's first method)."""

    def close(self) -> None:
        self._session.close()

    def clone(self) -> RpcClient:
        """Another client of the same endpoint, with its own session (for another thread)."""
        return RpcClient(self.url, self.config, sleep=self._sleep)

    # -- typed reads -------------------------------------------------------------------

    def chain_id(self) -> int:
        return hex_int(self.call("eth_chainId", []))

    def block_number(self) -> int:
        return hex_int(self.call("eth_blockNumber", []))

    def headers(self, numbers: Iterable[int]) -> dict[int, Header]:
        """Headers of the given blocks (each must exist)."""
        wanted = sorted(set(numbers))
        replies = self.batch([("eth_getBlockByNumber", [hex(n), False]) for n in wanted])
        out = {}
        for n, reply in zip(wanted, replies, strict=True):
            if reply is None:
                raise RpcGarbage(f"block {n} is missing")
            header = parse_header(reply)
            if header.number != n:
                raise RpcGarbage(f"asked for block {n}, got {header.number}")
            out[n] = header
        return out

    def blocks(self, numbers: Iterable[int]) -> dict[int, tuple[Header, list[bytes]]]:
        """Headers and transaction hashes of the given blocks."""
        wanted = sorted(set(numbers))
        replies = self.batch([("eth_getBlockByNumber", [hex(n), False]) for n in wanted])
        out = {}
        for n, reply in zip(wanted, replies, strict=True):
            header = parse_header(reply)
            if header.number != n:
                raise RpcGarbage(f"asked for block {n}, got {header.number}")
            txs = _field(_obj(reply), "transactions")
            if not isinstance(txs, list):
                raise RpcGarbage("block transactions are not a list")
            out[n] = (header, [hex_bytes(t, HASH_LEN) for t in txs])
        return out

    def block_receipts(self, numbers: Iterable[int]) -> dict[int, list[Any]]:
        """Every receipt of the given blocks (``eth_getBlockReceipts``), unparsed."""
        wanted = sorted(set(numbers))
        replies = self.batch([("eth_getBlockReceipts", [hex(n)]) for n in wanted])
        out = {}
        for n, reply in zip(wanted, replies, strict=True):
            if not isinstance(reply, list):
                raise RpcGarbage(f"receipts of block {n} are not a list")
            out[n] = reply
        return out

    def receipts(self, hashes: Sequence[bytes]) -> dict[bytes, Receipt]:
        """Receipts (sender, status, gas) of mined transactions."""
        wanted = list(dict.fromkeys(hashes))
        replies = self.batch([("eth_getTransactionReceipt", ["0x" + h.hex()]) for h in wanted])
        out = {}
        for h, reply in zip(wanted, replies, strict=True):
            obj = _obj(reply)
            if hex_bytes(_field(obj, "transactionHash"), HASH_LEN) != h:
                raise RpcGarbage("a receipt of another transaction")
            out[h] = Receipt(
                sender=hex_bytes(_field(obj, "from"), ADDRESS_LEN),
                status=hex_int(_field(obj, "status")),
                gas_used=hex_int(_field(obj, "gasUsed")),
                block_number=hex_int(_field(obj, "blockNumber")),
            )
        return out

    def logs(self, address: bytes, from_block: int, to_block: int) -> list[RawLog]:
        """The contract's logs in ``[from_block, to_block]``, in chain order."""
        out: list[RawLog] = []
        for start in range(from_block, to_block + 1, self.config.log_range):
            stop = min(start + self.config.log_range - 1, to_block)
            params = [
                {"address": "0x" + address.hex(), "fromBlock": hex(start), "toBlock": hex(stop)}
            ]
            reply = self.call("eth_getLogs", params)
            if not isinstance(reply, list):
                raise RpcGarbage("eth_getLogs did not return a list")
            for item in reply:
                entry = parse_log(item)
                if entry.address != address or not start <= entry.block_number <= stop:
                    raise RpcGarbage("a log outside the filter")
                out.append(entry)
        out.sort(key=lambda e: (e.block_number, e.log_index))
        return out

    def raw_transactions(self, hashes: Sequence[bytes]) -> dict[bytes, bytes]:
        """Signed transactions by hash; each is checked to hash to what was asked."""
        wanted = list(dict.fromkeys(hashes))
        replies = self.batch([("eth_getRawTransactionByHash", ["0x" + h.hex()]) for h in wanted])
        out = {}
        for h, reply in zip(wanted, replies, strict=True):
            raw = hex_bytes(reply)
            if keccak(raw) != h:
                raise RpcGarbage(f"transaction {h.hex()[:16]} does not hash to its id")
            out[h] = raw
        return out

    # -- transport ---------------------------------------------------------------------

    def call(self, method: str, params: list[Any]) -> Any:
        """One request, retried."""
        return self._retry(lambda: self._post_one(method, params))

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Many requests in batches of ``batch_size``, results in order; each batch retried."""
        out: list[Any] = []
        size = self.config.batch_size
        for first in range(0, len(calls), size):
            chunk = calls[first : first + size]
            out += self._retry(lambda c=chunk: self._post_batch(c))  # type: ignore[misc]
        return out

    def _retry(self, attempt: Callable[[], T]) -> T:
        delay = self.config.backoff
        for n in range(self.config.attempts):
            try:
                return attempt()
            except RpcError as exc:
                self.failures += 1
                if n == self.config.attempts - 1:
                    raise
                log.warning("rpc attempt=%d error=%r retry_in=%.2fs", n + 1, str(exc)[:200], delay)
                self._sleep(delay)
                delay = min(delay * 2, self.config.max_backoff)
        raise AssertionError("unreachable")

    def _post(self, body: Any) -> Any:
        self.requests += 1
        method = (body[0] if isinstance(body, list) else body)["method"]
        started = time.perf_counter()
        try:
            response = self._session.post(
                self.url,
                data=json.dumps(body),
                headers={"Content-Type": "application/json"},
                timeout=self.config.timeout,
            )
        except requests.RequestException as exc:
            raise RpcError(f"RPC endpoint unreachable: {exc}") from None
        finally:
            self.seconds[method] += time.perf_counter() - started
        if response.status_code != 200:
            raise RpcGarbage(f"HTTP {response.status_code} from the RPC endpoint")
        try:
            return json.loads(response.content)
        except ValueError:
            raise RpcGarbage("the RPC endpoint answered something that is not JSON") from None

    def _request(self, method: str, params: list[Any]) -> dict[str, Any]:
        self._next_id += 1
        return {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}

    def _post_one(self, method: str, params: list[Any]) -> Any:
        request = self._request(method, params)
        return _result(_obj(self._post(request)), request["id"], method)

    def _post_batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        if not calls:
            return []
        requests_ = [self._request(m, p) for m, p in calls]
        reply = self._post(requests_)
        if isinstance(reply, dict) and "error" in reply:
            # An endpoint without batch support answers one error for the whole batch.
            return [self._post_one(m, p) for m, p in calls]
        if not isinstance(reply, list) or len(reply) != len(requests_):
            raise RpcGarbage("a batch reply of the wrong length")
        by_id = {item.get("id"): item for item in reply if isinstance(item, dict)}
        return [_result(_obj(by_id.get(r["id"])), r["id"], r["method"]) for r in requests_]


def _result(reply: dict[str, Any], expected_id: int, method: str) -> Any:
    if reply.get("jsonrpc") != "2.0" or reply.get("id") != expected_id:
        raise RpcGarbage(f"{method}: reply with a foreign id")
    if "error" in reply:
        error = reply["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise RpcError(f"{method}: {message!r:.200}")
    if "result" not in reply:
        raise RpcGarbage(f"{method}: reply without a result")
    return reply["result"]
