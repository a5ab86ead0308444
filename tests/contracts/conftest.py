"""
Fixtures of the contract tests: brownie used as a library (its pytest plugin is disabled
project-wide) on an anvil of our own, one per xdist worker on a free port.

Brownie would compile every ``.vy`` file of ``contracts/src`` as a contract, which fails for
modules that ``uses:`` others; ``DepotProject`` compiles only the deployable contracts (and
the test harness) and hands the modules to Vyper as importable sources.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from brownie import chain, network, web3
from brownie._config import CONFIG
from brownie.network.account import Accounts
from brownie.project import compiler
from brownie.project.build import Build
from brownie.project.main import _ProjectBase
from brownie.project.sources import Sources
from eth_account.signers.local import LocalAccount
from ledger_helpers import TEST_PARAMS, TOKEN

from contracts.chain import connect
from contracts.deployment import MarketParams
from contracts.devnet import deploy, dev_accounts, fund, start_anvil

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "contracts" / "src"
TARGETS = ("StorageMarket.vy", "Token.vy")
HARNESS = Path(__file__).with_name("SpecHarness.vy")
VYPER_VERSION = "0.4.3"
EVM_VERSION = "prague"

N_ACCOUNTS = 12
INITIAL_TOKENS = 1_000_000 * TOKEN


class DepotProject(_ProjectBase):  # type: ignore[misc]
    """
    The deployable contracts and the test harness, compiled in memory by brownie's own
    pipeline (generate_input_json, compile, generate_build_json), with the modules and the
    ``.vyi`` interface handed to Vyper as importable sources (brownie's ``compile_and_format``
    refuses ``.vyi`` files).
    """

    def __init__(self) -> None:
        self._path = None
        self._build_path = None
        self._name = "Depot"
        targets = {f"src/{name}": (SRC / name).read_text() for name in TARGETS}
        targets["src/SpecHarness.vy"] = HARNESS.read_text()
        imports = {
            f"src/{p.relative_to(SRC).as_posix()}": p.read_text()
            for p in [*SRC.glob("*.vy"), *SRC.glob("interfaces/*.vyi")]
            if p.name not in TARGETS
        }
        self._sources = Sources(targets, {})
        self._build = Build(self._sources)
        compiler.vyper.set_vyper_version(VYPER_VERSION)
        input_json = compiler.generate_input_json(
            targets, evm_version=EVM_VERSION, language="Vyper", interface_sources=imports
        )
        output_json = compiler.compile_from_input_json(input_json, silent=True)
        build_json = compiler.generate_build_json(
            input_json, output_json, {"version": VYPER_VERSION}, silent=True
        )
        for alias, data in build_json.items():
            self._build._add_contract(data, alias)
        self._create_containers()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _put_anvil_on_path() -> None:
    """Brownie picks its anvil backend by the command's name, so anvil must be on PATH."""
    if shutil.which("anvil"):
        return
    local = ROOT / ".tools"
    if not (local / "anvil").exists():
        pytest.fail("anvil not found: run scripts/setup.sh")
    os.environ["PATH"] = f"{local}{os.pathsep}{os.environ.get('PATH', '')}"


@dataclass
class Ledger:
    """A deployed Token + StorageMarket and the accounts that use them."""

    project: Any
    token: Any
    market: Any
    harness: Any
    accounts: Any
    keys: list[LocalAccount]
    params: MarketParams
    chain_id: int

    @property
    def web3(self) -> Any:
        return web3

    def key_of(self, account: Any) -> LocalAccount:
        return next(k for k in self.keys if k.address == account.address)


@pytest.fixture(scope="session")
def depot_project() -> DepotProject:
    return DepotProject()


@pytest.fixture(scope="session")
def ledger_session(depot_project: DepotProject) -> Iterator[Ledger]:
    settings = CONFIG.networks["development"]
    _put_anvil_on_path()
    settings["cmd"] = "anvil"
    settings["cmd_settings"] = {
        "port": _free_port(),
        "evm_version": "prague",
        "gas_limit": 30_000_000,
        "base_fee": 0,
        "accounts": N_ACCOUNTS,
    }
    CONFIG.argv["silent"] = True
    network.connect("development")
    try:
        accounts = Accounts()
        deployer = accounts[0]
        token = depot_project.Token.deploy(
            "Depot Storage", "DST", True, 10**6 * TOKEN, {"from": deployer}
        )
        market = depot_project.StorageMarket.deploy(
            token, *TEST_PARAMS.constructor_args(), {"from": deployer}
        )
        harness = depot_project.SpecHarness.deploy({"from": deployer})
        for account in accounts:
            token.mint(account, INITIAL_TOKENS, {"from": deployer})
        chain.snapshot()
        yield Ledger(
            project=depot_project,
            token=token,
            market=market,
            harness=harness,
            accounts=accounts,
            keys=dev_accounts(N_ACCOUNTS),
            params=TEST_PARAMS,
            chain_id=int(web3.eth.chain_id),
        )
    finally:
        network.disconnect()


@pytest.fixture
def ledger(ledger_session: Ledger) -> Iterator[Ledger]:
    """The deployed ledger, reverted to its fresh state after the test."""
    yield ledger_session
    chain.revert()


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random generator seeded by the test's name, so that failures reproduce."""
    return random.Random(request.node.nodeid)


# ---------------------------------------------------------------- web3 (no brownie)


@dataclass
class Devnet:
    """An anvil of its own with a deployed ledger, for the web3 tests of contracts.chain."""

    node: Any
    deployment: Any
    keys: list[LocalAccount]

    @property
    def url(self) -> str:
        return str(self.node.url)


@pytest.fixture(scope="module")
def devnet_session() -> Iterator[Devnet]:
    with start_anvil() as node:
        web3 = connect(node.url)
        keys = dev_accounts(6)
        deployment = deploy(web3, keys[0], TEST_PARAMS)
        fund(web3, deployment, keys[0], [k.address for k in keys], tokens=INITIAL_TOKENS)
        yield Devnet(node=node, deployment=deployment, keys=keys)


@pytest.fixture
def devnet(devnet_session: Devnet) -> Iterator[Devnet]:
    """The devnet, reverted to its freshly deployed state after the test."""
    web3 = connect(devnet_session.url)
    snapshot = web3.provider.make_request("evm_snapshot", [])["result"]
    yield devnet_session
    web3.provider.make_request("evm_revert", [snapshot])
