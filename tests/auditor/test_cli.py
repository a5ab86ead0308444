"""The ``auditor`` command through its real CLI: init, report, status, and the daemon."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from contracts.devnet import dev_accounts
from market.auditor.cli import main
from market.auditor.config import DEFAULT_TOML, AuditorConfig, parse_config
from tests.auditor.helpers import Chain, Prover, client_ledger


def test_the_default_config_file_is_the_default_config() -> None:
    assert parse_config(DEFAULT_TOML) == AuditorConfig()
    # Every key of every section is written out (the file documents them all).
    for section in ("indexer", "rpc", "bounty", "retrieval"):
        for name in vars(getattr(AuditorConfig(), section)):
            assert f"\n{name} = " in DEFAULT_TOML, (section, name)


def init(chain: Chain, home: Path, tmp: Path) -> dict[str, object]:
    chain.deployment.save(tmp / "deployment.json")
    (tmp / "pass").write_text("secret\n")
    key = dev_accounts(8)[7].key.hex()
    return {
        "args": [
            "init",
            "--home",
            str(home),
            "--deployment",
            str(tmp / "deployment.json"),
            "--rpc",
            chain.url,
            "--import-key",
            key,
            "--passphrase-file",
            str(tmp / "pass"),
            "--json",
        ]
    }


def test_init_report_status(chain: Chain, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    prover = Prover(chain, chain.accounts[2], random.Random(2))
    prover.register()
    prover.take_deal(client_ledger(chain, chain.accounts[1]))
    period = chain.period() + 1
    chain.to_window(period)
    prover.prove()
    chain.to_period(period + 1)
    chain.mine(3)  # the proven period is closed and confirmed

    assert main(init(chain, home, tmp_path)["args"]) == 0  # type: ignore[arg-type]
    created = json.loads(capsys.readouterr().out)
    assert created["account"] == dev_accounts(8)[7].address
    assert (home / "config.toml").exists() and (home / "account.json").exists()
    # A second init refuses, in one line, with a non-zero code.
    assert main(init(chain, home, tmp_path)["args"]) == 1  # type: ignore[arg-type]
    assert "already initialised" in capsys.readouterr().err

    assert main(["report", "--home", str(home), "--sync", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    doc = json.loads(Path(report["json"]).read_text())
    record = doc["providers"][prover.address]
    assert record["proofs"]["proven"] == 1 and record["proofs"]["verified"] == 1
    assert doc["schema"] == "depot.auditor.reputation/1"
    page = Path(report["html"]).read_text()
    assert (
        "<svg" in page
        and prover.address in page
        and "http" not in page.split("<body>")[1].replace("http://www.w3.org/2000/svg", "")
    )

    assert main(["status", "--home", str(home), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["proofs"] == 1 and status["alarms"] == 0

    assert main(["status", "--home", str(tmp_path / "nowhere")]) == 1
    assert "auditor init" in capsys.readouterr().err


def test_the_daemon_serves_its_api_and_stops_on_sigterm(chain: Chain, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert main(init(chain, home, tmp_path)["args"]) == 0  # type: ignore[arg-type]
    env = {**os.environ, "DEPOT_PASSPHRASE": "secret"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "market.auditor.cli",
            "run",
            "--home",
            str(home),
            "--api",
            "127.0.0.1:0",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        ready = json.loads(line)
        assert ready["ready"] and ready["account"] == dev_accounts(8)[7].address
        api = ready["api"]
        deadline = time.monotonic() + 30
        while requests.get(f"{api}/api/status", timeout=5).json()["indexed_through_block"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert (
            requests.get(f"{api}/openapi.json", timeout=5).json()["info"]["title"]
            == "Depot auditor"
        )
        assert "depot_auditor_indexed_block" in requests.get(f"{api}/metrics", timeout=5).text
        assert (
            requests.get(f"{api}/api/reputation", timeout=5).json()["market"]
            == chain.deployment.market
        )
        assert "<svg" in requests.get(f"{api}/report", timeout=5).text
        assert requests.get(f"{api}/api/providers/0x{'00' * 20}", timeout=5).status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    assert (home / "report" / "reputation.json").exists()
