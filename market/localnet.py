"""
A whole Depot network on one machine: an anvil devnet with the contracts deployed,
``prover run`` and ``auditor run`` daemons as separate processes with their own homes, keys
and ports, and ``market`` homes driven through the real command line.

The demo (``scripts/demo.py``) and the integration tests (``tests/integration/``) run on it;
nothing in it is a stand-in: every part talks to the others through its public interface
(JSON-RPC, the P2P protocols, the command lines and the HTTP APIs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount

from contracts.chain import LedgerClient, connect
from contracts.deployment import TOKEN_UNIT, Deployment, MarketParams
from contracts.devnet import Anvil, deploy, dev_accounts, fund, start_anvil
from contracts.txs import TxConfig

T = TypeVar("T")

TOKEN = TOKEN_UNIT
PASSPHRASE = "depot localnet passphrase"
"""Every key of a local network is encrypted under this (it guards nothing but test keys)."""
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
"""Short periods (8 blocks) so that a fault-to-termination story fits in a minute."""
FAST_TX = TxConfig(resubmit_after=3.0, poll_interval=0.05, rpc_timeout=5.0)
READY_TIMEOUT = 60.0
BIN = Path(sys.executable).parent


@dataclass
class Daemon:
    """One long-running process of the network (a prover or an auditor)."""

    name: str
    home: Path
    account: LocalAccount
    log: Path
    process: subprocess.Popen[str] | None = None
    ready: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.account.address

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.process is not None and self.alive():
            self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash or a pulled plug."""
        if self.process is not None and self.alive():
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process is not None and self.alive():
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def launch(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``argv`` with stdout piped (for the ready line) and stderr into the log."""
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
            )

    def await_ready(self, is_ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Read stdout until a JSON line that ``is_ready`` accepts (the daemon's ready line)."""
        assert self.process is not None and self.process.stdout is not None
        stdout: IO[str] = self.process.stdout
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited: {self.log_text()[-3000:]}")
            try:
                info = json.loads(line)
            except ValueError:
                continue
            if isinstance(info, dict) and is_ready(info):
                self.ready = info
                return info
        raise RuntimeError(f"{self.name} not ready in {READY_TIMEOUT:.0f} s")


@dataclass
class Prover(Daemon):
    price: str = "0.001"
    """Its ask: tokens per GiB per period."""

    def piece_files(self) -> list[Path]:
        """The piece files in this prover's blob store (``<home>/blobs``)."""
        return sorted((self.home / "blobs").rglob("*.piece"))


@dataclass
class Auditor(Daemon):
    @property
    def api(self) -> str:
        return str(self.ready["api"])

    def get(self, path: str) -> Any:
        """GET ``path`` from the auditor's HTTP API (JSON)."""
        with urllib.request.urlopen(f"{self.api}{path}", timeout=10) as response:
            return json.load(response)


@dataclass
class Client:
    """One market home and its account."""

    home: Path
    account: LocalAccount


class Network:
    """anvil + a deployed market + provers + auditors + market homes, all under ``root``."""

    def __init__(
        self, root: Path, params: MarketParams = PARAMS, *, block_time: float | None = 0.5
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.anvil: Anvil = start_anvil(block_time=block_time)
        try:
            self.web3 = connect(self.anvil.url)
            self.deployer = dev_accounts(1)[0]
            self.deployment: Deployment = deploy(
                self.web3, self.deployer, params, tx_config=FAST_TX
            )
        except BaseException:
            self.anvil.stop()
            raise
        self.deployment_path = root / "deployment.json"
        self.deployment.save(self.deployment_path)
        self.passphrase_file = root / "passphrase"
        self.passphrase_file.write_text(PASSPHRASE + "\n")
        self.provers: list[Prover] = []
        self.auditors: list[Auditor] = []
        self._accounts = iter(dev_accounts(10)[1:])
        self._clients = 0

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every daemon and anvil; safe to call more than once."""
        for daemon in [*self.auditors, *self.provers]:
            daemon.stop()
        self.anvil.stop()

    # ------------------------------------------------------------------ chain

    def ledger(self, account: LocalAccount | None = None) -> LedgerClient:
        return LedgerClient(self.anvil.url, self.deployment, account, tx_config=FAST_TX)

    def block(self) -> int:
        return int(self.web3.eth.block_number)

    def period(self) -> int:
        return self.deployment.schedule.period_of(self.block())

    def wait_period(self, period: int, timeout: float = 60.0) -> None:
        self.wait_for(lambda: self.period() >= period, f"period {period}", timeout)

    def wait_for(self, probe: Callable[[], T], what: str, timeout: float = 60.0) -> T:
        """Poll ``probe`` until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:.0f} s")
            time.sleep(0.2)

    # ------------------------------------------------------------------ provers

    def start_provers(
        self,
        prices: list[str],
        collateral: str = "0.01",
        capacity: str = "1 GiB",
        config: dict[str, Any] | None = None,
    ) -> list[Prover]:
        """
        Init and run one prover per price (tokens per GiB per period), all at once;
        ``config`` changes keys of their config.toml (``set_config``).
        """
        new: list[Prover] = []
        for price in prices:
            index = len(self.provers) + len(new)
            new.append(
                Prover(
                    f"prover{index}",
                    self.root / f"prover{index}",
                    next(self._accounts),
                    self.root / f"prover{index}.log",
                    price=price,
                )
            )
        fund(
            self.web3,
            self.deployment,
            self.deployer,
            [p.address for p in new],
            tokens=10_000 * TOKEN,
        )
        with ThreadPoolExecutor(len(new)) as pool:
            list(pool.map(lambda p: self._init_prover(p, collateral, capacity), new))
        for p in new:
            if config:
                set_config(p.home, config)
        for p in new:
            self._launch_prover(p)
        self.provers += new
        for p in new:
            p.await_ready(lambda info: info.get("event") == "ready")
        return new

    def restart_prover(self, p: Prover) -> None:
        """Run ``prover run`` again on ``p``'s home (after a stop or a kill)."""
        self._launch_prover(p)
        p.await_ready(lambda info: info.get("event") == "ready")

    def _launch_prover(self, p: Prover) -> None:
        p.launch(
            [
                str(BIN / "prover"),
                "--home",
                str(p.home),
                "run",
                "--passphrase-file",
                str(self.passphrase_file),
            ]
        )

    def _init_prover(self, p: Prover, collateral: str, capacity: str) -> None:
        self._run(
            "prover init",
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
                capacity,
                "--price",
                p.price,
                "--collateral",
                collateral,
            ],
        )

    def prover_of(self, address: str) -> Prover:
        return next(p for p in self.provers if p.address.lower() == address.lower())

    # ------------------------------------------------------------------ auditors

    def start_auditor(self, *, bounties: bool = True) -> Auditor:
        """Init and run an auditor with a new account (ETH for the gas of its reports)."""
        index = len(self.auditors)
        account: LocalAccount = Account.create()
        fund(self.web3, self.deployment, self.deployer, [account.address], eth=10**19)
        a = Auditor(
            f"auditor{index}",
            self.root / f"auditor{index}",
            account,
            self.root / f"auditor{index}.log",
        )
        self._run(
            "auditor init",
            [
                str(BIN / "auditor"),
                "init",
                "--home",
                str(a.home),
                "--deployment",
                str(self.deployment_path),
                "--import-key",
                account.key.hex(),
                "--passphrase-file",
                str(self.passphrase_file),
            ],
        )
        a.launch(
            [
                str(BIN / "auditor"),
                "run",
                "--home",
                str(a.home),
                "--listen",
                "127.0.0.1:0",
                "--api",
                "127.0.0.1:0",
                "--passphrase-file",
                str(self.passphrase_file),
                "--json",
                *([] if bounties else ["--no-bounties"]),
            ]
        )
        self.auditors.append(a)
        a.await_ready(lambda info: bool(info.get("ready")))
        return a

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
        client = Client(self.root / f"market{self._clients}", account)
        fund(self.web3, self.deployment, self.deployer, [account.address], eth=eth, tokens=tokens)
        result = self.market(
            client,
            "init",
            "--deployment",
            str(self.deployment_path),
            "--import-key",
            account.key.hex(),
            "--exempt-loopback",
        )
        if result.returncode != 0:
            raise RuntimeError(f"market init failed: {result.stderr[-2000:]}")
        if config:
            set_config(client.home, config)
        return client

    def market(
        self, client: Client, *args: str, timeout: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``market --home <client> ARGS`` (the passphrase from the environment)."""
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
        """``market ARGS --json``, parsed; an ``AssertionError`` with stderr if it fails."""
        result = self.market(client, *args, "--json", timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"market {' '.join(args)} failed ({result.returncode}): {result.stderr[-4000:]}"
            )
        return json.loads(result.stdout)

    def wait_asks(self, client: Client, count: int, timeout: float = 60.0) -> None:
        """Until ``market providers`` sees ``count`` eligible providers."""
        self.wait_for(
            lambda: (
                sum(
                    1
                    for p in self.market_json(client, "providers", "--size", "1000000")["providers"]
                    if p["eligible"]
                )
                >= count
            ),
            f"{count} eligible providers",
            timeout,
        )

    @staticmethod
    def _run(what: str, argv: list[str]) -> None:
        result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{what} failed: {result.stderr[-2000:]}")


def set_config(home: Path, values: dict[str, Any]) -> None:
    """
    Change keys of the ``config.toml`` of a home (market, prover or auditor):
    ``{"deals.upload_timeout": 3.0, ...}``. The file keeps its comments; the home's own
    loader checks the values when it next reads the file.
    """
    path = home / "config.toml"
    lines = path.read_text().splitlines()
    for dotted, value in values.items():
        section, key = dotted.split(".")
        lines = _with_key(lines, section, key, _toml_value(value))
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # still TOML
    path.write_text(text)


def _with_key(lines: list[str], section: str, key: str, value: str) -> list[str]:
    """``lines`` with ``key = value`` set in ``[section]`` (replaced, or added first)."""
    if f"[{section}]" not in lines:
        raise ValueError(f"config.toml has no [{section}] section")
    header = lines.index(f"[{section}]")
    end = next((i for i in range(header + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    for i in range(header + 1, end):
        if lines[i].split("=")[0].strip() == key:
            return [*lines[:i], f"{key} = {value}", *lines[i + 1 :]]
    return [*lines[: header + 1], f"{key} = {value}", *lines[header + 1 :]]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))
