"""
The ``auditor`` command.

    auditor init   [--home DIR] --deployment PATH [--rpc URL] [--database URL]
                   [--import-key HEX] [--passphrase-file F]
    auditor run    [--home DIR] [--listen HOST:PORT] [--bootstrap ID@HOST:PORT ...]
                   [--api HOST:PORT] [--no-bounties] [--passphrase-file F]
    auditor report [--home DIR] [--sync] [--out DIR]
    auditor status [--home DIR]

Every command takes ``--json`` (one JSON object on stdout) and ``--debug`` (tracebacks).
User errors are one line on stderr and a non-zero exit code: 1 for a local problem (home,
configuration, keystore), 3 for the chain (unreachable, refused), 2 for bad usage.
``auditor run`` prints ``auditor ready`` (or, with ``--json``, a JSON object with the API
URL and the P2P address) once its API answers, and stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select

from contracts.chain import LedgerClient, connect
from contracts.deployment import Deployment
from contracts.errors import LedgerError
from contracts.errors import LocalError as LedgerLocalError
from contracts.keystore import (
    KEYSTORE_NAME,
    KeystoreError,
    create_keystore,
    load_keystore,
    read_passphrase,
)
from market.auditor import db
from market.auditor.bounty import BountyHunter
from market.auditor.config import (
    CONFIG_NAME,
    DEFAULT_TOML,
    DEPLOYMENT_NAME,
    NODE_KEY_NAME,
    REPORT_DIR,
    AuditorConfig,
    database_url,
    home_dir,
    load_config,
    parse_config,
)
from market.auditor.errors import AuditorError, HomeError, LocalError
from market.auditor.indexer import Indexer
from market.auditor.report import write_report
from market.auditor.reputation import build_reputation
from market.auditor.rpc import RpcClient
from node.errors import LocalError as NodeLocalError
from node.errors import NodeError
from node.identity import NodeKey
from node.runtime import run as run_loop

EXIT_LOCAL: Final = 1
EXIT_USAGE: Final = 2
EXIT_REMOTE: Final = 3
EXIT_INTERRUPTED: Final = 130
LOCAL_ERRORS: Final = (LocalError, LedgerLocalError, KeystoreError, NodeLocalError, OSError)
"""Errors that are the user's to fix (exit 1); every other error is the chain's or a peer's."""


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (``--json``)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "t": round(record.created, 3),
                "level": record.levelname,
                "logger": record.name,
                "msg": record.getMessage(),
            }
        )


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="data directory (default $DEPOT_HOME or ~/.depot/auditor)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    parser = argparse.ArgumentParser(prog="auditor", description="Depot's independent auditor")
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", parents=[common], help="create the home directory")
    init.add_argument("--deployment", required=True, help="deployment.json of the market")
    init.add_argument("--rpc", help="JSON-RPC URL (overrides the deployment's)")
    init.add_argument("--database", help="SQLAlchemy URL (default: SQLite in the home)")
    init.add_argument("--import-key", help="hex private key of a funded account for bounties")
    init.add_argument("--passphrase-file", help="file holding the keystore passphrase")

    run = sub.add_parser("run", parents=[common], help="run the auditor daemon")
    run.add_argument("--listen", help="P2P HOST:PORT")
    run.add_argument("--bootstrap", action="append", default=[], help="DHT peer ID@HOST:PORT")
    run.add_argument("--api", help="API HOST:PORT")
    run.add_argument("--no-bounties", action="store_true", help="watch only, report no faults")
    run.add_argument("--passphrase-file", help="file holding the keystore passphrase")

    report = sub.add_parser(
        "report", parents=[common], help="write reputation.json and report.html"
    )
    report.add_argument("--sync", action="store_true", help="index up to the chain head first")
    report.add_argument("--out", help="output directory (default: HOME/report)")

    sub.add_parser("status", parents=[common], help="indexing progress and totals")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``auditor`` command."""
    args = _parser().parse_args(argv)
    _setup_logging(logging.INFO if args.command == "run" else logging.WARNING, args.json)
    try:
        result = COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (AuditorError, LedgerError, NodeError, OSError) as exc:
        if args.debug:
            raise
        code = EXIT_LOCAL if isinstance(exc, LOCAL_ERRORS) else EXIT_REMOTE
        print(f"auditor: {exc}", file=sys.stderr)
        return code
    if result is not None:
        _emit(args, result)
    return 0


def _setup_logging(level: int, json_lines: bool) -> None:
    """key=value lines (JSON lines with ``--json``) on stderr, unless logging is set up
    already (the command embedded in another program, such as the tests)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)


def _emit(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(result, sort_keys=True), flush=True)
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


# ---------------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace) -> dict[str, Any]:
    home = home_dir(args.home)
    if (home / CONFIG_NAME).exists():
        raise HomeError(f"{home} is already initialised")
    deployment = Deployment.load(args.deployment)
    if args.rpc:
        deployment = replace(deployment, rpc_url=args.rpc)
    home.mkdir(parents=True, exist_ok=True)
    deployment.save(home / DEPLOYMENT_NAME)
    key = NodeKey.load_or_create(home / NODE_KEY_NAME)
    private = None
    if args.import_key:
        try:
            private = bytes.fromhex(args.import_key.removeprefix("0x"))
        except ValueError:
            raise LocalError("--import-key must be a hex private key") from None
    passphrase = read_passphrase(file=args.passphrase_file, confirm=True)
    account = create_keystore(home / KEYSTORE_NAME, passphrase, private)
    text = DEFAULT_TOML
    if args.database:
        text = text.replace('database = ""', f"database = {json.dumps(args.database)}", 1)
    config = parse_config(text)
    db.open_engine(database_url(config, home)).dispose()
    (home / CONFIG_NAME).write_text(text)
    return {
        "home": str(home),
        "account": account.address,
        "node_id": key.node_id.hex(),
        "market": deployment.market,
        "rpc": deployment.rpc_url,
    }


def _open(args: argparse.Namespace) -> tuple[Path, AuditorConfig, Deployment, Any]:
    home = home_dir(args.home)
    config = load_config(home)
    deployment = Deployment.load(home / DEPLOYMENT_NAME)
    if config.rpc_url:
        deployment = replace(deployment, rpc_url=config.rpc_url)
    engine = db.open_engine(database_url(config, home))
    return home, config, deployment, engine


def _indexer(
    config: AuditorConfig, deployment: Deployment, engine: Any
) -> tuple[Indexer, LedgerClient]:
    ledger = LedgerClient(connect(deployment.rpc_url, config.rpc.timeout), deployment)
    rpc = RpcClient(deployment.rpc_url, config.rpc)
    abi = [dict(item) for item in ledger.market.abi]
    return Indexer(engine, rpc, deployment, abi, config.indexer), ledger


def cmd_run(args: argparse.Namespace) -> None:
    # The daemon's modules (uvicorn, FastAPI, the transport) load only for `run`.
    from market.auditor.service import Auditor  # noqa: PLC0415

    home, config, deployment, engine = _open(args)
    if args.listen:
        config = replace(config, listen=args.listen)
    if args.bootstrap:
        config = replace(config, bootstrap=tuple(args.bootstrap))
    if args.api:
        config = replace(config, api=args.api)
    if args.no_bounties:
        config = replace(config, bounty=replace(config.bounty, enabled=False))
    indexer, ledger = _indexer(config, deployment, engine)
    hunter = None
    if config.bounty.enabled:
        account = load_keystore(home / KEYSTORE_NAME, read_passphrase(file=args.passphrase_file))
        ledger = LedgerClient(ledger.web3, deployment, account)
        hunter = BountyHunter(engine, ledger, indexer, config.bounty)

    def ready(info: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps({"ready": True, **info}, sort_keys=True), flush=True)
        else:
            print(f"auditor ready api={info['api']} p2p={info['p2p']}", flush=True)

    auditor = Auditor(
        config=config,
        home=home,
        engine=engine,
        deployment=deployment,
        indexer=indexer,
        hunter=hunter,
        node_key=NodeKey.load(home / NODE_KEY_NAME),
        ledger=ledger,
        ready=ready,
    )
    run_loop(auditor.run())


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    home, config, deployment, engine = _open(args)
    if args.sync:
        indexer, ledger = _indexer(config, deployment, engine)
        target = ledger.current_block() - config.indexer.confirmations
        while indexer.cursor <= target:
            indexer.step()
    doc = build_reputation(engine, deployment)
    out = Path(args.out) if args.out else home / REPORT_DIR
    json_path, html_path = write_report(out, doc)
    return {
        "json": str(json_path),
        "html": str(html_path),
        "providers": len(doc["providers"]),
        "indexed_through_block": doc["indexed_through_block"],
    }


def cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    _, _, deployment, engine = _open(args)
    with engine.connect() as conn:
        cursor = db.get_meta(conn, "next_block")
        counts = {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in (
                ("events", db.events),
                ("proofs", db.proofs),
                ("alarms", db.alarms),
                ("claims", db.claims),
                ("retrievals", db.retrievals),
            )
        }
    return {
        "market": deployment.market,
        "indexed_through_block": int(cursor) - 1 if cursor else None,
        **counts,
        "checked_at": time.time(),
    }


COMMANDS = {"init": cmd_init, "run": cmd_run, "report": cmd_report, "status": cmd_status}


if __name__ == "__main__":
    sys.exit(main())
