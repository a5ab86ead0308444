"""
A real Depot network for the market's end-to-end tests: anvil with half-second blocks, a
freshly deployed market, ``prover run`` daemons as subprocesses, and ``market`` homes
driven through the real command line (``python -m market.cli``), as the demo drives them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from contracts.chain import LedgerClient, connect
from contracts.deployment import TOKEN_UNIT, Deployment, MarketParams
from contracts.devnet import Anvil, deploy, dev_accounts, fund, start_anvil
from contracts.txs import TxConfig
from market.config import config_from_dict, render_config

TOKEN = TOKEN_UNIT
PASSPHRASE = "market test passphrase"
BLOCK_TIME = 0.5
PARAMS = MarketParams(
    period_blocks=8,
    challenges=8,
    min_stake=100 * TOKEN,
    unbonding_periods=1,
    max_consecutive_misses=3,
    miss_slash_bps=1_000,
    bounty_bps=5_000,
    max_piece_size=64 << 20,
)
"""Periods of 8 blocks (4 s): a fault-to-termination story fits in half a minute."""
FAST_TX = TxConfig(resubmit_after=3.0, poll_interval=0.05, rpc_timeout=5.0)
READY_TIMEOUT = 60.0
BIN = Path(sys.executable).parent


@dataclass
class Prover:
    index: int
    home: Path
    account: LocalAccount
    price: str
    log: Path
    process: subprocess.Popen[str] | None = None
    ready: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.account.address

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Client:
    """One market home and its account."""

    home: Path
    account: LocalAccount


class Cluster:
    """anvil + a deployed market + provers + market homes, all under ``root``."""

    def __init__(self, root: Path, params: MarketParams = PARAMS) -> None:
        self.root = root
        self.anvil: Anvil = start_anvil(block_time=BLOCK_TIME)
        self.web3 = connect(self.anvil.url)
        self.deployer = dev_accounts(1)[0]
        self.deployment: Deployment = deploy(self.web3, self.deployer, params, tx_config=FAST_TX)
        self.deployment_path = root / "deployment.json"
        self.deployment.save(self.deployment_path)
        self.passphrase_file = root / "passphrase"
        self.passphrase_file.write_text(PASSPHRASE + "\n")
        self.provers: list[Prover] = []
        self._accounts = iter(dev_accounts(10)[1:])
        self._clients = 0

    # ------------------------------------------------------------------ chain

    def ledger(self, account: LocalAccount | None = None) -> LedgerClient:
        return LedgerClient(self.anvil.url, self.deployment, account, tx_config=FAST_TX)

    def block(self) -> int:
        return int(self.web3.eth.block_number)

    def period(self) -> int:
        return self.deployment.schedule.period_of(self.block())

    def wait_period(self, period: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.period() < period:
            if time.monotonic() > deadline:
                raise TimeoutError(f"period {period} did not come")
            time.sleep(0.2)

    # ------------------------------------------------------------------ provers

    def start_provers(self, prices: list[str], collateral: str = "0.01") -> list[Prover]:
        """Init and run one prover per price (tokens per GiB per period), all at once."""
        new = []
        for price in prices:
            account = next(self._accounts)
            index = len(self.provers) + len(new)
            home = self.root / f"prover{index}"
            new.append(Prover(index, home, account, price, self.root / f"prover{index}.log"))
        fund(
            self.web3,
            self.deployment,
            self.deployer,
            [p.address for p in new],
            tokens=10_000 * TOKEN,
        )
        with ThreadPoolExecutor(len(new)) as pool:
            list(pool.map(lambda p: self._init_prover(p, collateral), new))
        for p in new:
            p.process = subprocess.Popen(
                [
                    str(BIN / "prover"),
                    "--home",
                    str(p.home),
                    "run",
                    "--passphrase-file",
                    str(self.passphrase_file),
                ],
                stdout=subprocess.PIPE,
                stderr=p.log.open("w"),
                stdin=subprocess.DEVNULL,
                text=True,
            )
        for p in new:
            p.ready = self._await_ready(p)
        self.provers += new
        return new

    def _init_prover(self, p: Prover, collateral: str) -> None:
        result = subprocess.run(
            [
                str(BIN / "prover"),
                "--home",
                str(p.home),
                "init",
                "--deployment",
                str(self.deployment_path),
                "--listen",
                "127.0.0.1:0",
                "--api",
                "127.0.0.1:0",
                "--import-key",
                p.account.key.hex(),
                "--passphrase-file",
                str(self.passphrase_file),
                "--stake",
                "1000",
                "--capacity",
                "1 GiB",
                "--price",
                p.price,
                "--collateral",
                collateral,
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"prover init failed: {result.stderr[-2000:]}")

    def _await_ready(self, p: Prover) -> dict[str, Any]:
        assert p.process is not None and p.process.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            line = p.process.stdout.readline()
            if not line:
                raise RuntimeError(f"prover {p.index} exited: {p.log_text()[-3000:]}")
            try:
                info = json.loads(line)
            except ValueError:
                continue
            if info.get("event") == "ready":
                return dict(info)
        raise RuntimeError(f"prover {p.index} not ready in time")

    def wait_asks(self, client: Client, count: int, timeout: float = 60.0) -> None:
        """Until ``market providers`` sees ``count`` eligible providers."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.market_json(client, "providers", "--size", "1000000")
            if sum(1 for p in doc["providers"] if p["eligible"]) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {doc} after {timeout}s")
            time.sleep(1)

    def prover_of(self, address: str) -> Prover:
        return next(p for p in self.provers if p.address.lower() == address.lower())

    # ------------------------------------------------------------------ market

    def client(
        self,
        *,
        tokens: int = 1_000 * TOKEN,
        eth: int = 10**19,
        config: dict[str, Any] | None = None,
    ) -> Client:
        """A new market home with a new account (given ETH for gas and ``tokens``)."""
        self._clients += 1
        account: LocalAccount = Account.create()
        home = self.root / f"market{self._clients}"
        fund(self.web3, self.deployment, self.deployer, [account.address], eth=eth, tokens=tokens)
        result = self.market(
            Client(home, account),
            "init",
            "--deployment",
            str(self.deployment_path),
            "--import-key",
            account.key.hex(),
            "--exempt-loopback",
        )
        assert result.returncode == 0, result.stderr
        if config:
            set_config(home, config)
        return Client(home, account)

    def market(
        self, client: Client, *args: str, timeout: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``market --home <client> ARGS`` as the demo does."""
        env = dict(os.environ, DEPOT_PASSPHRASE=PASSPHRASE)
        return subprocess.run(
            [str(BIN / "market"), "--home", str(client.home), *args],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )

    def market_json(self, client: Client, *args: str, timeout: float = 180.0) -> Any:
        result = self.market(client, *args, "--json", timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"market {' '.join(args)} failed ({result.returncode}): {result.stderr[-4000:]}"
            )
        return json.loads(result.stdout)

    def close(self) -> None:
        for p in self.provers:
            p.stop()
        self.anvil.stop()


def set_config(home: Path, values: dict[str, Any]) -> None:
    """Change keys of a home's config.toml: ``{"deals.upload_timeout": 3.0, ...}``."""
    path = home / "config.toml"
    data = tomllib.loads(path.read_text())
    for dotted, value in values.items():
        section, key = dotted.split(".")
        data.setdefault(section, {})[key] = value
    path.write_text(render_config(config_from_dict(data)))


def kill_group(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
