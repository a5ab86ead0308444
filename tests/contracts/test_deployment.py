"""contracts/deployment.py: parameters, the deployment file, atomic writes."""

import json

import pytest

from contracts.deployment import Deployment, MarketParams
from contracts.errors import DeploymentError

DEPLOYMENT = Deployment(
    chain_id=31337,
    rpc_url="http://127.0.0.1:8545",
    token="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    market="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    deploy_block=2,
    params=MarketParams(period_blocks=20),
)


def test_defaults_are_the_protocols():
    p = MarketParams()
    assert (p.challenges, p.max_consecutive_misses, p.miss_slash_bps, p.bounty_bps) == (
        46,
        3,
        1000,
        5000,
    )
    assert len(p.constructor_args()) == 8


@pytest.mark.parametrize(
    "change",
    [
        {"period_blocks": 1},
        {"period_blocks": 257},
        {"challenges": 0},
        {"challenges": 65},
        {"max_consecutive_misses": 0},
        {"miss_slash_bps": 10_001},
        {"bounty_bps": -1},
        {"max_piece_size": 0},
        {"max_piece_size": 2**50 + 1},
        {"min_stake": -1},
    ],
)
def test_params_outside_the_contracts_domain(change):
    with pytest.raises(DeploymentError):
        MarketParams(**change)


def test_save_and_load(tmp_path):
    path = tmp_path / "sub" / "deployment.json"
    DEPLOYMENT.save(path)
    assert Deployment.load(path) == DEPLOYMENT
    assert [p.name for p in path.parent.iterdir()] == ["deployment.json"]  # no temp file left
    assert DEPLOYMENT.schedule.genesis == 2 and DEPLOYMENT.schedule.length == 20


def test_load_errors(tmp_path):
    with pytest.raises(DeploymentError, match="no deployment file"):
        Deployment.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DeploymentError, match="unreadable"):
        Deployment.load(bad)
    bad.write_text("[]")
    with pytest.raises(DeploymentError, match="not a JSON object"):
        Deployment.load(bad)
    data = DEPLOYMENT.to_json()
    for broken, message in (
        ({**data, "version": 99}, "version"),
        ({k: v for k, v in data.items() if k != "market"}, "malformed"),
        ({**data, "params": {**data["params"], "extra": 1}}, "unknown market parameters"),
        ({**data, "params": {**data["params"], "challenges": 0}}, "challenges"),
    ):
        bad.write_text(json.dumps(broken))
        with pytest.raises(DeploymentError, match=message):
            Deployment.load(bad)
