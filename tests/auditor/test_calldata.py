"""Raw transactions and submit_proof calldata, taken apart without trusting anyone."""

from __future__ import annotations

import random

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st
from web3 import Web3

from contracts.artifacts import MARKET, load_artifact
from market.auditor.calldata import decode_submit_proof, selector_of, tx_call
from market.auditor.errors import LocalError, MalformedProof

ABI = load_artifact(MARKET).abi_list()
MARKET_CONTRACT = Web3().eth.contract(address="0x" + "11" * 20, abi=ABI)
SUBMIT = next(i for i in ABI if i.get("name") == "submit_proof")
SELECTOR = selector_of(SUBMIT)

proofs = st.lists(
    st.tuples(
        st.binary(max_size=1100),
        st.lists(st.binary(min_size=32, max_size=32), max_size=6),
    ),
    max_size=8,
)


@given(proofs)
@settings(max_examples=150, deadline=None)
def test_decoding_matches_web3(items: list[tuple[bytes, list[bytes]]]) -> None:
    data = bytes.fromhex(MARKET_CONTRACT.encode_abi("submit_proof", args=[items])[2:])
    call = decode_submit_proof(data, SELECTOR)
    assert list(call.leaves) == [leaf for leaf, _ in items]
    assert [list(p) for p in call.paths] == [path for _, path in items]


@given(st.binary(max_size=600), st.integers(0, 10**6))
@settings(max_examples=300, deadline=None)
def test_garbage_is_malformed_never_a_crash(junk: bytes, seed: int) -> None:
    rng = random.Random(seed)
    good = bytes.fromhex(
        MARKET_CONTRACT.encode_abi("submit_proof", args=[[(b"x" * 40, [bytes(32)])]])[2:]
    )
    mutated = bytearray(good)
    for _ in range(rng.randrange(1, 4)):
        mutated[rng.randrange(4, len(mutated))] = rng.randrange(256)
    for data in (SELECTOR + junk, bytes(mutated), good[: rng.randrange(len(good))]):
        try:
            call = decode_submit_proof(data, SELECTOR)
        except MalformedProof:
            continue
        assert len(call.leaves) == len(call.paths)
    for raw in (junk, b"\x02" + junk, b"\xf8\xff" + junk):
        try:
            call = tx_call(raw)
        except MalformedProof:
            continue
        assert call.to is None or len(call.to) == 20


def test_the_selector_comes_from_the_abi() -> None:
    assert bytes.fromhex(MARKET_CONTRACT.encode_abi("submit_proof", args=[[]])[2:10]) == SELECTOR
    with pytest.raises(LocalError):
        selector_of({**SUBMIT, "inputs": [{"name": "x", "type": "uint256"}]})


@pytest.mark.parametrize("kind", ["legacy", "eip2930", "eip1559"])
def test_transactions_of_every_type_give_their_call(kind: str) -> None:
    account = Account.create()
    tx: dict[str, object] = {
        "to": "0x" + "22" * 20,
        "data": b"\x01\x02" * 600,
        "gas": 123_456,
        "nonce": 7,
        "value": 5,
        "chainId": 1,
    }
    if kind == "legacy":
        tx["gasPrice"] = 10**9
    elif kind == "eip2930":
        tx.update(gasPrice=10**9, accessList=[], type=1)
    else:
        tx.update(maxFeePerGas=10**10, maxPriorityFeePerGas=1, type=2)
    raw = bytes(account.sign_transaction(tx).raw_transaction)
    call = tx_call(raw)
    assert (
        call.to == bytes.fromhex("22" * 20)
        and call.data == b"\x01\x02" * 600
        and call.gas == 123_456
    )
    for broken in (raw[:-1], raw + b"\x00", b"\x05" + raw[1:], b""):
        with pytest.raises(MalformedProof):
            tx_call(broken)
