"""market.home: init writes a usable home once; the file secret comes from the key alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from eth_account import Account

from contracts.deployment import Deployment, MarketParams
from market.errors import ConfigError
from market.home import file_secret, init_home, open_home

KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")


def deployment_file(tmp_path: Path) -> Path:
    path = tmp_path / "deployment.json"
    Deployment(
        31337,
        "http://127.0.0.1:1",
        "0x" + "11" * 20,
        "0x" + "22" * 20,
        5,
        MarketParams(period_blocks=10),
    ).save(path)
    return path


def test_init_then_open(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = init_home(
        home,
        deployment=deployment_file(tmp_path),
        passphrase="pw",
        rpc_url="http://127.0.0.1:9",
        import_key=KEY,
    )
    assert result.address == Account.from_key(KEY).address
    assert (home / "config.toml").exists() and (home / "node.key").exists()
    assert oct((home / "account.json").stat().st_mode & 0o777) == "0o600"
    opened = open_home(home)
    try:
        assert opened.rpc_url == "http://127.0.0.1:9"  # --rpc overrides the deployment's
        assert opened.deployment.params.period_blocks == 10
        assert opened.account("pw").address == result.address
        with pytest.raises(ConfigError, match="wrong passphrase"):
            opened.account("nope")
        assert opened.node_key().node_id == result.node_id
    finally:
        opened.close()


def test_init_refuses_an_existing_home_and_keeps_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dep = deployment_file(tmp_path)
    init_home(home, deployment=dep, passphrase="pw", import_key=KEY)
    before = (home / "account.json").read_bytes()
    with pytest.raises(ConfigError, match="already a market home"):
        init_home(home, deployment=dep, passphrase="other")
    assert (home / "account.json").read_bytes() == before


def test_a_bad_deployment_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(ConfigError, match="no deployment file"):
        init_home(home, deployment=tmp_path / "missing.json", passphrase="pw")
    assert not home.exists()
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ConfigError):
        init_home(home, deployment=tmp_path / "bad.json", passphrase="pw")
    assert not home.exists()


def test_open_refuses_what_is_not_a_home(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a market home"):
        open_home(tmp_path)


def test_file_secret_depends_on_the_key_only() -> None:
    a = file_secret(Account.from_key(KEY))
    assert a == file_secret(Account.from_key(KEY)) and len(a) == 32
    assert a != file_secret(Account.from_key(os.urandom(32)))
    assert a != KEY
