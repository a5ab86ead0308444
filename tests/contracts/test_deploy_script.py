"""scripts/deploy.py: deploy onto a node with a key from the environment."""

import os
import subprocess
import sys
from pathlib import Path

from contracts.chain import LedgerClient
from contracts.deployment import Deployment
from contracts.devnet import dev_accounts, start_anvil

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "deploy.py"


def run(*args, key=None):
    env = {k: v for k, v in os.environ.items() if k != "DEPLOYER_KEY"}
    if key:
        env["DEPLOYER_KEY"] = key
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False
    )


def test_deploy_with_env_key(tmp_path):
    out = tmp_path / "deployment.json"
    key = "0x" + dev_accounts(3)[2].key.hex().removeprefix("0x")
    with start_anvil() as node:
        result = run("--rpc", node.url, "--out", str(out), "--challenges", "12", key=key)
        assert result.returncode == 0, result.stderr
        deployment = Deployment.load(out)
        client = LedgerClient(node.url, deployment)
        assert client.chain_params().challenges == 12
        assert client.token.functions.faucet_enabled().call() is False
        assert client.token.functions.owner().call() == dev_accounts(3)[2].address


def test_deploy_needs_a_key(tmp_path):
    result = run("--rpc", "http://127.0.0.1:9", "--out", str(tmp_path / "d.json"))
    assert result.returncode == 2 and "DEPLOYER_KEY" in result.stderr


def test_deploy_reports_bad_parameters(tmp_path):
    key = "0x" + dev_accounts(1)[0].key.hex().removeprefix("0x")
    result = run("--rpc", "http://127.0.0.1:9", "--challenges", "0", key=key)
    assert result.returncode == 1 and "challenges" in result.stderr
