"""
The ``prover`` command.

    prover [--home DIR] [--json] [--debug] init --deployment PATH [--rpc URL] [--listen H:P]
           [--advertise H:P] [--bootstrap ID@H:P ...] [--api H:P] [--capacity SIZE]
           [--price TOKENS] [--collateral TOKENS] [--stake TOKENS] [--database URL]
           [--import-key HEX] [--passphrase-file PATH] [--devnet-faucet]
    prover run [--passphrase-file PATH] [--listen H:P] [--advertise H:P] [--bootstrap ...]
           [--api H:P] [--rpc URL]                  the daemon (ready line on stdout)
    prover status | deals [--state S] [--limit N] | earnings
    prover exit [--withdraw] [--passphrase-file PATH]

``status``, ``deals`` and ``earnings`` ask the running daemon's API (found through
``run.json``) and read the database directly when no daemon runs. ``exit`` asks the running
daemon to request the exit (it withdraws by itself after unbonding); without a daemon it
sends the transactions itself (``--withdraw`` once unbonded).

User errors are one line on stderr and a non-zero exit code (``EXIT_CODES``); ``--debug``
shows the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
from rich.console import Console
from rich.table import Table

from contracts.chain import LedgerClient, ProviderStatus
from contracts.errors import DeploymentError, LedgerError, RemoteError, Reverted
from contracts.keystore import KeystoreError, load_keystore, read_passphrase
from contracts.txs import TxConfig
from node.errors import NodeError
from node.runtime import run as run_loop
from prover.config import ProverConfig, format_amount, format_size
from prover.daemon import ProverNode, exit_report, print_ready
from prover.db import Database
from prover.errors import (
    ChainUnavailable,
    ConfigError,
    DatabaseError,
    HomeError,
    LocalError,
    ProverError,
    StorageError,
)
from prover.home import Home, init_home, resolve_home
from prover.logs import setup_logging
from prover.views import deals_view, earnings_view, summary_view

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_CONFIG: Final = 3
EXIT_CHAIN: Final = 4
EXIT_KEYSTORE: Final = 5
EXIT_STORAGE: Final = 6
EXIT_INTERRUPTED: Final = 130

EXIT_CODES: Final[tuple[tuple[type[BaseException], int], ...]] = (
    (KeystoreError, EXIT_KEYSTORE),
    (ConfigError, EXIT_CONFIG),
    (HomeError, EXIT_CONFIG),
    (DeploymentError, EXIT_CONFIG),
    (StorageError, EXIT_STORAGE),
    (DatabaseError, EXIT_STORAGE),
    (ChainUnavailable, EXIT_CHAIN),
    (RemoteError, EXIT_CHAIN),
    (LedgerError, EXIT_CHAIN),
    (LocalError, EXIT_ERROR),
    (ProverError, EXIT_ERROR),
    (NodeError, EXIT_ERROR),
    (OSError, EXIT_ERROR),
)
"""Each package's error tree onto an exit code (first match wins)."""

API_TIMEOUT: Final = 10.0


class UsageError(Exception):
    """A command line that cannot be acted on (exit code 2)."""


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help="data directory")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog="prover", description="Depot storage provider daemon", parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", parents=[common], help="create the data directory")
    init.add_argument("--deployment", required=True, help="deployment.json of the ledger")
    init.add_argument("--rpc", help="JSON-RPC URL (overrides the deployment's)")
    init.add_argument("--listen", help="P2P listen address host:port")
    init.add_argument("--advertise", help="host:port registered on chain")
    init.add_argument("--bootstrap", action="append", default=[], help="ID@HOST:PORT")
    init.add_argument("--api", help="HTTP API address host:port")
    init.add_argument("--capacity", help='storage capacity, e.g. "100 GiB"')
    init.add_argument("--price", help="price per GiB per period, tokens")
    init.add_argument("--collateral", help="collateral per GiB, tokens")
    init.add_argument("--stake", help="stake deposited at registration, tokens")
    init.add_argument("--database", help="SQLAlchemy URL (default: SQLite in the home)")
    init.add_argument("--import-key", help="use this private key (hex) instead of a new one")
    init.add_argument("--passphrase-file", help="keystore passphrase file")
    init.add_argument("--devnet-faucet", action="store_true", help="mint the stake (devnet)")

    run = sub.add_parser("run", parents=[common], help="run the daemon")
    run.add_argument("--passphrase-file", help="keystore passphrase file")
    run.add_argument("--listen", help="P2P listen address host:port")
    run.add_argument("--advertise", help="host:port registered on chain")
    run.add_argument("--bootstrap", action="append", default=[], help="ID@HOST:PORT")
    run.add_argument("--api", help="HTTP API address host:port")
    run.add_argument("--rpc", help="JSON-RPC URL")

    sub.add_parser("status", parents=[common], help="the daemon's state")
    deals = sub.add_parser("deals", parents=[common], help="deals")
    deals.add_argument("--state", help="only deals in this state")
    deals.add_argument("--limit", type=int, default=1000)
    sub.add_parser("earnings", parents=[common], help="payments")
    exit_ = sub.add_parser("exit", parents=[common], help="stop taking deals, then withdraw")
    exit_.add_argument("--withdraw", action="store_true", help="withdraw now (unbonded)")
    exit_.add_argument("--passphrase-file", help="keystore passphrase file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("home", None), ("json", False), ("debug", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        code = COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except UsageError as exc:
        print(f"prover: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        for kind, exit_code in EXIT_CODES:
            if isinstance(exc, kind):
                if args.debug:
                    traceback.print_exc()
                print(f"prover: {_message(exc)}", file=sys.stderr)
                return exit_code
        raise
    return code


def _message(exc: BaseException) -> str:
    if isinstance(exc, Reverted):
        return f"the chain refused: {exc.reason or exc}"
    return str(exc) or type(exc).__name__


# ---------------------------------------------------------------------------- init


def cmd_init(args: argparse.Namespace) -> int:
    home = Home(resolve_home(args.home))
    config = apply_overrides(ProverConfig(), args)
    if args.devnet_faucet:
        config = config.with_values("chain", devnet_faucet=True)
    if args.database:
        config = config.with_values("database", url=args.database)
    for section, key, value in (
        ("storage", "capacity", args.capacity),
        ("offer", "price_per_gib_period", args.price),
        ("offer", "collateral_per_gib", args.collateral),
        ("chain", "stake", args.stake),
    ):
        if value is not None:
            config = config.with_values(section, **{key: value})
    config.validate()
    private_key = None
    if args.import_key:
        try:
            private_key = bytes.fromhex(args.import_key.removeprefix("0x"))
        except ValueError:
            raise UsageError("--import-key must be a hex private key") from None
        if len(private_key) != 32:
            raise UsageError("--import-key must be 32 bytes of hex")
    passphrase = read_passphrase(file=args.passphrase_file, confirm=True)
    result = init_home(home, config, Path(args.deployment), passphrase, private_key=private_key)
    Database.open(home.database_url(config)).close()
    _print(args, result, title="prover initialised")
    return EXIT_OK


def apply_overrides(config: ProverConfig, args: argparse.Namespace) -> ProverConfig:
    """The network options shared by ``init`` and ``run``."""
    if getattr(args, "rpc", None):
        config = config.with_values("chain", rpc_url=args.rpc)
    if getattr(args, "listen", None):
        config = config.with_values("p2p", listen=args.listen)
    if getattr(args, "advertise", None):
        config = config.with_values("p2p", advertise=args.advertise)
    if getattr(args, "bootstrap", None):
        config = config.with_values("p2p", bootstrap=list(args.bootstrap))
    if getattr(args, "api", None):
        config = config.with_values("api", listen=args.api)
    return config.validate()


# ---------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    home = Home(resolve_home(args.home))
    config = apply_overrides(home.load_config(), args)
    setup_logging(config.log.level, config.log.format)
    with _lock(home):
        account = load_keystore(home.keystore_path, read_passphrase(file=args.passphrase_file))
        run_loop(_run(home, config, account))
    return EXIT_OK


async def _run(home: Home, config: ProverConfig, account: Any) -> None:
    node = ProverNode(home, config, account)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        info = await node.start()
        print_ready(info)
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(node.stopped.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
    finally:
        await node.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if node.fatal is not None:
        raise node.fatal


@contextlib.contextmanager
def _lock(home: Home) -> Iterator[None]:
    """One daemon per home: an exclusive lock on ``<home>/.lock`` held while it runs."""
    if not home.config_path.exists():
        raise HomeError(f"{home.root} is not a prover home (run `prover init` first)")
    fd = os.open(home.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HomeError(f"a prover is already running on {home.root}") from None
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- views


def _api_get(home: Home, path: str) -> Any | None:
    """GET from the running daemon's API, or None when no daemon runs."""
    info = home.read_run_info()
    if info is None or not info.get("api"):
        return None
    try:
        response = httpx.get(info["api"] + path, timeout=API_TIMEOUT)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    return response.json()


def _open_db(home: Home) -> Database:
    config = home.load_config()
    return Database.open(home.database_url(config), migrate=False)


def cmd_status(args: argparse.Namespace) -> int:
    home = Home(resolve_home(args.home))
    status = _api_get(home, "/status")
    if status is None:
        running = home.read_run_info() is not None  # alive, but its API did not answer
        db = _open_db(home)
        try:
            status = {"running": running, **summary_view(db)}
        finally:
            db.close()
    else:
        status = {"running": True, **status}
    if args.json:
        _print_json(status)
        return EXIT_OK
    table = Table(title="prover status", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in _flatten(status):
        table.add_row(key, value)
    Console().print(table)
    return EXIT_OK


def cmd_deals(args: argparse.Namespace) -> int:
    home = Home(resolve_home(args.home))
    query = f"/deals?limit={args.limit}" + (f"&state={args.state}" if args.state else "")
    deals = _api_get(home, query)
    if deals is None:
        db = _open_db(home)
        try:
            deals = deals_view(db, args.state, args.limit)
        except ValueError:
            raise UsageError(f"unknown deal state {args.state!r}") from None
        finally:
            db.close()
    if args.json:
        _print_json(deals)
        return EXIT_OK
    table = Table(title=f"deals ({len(deals)})")
    for column in ("deal", "state", "client", "root", "size", "price/period", "periods", "paid"):
        table.add_column(column)
    for d in deals:
        table.add_row(
            str(d["deal_id"] or "-"),
            d["state"],
            d["client"][:10],
            d["piece_root"][:12],
            format_size(d["piece_size"]),
            format_amount(int(d["price_per_period"])),
            f"{d['start_period'] or '-'}..{d['stop_period'] or '-'}",
            format_amount(int(d["paid"])),
        )
    Console().print(table)
    return EXIT_OK


def cmd_earnings(args: argparse.Namespace) -> int:
    home = Home(resolve_home(args.home))
    earnings = _api_get(home, "/earnings")
    if earnings is None:
        db = _open_db(home)
        try:
            earnings = earnings_view(db)
        finally:
            db.close()
    if args.json:
        _print_json(earnings)
        return EXIT_OK
    console = Console()
    console.print(
        f"paid [bold]{earnings['paid_tokens']}[/bold] tokens, accrued (proven, not yet "
        f"settled) [bold]{earnings['accrued_tokens']}[/bold], "
        f"{earnings['settlements']} settlements"
    )
    table = Table()
    for column in ("deal", "state", "paid", "accrued", "settled through"):
        table.add_column(column)
    for d in earnings["deals"]:
        table.add_row(
            str(d["deal_id"]),
            d["state"],
            format_amount(int(d["paid"])),
            format_amount(int(d["accrued"])),
            str(d["settled_through"]),
        )
    console.print(table)
    return EXIT_OK


# ---------------------------------------------------------------------------- exit


def cmd_exit(args: argparse.Namespace) -> int:
    home = Home(resolve_home(args.home))
    config = home.load_config()
    info = home.read_run_info()
    if info is not None and info.get("api"):
        try:
            response = httpx.post(info["api"] + "/exit", timeout=120)
        except httpx.HTTPError as exc:
            raise ChainUnavailable(f"the daemon's API did not answer: {exc}") from None
        if response.status_code != 200:
            detail = response.json().get("detail", response.text[:300])
            raise ChainUnavailable(f"the daemon could not request the exit: {detail}")
        report = {**response.json(), "note": "the running daemon withdraws after unbonding"}
        _print(args, report, title="exit")
        return EXIT_OK
    account = load_keystore(home.keystore_path, read_passphrase(file=args.passphrase_file))
    deployment = home.load_deployment(config)
    ledger = LedgerClient(
        config.chain.rpc_url or deployment.rpc_url,
        deployment,
        account,
        tx_config=TxConfig(rpc_timeout=config.chain.rpc_timeout),
    )
    provider = ledger.provider(ledger.address)
    if provider.status == ProviderStatus.NONE:
        raise HomeError(f"{ledger.address} is not a registered provider")
    if provider.status == ProviderStatus.ACTIVE:
        ledger.request_exit()
        provider = ledger.provider(ledger.address)
    report = exit_report(provider, deployment.params.unbonding_periods, ledger.current_period())
    if args.withdraw and provider.status == ProviderStatus.EXITING:
        receipt = ledger.withdraw()
        report = {**report, "withdrawn": str(provider.stake), "tx": receipt.tx_hash}
        report["status"] = ledger.provider(ledger.address).status.name.lower()
    _print(args, report, title="exit")
    return EXIT_OK


# ---------------------------------------------------------------------------- output


def _print(args: argparse.Namespace, doc: dict[str, Any], *, title: str) -> None:
    if args.json:
        _print_json(doc)
        return
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in _flatten(doc):
        table.add_row(key, value)
    Console().print(table)


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=1, default=str) + "\n")


def _flatten(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, name + ".")
        else:
            rows.append((name, "-" if value is None else str(value)))
    return rows


COMMANDS = {
    "init": cmd_init,
    "run": cmd_run,
    "status": cmd_status,
    "deals": cmd_deals,
    "earnings": cmd_earnings,
    "exit": cmd_exit,
}


if __name__ == "__main__":
    sys.exit(main())
