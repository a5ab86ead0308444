"""contracts/devnet.py: anvil handles, deployment from the artifacts, the devnet command."""

import subprocess
import sys
import time

import pytest

from contracts.chain import LedgerClient, connect
from contracts.deployment import TOKEN_UNIT, Deployment, MarketParams
from contracts.devnet import dev_accounts, find_anvil, main, start_anvil
from contracts.errors import RpcUnavailable


def test_dev_accounts_are_anvils():
    with start_anvil(accounts=3) as node:
        assert connect(node.url).eth.accounts == [a.address for a in dev_accounts(3)]


def test_start_anvil_options_and_stop():
    with start_anvil(hardfork="cancun", chain_id=4242, gas_limit=20_000_000) as node:
        web3 = connect(node.url)
        assert web3.eth.chain_id == 4242
        assert web3.eth.get_block("latest")["gasLimit"] == 20_000_000
    assert node.process.poll() is not None


def test_start_anvil_on_a_taken_port_fails_clearly():
    with start_anvil() as node, pytest.raises(RpcUnavailable, match="anvil did not start"):
        start_anvil(port=node.port)


def test_deploy_command_onto_a_running_node(tmp_path):
    out = tmp_path / "deployment.json"
    with start_anvil() as node:
        code = main(["deploy", "--rpc", node.url, "--out", str(out), "--period-blocks", "12",
                     "--challenges", "5", "--min-stake", "7", "--fund-dev", "3"])  # fmt: skip
        assert code == 0
        deployment = Deployment.load(out)
        assert deployment.params == MarketParams(
            period_blocks=12, challenges=5, min_stake=7 * TOKEN_UNIT
        )
        client = LedgerClient(node.url, deployment)
        assert client.chain_params() == deployment.params
        assert client.balance_of(dev_accounts(3)[2].address) == 1_000_000 * TOKEN_UNIT
        assert client.schedule.genesis == deployment.deploy_block


def test_devnet_up_serves_until_stopped(tmp_path):
    out = tmp_path / "deployment.json"
    with start_anvil() as probe:
        port = probe.port  # a port that is free once the probe stops
    proc = subprocess.Popen(
        [sys.executable, "-m", "contracts.devnet", "up", "--port", str(port), "--out", str(out),
         "--fund-dev", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "devnet ready" in line or not line:
                break
        assert "devnet ready" in lines[-1], lines
        deployment = Deployment.load(out)
        assert deployment.rpc_url == f"http://127.0.0.1:{port}"
        assert LedgerClient(deployment.rpc_url, deployment).deal_count() == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    with pytest.raises(RpcUnavailable):
        LedgerClient(deployment.rpc_url, deployment)


def test_find_anvil():
    assert find_anvil().endswith("anvil")
