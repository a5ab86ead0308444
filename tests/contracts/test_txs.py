"""contracts/txs.py: nonces, EIP-1559 fees, resubmission of stuck transactions, reverts."""

import threading
import time

import pytest
from web3.exceptions import ContractLogicError

from contracts.artifacts import TOKEN, load_artifact
from contracts.chain import connect
from contracts.errors import Reverted, RpcUnavailable, TokenReverted, TransactionStuck
from contracts.txs import TxConfig, TxSender, revert_reason


@pytest.fixture
def web3(devnet):
    return connect(devnet.url)


@pytest.fixture
def token(web3, devnet):
    return web3.eth.contract(address=devnet.deployment.token, abi=load_artifact(TOKEN).abi_list())


def transfer(token, to, amount):
    return token.encode_abi("transfer", args=[to, amount])


def test_eip1559_fees_and_gas_margin(web3, devnet, token):
    sender = TxSender(web3, devnet.keys[1], TxConfig(gas_margin=1.5, priority_fee=2 * 10**9))
    base = web3.eth.get_block("latest")["baseFeePerGas"]
    receipt = sender.send(token.address, transfer(token, devnet.keys[2].address, 5))
    tx = web3.eth.get_transaction(receipt["transactionHash"])
    assert tx["type"] == 2
    assert tx["maxPriorityFeePerGas"] == 2 * 10**9
    assert tx["maxFeePerGas"] == 2 * base + 2 * 10**9
    assert tx["gas"] >= int(receipt["gasUsed"] * 1.45)


def test_parallel_sends_use_distinct_nonces(web3, devnet, token):
    sender = TxSender(web3, devnet.keys[1])
    start = web3.eth.get_transaction_count(sender.address)
    receipts = []

    def send(i):
        receipts.append(sender.send(token.address, transfer(token, devnet.keys[2].address, i)))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    nonces = sorted(web3.eth.get_transaction(r["transactionHash"])["nonce"] for r in receipts)
    assert nonces == list(range(start, start + 8))


def test_nonce_resyncs_after_another_sender(web3, devnet, token):
    a = TxSender(web3, devnet.keys[1])
    b = TxSender(web3, devnet.keys[1])  # same account, another process in real life
    a.send(token.address, transfer(token, devnet.keys[2].address, 1))
    b.send(token.address, transfer(token, devnet.keys[2].address, 1))
    # a's cached nonce is now stale; the send retries with the node's count.
    receipt = a.send(token.address, transfer(token, devnet.keys[2].address, 1))
    assert receipt["status"] == 1


def test_revert_reason_from_the_estimate(web3, devnet, token):
    sender = TxSender(web3, devnet.keys[1])
    too_much = 10**40
    with pytest.raises(TokenReverted) as err:
        sender.send(token.address, transfer(token, devnet.keys[2].address, too_much))
    assert err.value.reason == "token: insufficient balance"
    assert err.value.tx_hash is None


def test_revert_of_a_mined_transaction(web3, devnet, token):
    """Two transfers estimated on the same state; the second fails when mined."""
    sender = TxSender(web3, devnet.keys[4], TxConfig(resubmit_after=5))
    balance = token.functions.balanceOf(sender.address).call()
    web3.provider.make_request("evm_setAutomine", [False])
    results = {}

    def send(name):
        try:
            results[name] = sender.send(
                token.address, transfer(token, devnet.keys[2].address, balance)
            )
        except Reverted as exc:
            results[name] = exc

    try:
        threads = [threading.Thread(target=send, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        time.sleep(0.5)
        web3.provider.make_request("evm_mine", [])
        for t in threads:
            t.join()
    finally:
        web3.provider.make_request("evm_setAutomine", [True])
    failed = [r for r in results.values() if isinstance(r, Reverted)]
    assert len(failed) == 1
    assert failed[0].reason == "token: insufficient balance"
    assert failed[0].tx_hash is not None


def test_stuck_transaction_is_resubmitted_with_higher_fees(web3, devnet, token):
    config = TxConfig(resubmit_after=0.3, max_resubmits=3, priority_fee=10**9)
    sender = TxSender(web3, devnet.keys[1], config)
    web3.provider.make_request("evm_setAutomine", [False])
    outcome = {}

    def send():
        outcome["receipt"] = sender.send(token.address, transfer(token, devnet.keys[2].address, 3))

    thread = threading.Thread(target=send)
    try:
        thread.start()
        time.sleep(0.8)  # at least one resubmission
        web3.provider.make_request("evm_mine", [])
        thread.join(timeout=10)
    finally:
        web3.provider.make_request("evm_setAutomine", [True])
    tx = web3.eth.get_transaction(outcome["receipt"]["transactionHash"])
    assert tx["maxPriorityFeePerGas"] > 10**9  # the bumped replacement was mined


def test_stuck_for_good(web3, devnet, token):
    config = TxConfig(resubmit_after=0.1, max_resubmits=1)
    sender = TxSender(web3, devnet.keys[1], config)
    web3.provider.make_request("evm_setAutomine", [False])
    try:
        with pytest.raises(TransactionStuck):
            sender.send(token.address, transfer(token, devnet.keys[2].address, 3))
    finally:
        web3.provider.make_request("evm_setAutomine", [True])


def test_unreachable_node(devnet):
    sender = TxSender(connect("http://127.0.0.1:9", timeout=1), devnet.keys[1])
    with pytest.raises(RpcUnavailable):
        sender.send(devnet.deployment.token, b"")


def test_revert_reason_decoding():
    payload = "0x08c379a0" + (32).to_bytes(32, "big").hex() + (5).to_bytes(32, "big").hex()
    payload += b"hello".ljust(32, b"\0").hex()
    assert revert_reason(ContractLogicError("execution reverted: x", payload)) == "hello"
    assert revert_reason(ContractLogicError("execution reverted: deals: x", None)) == "deals: x"
    assert revert_reason(ContractLogicError("execution reverted", "0x")) == ""
