"""
The devnet: anvil plus a deployed ledger, for tests, the demo and local development.

Python API (what tests, the demo and benchmarks use)::

    with start_anvil() as node:                      # free port, Prague rules
        web3 = connect(node.url)
        deployer = dev_accounts(1)[0]
        deployment = deploy(web3, deployer, MarketParams(period_blocks=20))
        fund(web3, deployment, deployer, [addr], eth=10**19, tokens=10**24)

Console (``devnet`` entry point)::

    devnet up [--port 8545] [--block-time 1] [--period-blocks 40] [--fund ADDR ...]
              [--out deployment.json]        start anvil, deploy, fund, write the file, serve
    devnet up --rpc URL ...                  reuse a running node instead of starting one
    devnet deploy --rpc URL [--key HEX] ...  deploy onto any node and write the file

Anvil runs with the Prague rules and its normal EIP-1559 base fee (1 gwei, then adjusting
per block); ``contracts.txs`` prices every transaction from the latest base fee.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts.artifacts import MARKET, TOKEN, load_artifact
from contracts.chain import connect
from contracts.deployment import TOKEN_UNIT, Deployment, MarketParams
from contracts.errors import LocalError, RpcUnavailable
from contracts.txs import TxConfig, TxSender

DEV_MNEMONIC: Final = "test test test test test test test test test test test junk"
"""anvil's (and hardhat's) default mnemonic: public, for devnets only."""
DEFAULT_HARDFORK: Final = "prague"
TOKEN_NAME: Final = "Depot Storage"
TOKEN_SYMBOL: Final = "DST"
DEFAULT_FAUCET_CAP: Final = 1_000_000 * TOKEN_UNIT
"""Largest amount one devnet ``faucet`` call mints."""
START_TIMEOUT: Final = 10.0
"""Seconds to wait for a started anvil to answer."""


@functools.cache
def _dev_account(index: int) -> LocalAccount:
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(
        DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}"
    )
    return account


def dev_accounts(count: int = 10) -> list[LocalAccount]:
    """The first ``count`` accounts of anvil's default mnemonic (BIP-44 path m/44'/60'/0'/0/i)."""
    return [_dev_account(i) for i in range(count)]


def find_anvil() -> str:
    """The anvil binary: on PATH, or the project's own (scripts/setup.sh puts it in .tools/)."""
    found = shutil.which("anvil")
    if found:
        return found
    local = Path(__file__).resolve().parent.parent / ".tools" / "anvil"
    if local.exists():
        return str(local)
    raise LocalError("anvil not found: run scripts/setup.sh or put anvil on PATH")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_taken(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (it would answer our RPC checks)."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Anvil:
    """A running anvil process; ``stop()`` (or leaving the ``with`` block) ends it."""

    url: str
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)

    def stop(self) -> None:
        """Terminate anvil and wait for it (kill after 5 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Anvil:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_anvil(
    *,
    port: int | None = None,
    block_time: float | None = None,
    hardfork: str = DEFAULT_HARDFORK,
    accounts: int = 10,
    balance_eth: int = 10_000,
    gas_limit: int = 30_000_000,
    chain_id: int = 31337,
    extra_args: Sequence[str] = (),
    anvil: str | None = None,
) -> Anvil:
    """
    Start anvil on 127.0.0.1 and wait until it answers.

    Parameters
    ----------
    port :
        TCP port; ``None`` picks a free one (retrying if another process takes it first).
    block_time :
        Seconds between blocks; ``None`` mines one block per transaction.
    hardfork :
        EVM rules (``prague`` by default; ``cancun`` to compare calldata pricing).
    accounts, balance_eth :
        Dev accounts from ``DEV_MNEMONIC`` and their ETH balance.
    gas_limit, chain_id :
        Block gas limit and EIP-155 chain id.
    extra_args :
        More anvil flags.
    anvil :
        The binary (default: ``find_anvil()``).

    Raises
    ------
    RpcUnavailable
        anvil exited or did not answer within ``START_TIMEOUT`` seconds.
    """
    binary = anvil or find_anvil()
    attempts = 1 if port is not None else 3
    last_error = ""
    for _ in range(attempts):
        chosen = port if port is not None else _free_port()
        if _port_taken(chosen):
            last_error = f"port {chosen} is already in use"
            continue
        cmd = [
            binary,
            "--host", "127.0.0.1",
            "--port", str(chosen),
            "--hardfork", hardfork,
            "--accounts", str(accounts),
            "--balance", str(balance_eth),
            "--gas-limit", str(gas_limit),
            "--chain-id", str(chain_id),
            "--mnemonic", DEV_MNEMONIC,
            "--silent",
            *(["--block-time", str(block_time)] if block_time is not None else []),
            *extra_args,
        ]  # fmt: skip
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        node = Anvil(url=f"http://127.0.0.1:{chosen}", port=chosen, process=process)
        web3 = connect(node.url, timeout=2)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if web3.eth.block_number >= 0:
                    return node
            except Exception:  # not up yet: any transport error
                time.sleep(0.05)
        node.stop()
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        last_error = stderr.strip()[-500:] or "no answer"
    raise RpcUnavailable(f"anvil did not start: {last_error}")


def deploy(
    web3: Web3,
    deployer: LocalAccount,
    params: MarketParams | None = None,
    *,
    faucet: bool = True,
    faucet_cap: int = DEFAULT_FAUCET_CAP,
    rpc_url: str | None = None,
    tx_config: TxConfig | None = None,
) -> Deployment:
    """
    Deploy a Token and a StorageMarket from the committed artifacts.

    Parameters
    ----------
    web3 :
        Connection to the node.
    deployer :
        Pays for the deployment and owns the token (it may ``mint``).
    params :
        The market's parameters (default: the protocol defaults).
    faucet, faucet_cap :
        Whether anyone may mint up to ``faucet_cap`` tokens per call (devnets only).
    rpc_url :
        URL to record in the deployment (default: the provider's own).
    """
    params = params or MarketParams()
    sender = TxSender(web3, deployer, tx_config)
    token_code = _creation_code(web3, TOKEN, TOKEN_NAME, TOKEN_SYMBOL, faucet, faucet_cap)
    token = sender.send(None, token_code)["contractAddress"]
    if token is None:
        raise LocalError("token deployment returned no contract address")
    receipt = sender.send(None, _creation_code(web3, MARKET, token, *params.constructor_args()))
    market = receipt["contractAddress"]
    if market is None:
        raise LocalError("market deployment returned no contract address")
    url = rpc_url or str(getattr(web3.provider, "endpoint_uri", "") or "")
    return Deployment(
        chain_id=int(web3.eth.chain_id),
        rpc_url=url,
        token=Web3.to_checksum_address(token),
        market=Web3.to_checksum_address(market),
        deploy_block=int(receipt["blockNumber"]),
        params=params,
    )


def _creation_code(web3: Web3, name: str, *args: object) -> bytes:
    """A contract's creation code with its ABI-encoded constructor arguments appended."""
    artifact = load_artifact(name)
    ctor = next(item for item in artifact.abi if item.get("type") == "constructor")
    types = [i["type"] for i in ctor["inputs"]]
    return bytes.fromhex(artifact.bytecode.removeprefix("0x")) + web3.codec.encode(types, args)


def fund(
    web3: Web3,
    deployment: Deployment,
    owner: LocalAccount,
    addresses: Sequence[str],
    *,
    eth: int = 0,
    tokens: int = 0,
) -> None:
    """Send ``eth`` wei and mint ``tokens`` (``owner`` must own the token) to each address."""
    sender = TxSender(web3, owner)
    token = web3.eth.contract(
        address=Web3.to_checksum_address(deployment.token), abi=load_artifact(TOKEN).abi_list()
    )
    for address in addresses:
        target = Web3.to_checksum_address(address)
        if eth:
            sender.send(target, b"", value=eth)
        if tokens:
            sender.send(token.address, token.encode_abi("mint", args=[target, tokens]))


# ---------------------------------------------------------------------- console


def _params_from(args: argparse.Namespace) -> MarketParams:
    defaults = MarketParams()
    return MarketParams(
        period_blocks=args.period_blocks or defaults.period_blocks,
        challenges=args.challenges or defaults.challenges,
        min_stake=args.min_stake * TOKEN_UNIT if args.min_stake is not None else defaults.min_stake,
        unbonding_periods=(
            args.unbonding_periods
            if args.unbonding_periods is not None
            else defaults.unbonding_periods
        ),
        max_consecutive_misses=args.max_misses or defaults.max_consecutive_misses,
        miss_slash_bps=args.miss_slash_bps
        if args.miss_slash_bps is not None
        else defaults.miss_slash_bps,
        bounty_bps=args.bounty_bps if args.bounty_bps is not None else defaults.bounty_bps,
        max_piece_size=args.max_piece_size or defaults.max_piece_size,
    )


def _add_deploy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="deployment.json", help="where to write the deployment")
    p.add_argument("--key", help="deployer private key (default: anvil's first dev account)")
    p.add_argument("--fund", nargs="*", default=[], metavar="ADDR", help="addresses to fund")
    p.add_argument("--fund-dev", type=int, default=10, metavar="N", help="also fund N dev accounts")
    p.add_argument("--fund-eth", type=float, default=100.0, help="ETH per funded address")
    p.add_argument("--fund-tokens", type=int, default=1_000_000, help="whole tokens per address")
    p.add_argument("--no-faucet", action="store_true", help="deploy the token without faucet")
    p.add_argument("--period-blocks", type=int, help="blocks per proving period")
    p.add_argument("--challenges", type=int, help="challenges per period")
    p.add_argument("--min-stake", type=int, help="minimum stake in whole tokens")
    p.add_argument("--unbonding-periods", type=int)
    p.add_argument("--max-misses", type=int, help="consecutive misses that terminate")
    p.add_argument("--miss-slash-bps", type=int)
    p.add_argument("--bounty-bps", type=int)
    p.add_argument("--max-piece-size", type=int, help="bytes")


def _deploy_and_fund(url: str, args: argparse.Namespace) -> Deployment:
    web3 = connect(url)
    deployer = Account.from_key(args.key) if args.key else dev_accounts(1)[0]
    deployment = deploy(web3, deployer, _params_from(args), faucet=not args.no_faucet, rpc_url=url)
    tokens = args.fund_tokens * TOKEN_UNIT
    # Given addresses get ETH for gas too; anvil's dev accounts already hold plenty.
    fund(web3, deployment, deployer, args.fund, eth=int(args.fund_eth * 10**18), tokens=tokens)
    dev = [a.address for a in dev_accounts(args.fund_dev)]
    fund(web3, deployment, deployer, dev, tokens=tokens)
    deployment.save(args.out)
    return deployment


def main(argv: Sequence[str] | None = None) -> int:
    """The ``devnet`` console command."""
    parser = argparse.ArgumentParser(prog="devnet", description="Depot's local chain")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start anvil (or reuse --rpc), deploy, fund, and serve")
    up.add_argument("--rpc", help="reuse the node at this URL instead of starting anvil")
    up.add_argument("--port", type=int, default=8545)
    up.add_argument("--block-time", type=float, help="seconds per block (default: automine)")
    up.add_argument("--hardfork", default=DEFAULT_HARDFORK)
    _add_deploy_options(up)
    dep = sub.add_parser("deploy", help="deploy onto a running node and write the file")
    dep.add_argument("--rpc", required=True, help="JSON-RPC URL")
    _add_deploy_options(dep)
    args = parser.parse_args(argv)
    # SIGTERM unwinds through the finally below, which stops anvil.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    try:
        if args.command == "deploy" or args.rpc:
            deployment = _deploy_and_fund(args.rpc, args)
            print(
                f"deployed market {deployment.market} on chain {deployment.chain_id} -> {args.out}"
            )
            return 0
        node = start_anvil(port=args.port, block_time=args.block_time, hardfork=args.hardfork)
    except (LocalError, RpcUnavailable) as exc:
        print(f"devnet: {exc}", file=sys.stderr)
        return 1
    try:
        deployment = _deploy_and_fund(node.url, args)
        print(f"anvil at {node.url}; market {deployment.market}; wrote {args.out}", flush=True)
        print("devnet ready (Ctrl-C to stop)", flush=True)
        while node.process.poll() is None:
            time.sleep(0.5)
        print("devnet: anvil exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
