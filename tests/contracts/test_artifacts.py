"""contracts/artifacts.py and scripts/build_contracts.py: the committed artifacts."""

import subprocess
import sys
from pathlib import Path

import pytest

from contracts.artifacts import MARKET, TOKEN, load_artifact
from contracts.errors import ArtifactError

ROOT = Path(__file__).resolve().parents[2]
EIP170_LIMIT = 24_576


def test_committed_artifacts_match_a_fresh_compile():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_contracts.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_artifacts_load():
    market = load_artifact(MARKET)
    token = load_artifact(TOKEN)
    names = {item.get("name") for item in market.abi}
    for fn in ("register", "accept_deal", "submit_proof", "report_fault", "settle", "withdraw"):
        assert fn in names
    assert {"Transfer", "Approval", "faucet"} <= {item.get("name") for item in token.abi}
    assert market.bytecode.startswith("0x") and market.deployed_bytecode.startswith("0x")
    assert market.evm_version == "prague"


def test_market_fits_the_contract_size_limit():
    assert load_artifact(MARKET).deployed_size <= EIP170_LIMIT


def test_missing_artifact():
    with pytest.raises(ArtifactError, match="build_contracts"):
        load_artifact("NoSuchContract")
