"""The suspicious JSON-RPC client: checked fields, retries, and garbage turned into errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from eth_hash.auto import keccak

from market.auditor.errors import RpcError, RpcGarbage
from market.auditor.rpc import RpcClient, RpcConfig, hex_bytes, hex_int, parse_header, parse_log


class FakeResponse:
    def __init__(self, body: bytes, status: int = 200) -> None:
        self.content, self.status_code = body, status


class Scripted(RpcClient):
    """An RpcClient whose HTTP replies come from a script of callables."""

    def __init__(self, *replies: Any, attempts: int = 3) -> None:
        super().__init__(
            "http://unused", RpcConfig(attempts=attempts, backoff=0.0), sleep=lambda _: None
        )
        self.replies = list(replies)
        self.sent: list[Any] = []

        def post(url: str, data: str, **_: Any) -> FakeResponse:
            body = json.loads(data)
            self.sent.append(body)
            reply = self.replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply(body) if callable(reply) else reply

        self._session.post = post  # type: ignore[method-assign]


def ok(result: Any) -> Any:
    return lambda body: FakeResponse(
        json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": result}).encode()
    )


def test_field_checks() -> None:
    assert hex_int("0x1f") == 31
    assert hex_bytes("0x00ff", 2) == b"\x00\xff"
    for bad in ("1f", "0x", "0xzz", 31, None):
        with pytest.raises(RpcGarbage):
            hex_int(bad)
    for bad_bytes in ("0x0", "ab", 5):
        with pytest.raises(RpcGarbage):
            hex_bytes(bad_bytes)
    with pytest.raises(RpcGarbage):
        hex_bytes("0x00", 32)
    with pytest.raises(RpcGarbage):
        parse_header({"number": "0x1", "hash": "0x" + "00" * 32})
    with pytest.raises(RpcGarbage):
        parse_log({"address": "0x" + "00" * 20, "topics": "nope"})


def test_retries_then_succeeds() -> None:
    client = Scripted(
        requests.ConnectionError("refused"),
        FakeResponse(b"<html>", 200),
        ok("0x10"),
    )
    assert client.block_number() == 16
    assert client.failures == 2


def test_gives_up_after_its_attempts() -> None:
    client = Scripted(FakeResponse(b"", 502), FakeResponse(b"", 502), attempts=2)
    with pytest.raises(RpcGarbage, match="HTTP 502"):
        client.block_number()
    client = Scripted(
        lambda body: FakeResponse(
            json.dumps({"jsonrpc": "2.0", "id": body["id"], "error": {"message": "boom"}}).encode()
        ),
        attempts=1,
    )
    with pytest.raises(RpcError, match="boom"):
        client.block_number()


def test_batch_replies_are_matched_by_id_and_checked() -> None:
    raw = b"\x02\xc0"
    h = keccak(raw)

    def shuffled(body: list[dict[str, Any]]) -> FakeResponse:
        return FakeResponse(
            json.dumps(
                [
                    {"jsonrpc": "2.0", "id": r["id"], "result": "0x" + raw.hex()}
                    for r in reversed(body)
                ]
            ).encode()
        )

    client = Scripted(shuffled)
    assert client.raw_transactions([h]) == {h: raw}

    liar = Scripted(ok("0x" + b"\x02\xc1".hex()), attempts=1)
    liar.batch = lambda calls: ["0x" + b"\x02\xc1".hex()]  # type: ignore[method-assign]
    with pytest.raises(RpcGarbage, match="does not hash"):
        liar.raw_transactions([h])

    short = Scripted(lambda body: FakeResponse(b"[]"), attempts=1)
    with pytest.raises(RpcGarbage, match="wrong length"):
        short.batch([("eth_blockNumber", []), ("eth_chainId", [])])

    wrong_block = Scripted(
        lambda body: FakeResponse(
            json.dumps(
                [
                    {
                        "jsonrpc": "2.0",
                        "id": body[0]["id"],
                        "result": {
                            "number": "0x9",
                            "hash": "0x" + "11" * 32,
                            "parentHash": "0x" + "22" * 32,
                            "receiptsRoot": "0x" + "33" * 32,
                        },
                    }
                ]
            ).encode()
        ),
        attempts=1,
    )
    with pytest.raises(RpcGarbage, match="asked for block 8"):
        wrong_block.headers([8])
