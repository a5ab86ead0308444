"""The ``prover`` command: init, the views without a daemon, exit, and errors as exit codes."""

from __future__ import annotations

import json
import stat
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from contracts.deployment import TOKEN_UNIT, Deployment, MarketParams
from prover.cli import EXIT_CHAIN, EXIT_CONFIG, EXIT_KEYSTORE, EXIT_USAGE, main
from prover.db import Database
from prover.home import Home
from prover.lifecycle import DealState
from tests.prover.helpers import PASSPHRASE, TEST_PARAMS, make_devnet, make_home

KEY = "0x" + "5a" * 32


def deployment_file(tmp_path: Path) -> Path:
    path = tmp_path / "deployment.json"
    Deployment(
        chain_id=31337,
        rpc_url="http://127.0.0.1:9",
        token="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        market="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        deploy_block=1,
        params=MarketParams(),
    ).save(path)
    return path


def passphrase_file(tmp_path: Path, text: str = PASSPHRASE) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(text + "\n")
    return path


def cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def init(capsys: Any, tmp_path: Path, home: Path) -> int:
    """``prover --home HOME init`` with the test deployment and passphrase; the exit code."""
    return cli(
        capsys,
        "--home",
        str(home),
        "init",
        "--deployment",
        str(deployment_file(tmp_path)),
        "--passphrase-file",
        str(passphrase_file(tmp_path)),
    )[0]


def test_init_creates_a_home_once(tmp_path: Path, capsys: Any) -> None:
    home = tmp_path / "home"
    common = ["--home", str(home), "--json", "init", "--deployment", str(deployment_file(tmp_path))]
    code, out, _ = cli(
        capsys,
        *common,
        "--passphrase-file",
        str(passphrase_file(tmp_path)),
        "--import-key",
        KEY,
        "--listen",
        "127.0.0.1:0",
        "--capacity",
        "3 GiB",
        "--price",
        "0.25",
    )
    assert code == 0
    created = json.loads(out)
    assert created["address"] == Account.from_key(KEY).address
    assert len(bytes.fromhex(created["node_id"])) == 32
    for name in ("node.key", "account.json"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600
    config = tomllib.loads((home / "config.toml").read_text())
    assert config["storage"]["capacity"] == "3 GiB"
    assert config["offer"]["price_per_gib_period"] == "0.25"
    assert config["p2p"]["listen"] == "127.0.0.1:0"
    assert Database.open(f"sqlite:///{home / 'prover.db'}", migrate=False).version() == 1

    code, _, err = cli(capsys, *common, "--passphrase-file", str(passphrase_file(tmp_path)))
    assert code == EXIT_CONFIG and "already initialised" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--import-key", "0xnothex"], EXIT_USAGE, "hex"),
        (["--import-key", "0x1234"], EXIT_USAGE, "32 bytes"),
        (["--capacity", "lots"], EXIT_CONFIG, "not a size"),
        (["--listen", "nowhere"], EXIT_CONFIG, "host:port"),
    ],
)
def test_init_refuses_bad_options(
    tmp_path: Path, capsys: Any, extra: list[str], code: int, message: str
) -> None:
    got, _, err = cli(
        capsys,
        "--home",
        str(tmp_path / "home"),
        "init",
        "--deployment",
        str(deployment_file(tmp_path)),
        "--passphrase-file",
        str(passphrase_file(tmp_path)),
        *extra,
    )
    assert got == code and message in err
    assert not (tmp_path / "home" / "config.toml").exists()


def test_init_without_a_deployment_file(tmp_path: Path, capsys: Any) -> None:
    code, _, err = cli(
        capsys,
        "--home",
        str(tmp_path / "home"),
        "init",
        "--deployment",
        str(tmp_path / "missing.json"),
        "--passphrase-file",
        str(passphrase_file(tmp_path)),
    )
    assert code == EXIT_CONFIG and "no deployment file" in err


def test_run_refuses_a_missing_home_and_a_wrong_passphrase(tmp_path: Path, capsys: Any) -> None:
    code, _, err = cli(capsys, "--home", str(tmp_path / "nothing"), "run")
    assert code == EXIT_CONFIG and "prover init" in err
    home = tmp_path / "home"
    assert init(capsys, tmp_path, home) == 0
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    code, _, err = cli(capsys, "--home", str(home), "run", "--passphrase-file", str(wrong))
    assert code == EXIT_KEYSTORE and "wrong passphrase" in err


def test_views_read_the_database_when_no_daemon_runs(tmp_path: Path, capsys: Any) -> None:
    home = tmp_path / "home"
    init(capsys, tmp_path, home)
    db = Database.open(f"sqlite:///{home / 'prover.db'}")
    local = db.add_proposal(
        client="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        nonce=2**255,
        piece_root=b"\x01" * 32,
        piece_size=1 << 20,
        price_per_period=3 * TOKEN_UNIT,
        periods=4,
        collateral=0,
        expiry_block=50,
        signature=b"\x00" * 65,
        peer_id=b"\x00" * 32,
    )
    db.set_deal_state(local, DealState.ACTIVATING)
    db.set_deal_state(
        local,
        DealState.ACTIVE,
        deal_id=9,
        start_period=2,
        end_period=6,
        stop_period=6,
        paid=6 * TOKEN_UNIT,
        settled_through=4,
    )
    db.put_proof(4, state="confirmed", deadline_block=99, window_blocks=9, attempts=1)
    db.close()

    code, out, _ = cli(capsys, "--home", str(home), "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["running"] is False and status["deals"] == {"active": 1}
    code, out, _ = cli(capsys, "--home", str(home), "deals", "--json", "--state", "active")
    assert [d["deal_id"] for d in json.loads(out)] == [9]
    code, out, _ = cli(capsys, "--home", str(home), "earnings", "--json")
    earnings = json.loads(out)
    assert earnings["paid_tokens"] == "6" and earnings["accrued_tokens"] == "3"
    code, out, _ = cli(capsys, "--home", str(home), "deals")
    assert code == 0 and "active" in out
    code, _, err = cli(capsys, "--home", str(home), "deals", "--state", "nonsense")
    assert code == EXIT_USAGE and "unknown deal state" in err


@pytest.mark.slow
def test_exit_without_a_daemon(anvil: Any, tmp_path: Path, capsys: Any) -> None:
    # Long periods, so that the unbonding cannot end by itself during the test.
    devnet = make_devnet(anvil.url, tmp_path, replace(TEST_PARAMS, period_blocks=200), index=3)
    home = make_home(tmp_path / "prover", devnet)
    ledger = devnet.ledger(devnet.provider)
    ledger.approve(1000 * TOKEN_UNIT)
    ledger.register(b"\x07" * 32, "127.0.0.1:1", 1000 * TOKEN_UNIT)
    secret = passphrase_file(tmp_path)
    base = ["--home", str(Home(home.root).root), "--json", "exit", "--passphrase-file", str(secret)]

    code, out, _ = cli(capsys, *base)
    report = json.loads(out)
    assert code == 0 and report["status"] == "exiting"
    assert report["withdrawable_from_period"] == report["exit_period"] + 1

    code, _, err = cli(capsys, *base, "--withdraw")
    assert code == EXIT_CHAIN and "still unbonding" in err
    blocks = devnet.deployment.schedule.period_start(report["withdrawable_from_period"])
    ledger.web3.provider.make_request(
        "anvil_mine",  # type: ignore[arg-type]
        [hex(blocks - ledger.current_block())],
    )
    code, out, _ = cli(capsys, *base, "--withdraw")
    assert code == 0 and json.loads(out)["status"] == "withdrawn"
