"""
The ``market`` command.

    market init --deployment deployment.json [--rpc URL] [--import-key HEX]
    market providers [--size BYTES] [--periods N] [--max-price TOKENS]
    market put FILE [--copies R | --ec K-of-N] [--duration PERIODS] [--max-price TOKENS]
    market get ID [OUT] [--force]
    market ls
    market status ID
    market repair [ID] [--watch] [--interval SECONDS]

Global options: ``--home DIR`` (default ``$DEPOT_HOME`` or ``~/.depot/market``), ``--json``
(one JSON document on stdout), ``--passphrase-file F`` (else ``$DEPOT_PASSPHRASE``, else
a prompt), ``-v``/``-vv`` (log detail on stderr), ``--debug`` (tracebacks). A user error is
one line on stderr and a non-zero exit code (``market.errors``: 2 local, 3 unknown file,
4 insufficient funds, 5 network or chain).

This module imports little at its top: worker processes of ``node.pieces`` re-import the
program's main module, so the heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("market")

EXIT_INTERRUPTED = 130
_GLOBAL_DEFAULTS = {
    "home": None,
    "json": False,
    "passphrase_file": None,
    "verbose": 0,
    "debug": False,
}


def _parser() -> argparse.ArgumentParser:
    # The global options are accepted before and after the subcommand; SUPPRESS keeps a
    # value given before it from being reset by the subcommand's own defaults.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home",
        default=argparse.SUPPRESS,
        help="data directory (default: $DEPOT_HOME or ~/.depot/market)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document on stdout",
    )
    common.add_argument(
        "--passphrase-file",
        default=argparse.SUPPRESS,
        help="file whose first line is the passphrase",
    )
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log detail"
    )
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )

    p = argparse.ArgumentParser(prog="market", description="Depot storage client", parents=[common])
    sub = p.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", parents=[common], help="create the client's home directory")
    init.add_argument("--deployment", required=True, help="deployment.json of the ledger")
    init.add_argument("--rpc", help="JSON-RPC URL (overrides the deployment file's)")
    init.add_argument("--import-key", help="use this private key (hex) instead of a new one")
    init.add_argument("--listen", help="P2P listen address HOST:PORT")
    init.add_argument("--bootstrap", action="append", default=[], help="ID@HOST:PORT")
    init.add_argument("--database", help="SQLAlchemy database URL (default: SQLite)")
    init.add_argument("--redundancy", help='default redundancy, "copies:R" or "ec:K-of-N"')
    init.add_argument("--duration", type=int, help="default deal length in periods")
    init.add_argument("--max-price", help="default price cap, tokens per GiB per period")
    init.add_argument("--reputation", help="auditor reputation export (path or URL)")
    init.add_argument(
        "--exempt-loopback", action="store_true", help="local devnet: no DHT IP-prefix limits"
    )

    prov = sub.add_parser("providers", parents=[common], help="discover and rank providers")
    prov.add_argument("--size", type=int, default=1 << 30, help="piece size to rank for (bytes)")
    prov.add_argument("--periods", type=int, help="deal length (default: the config's)")
    prov.add_argument("--max-price", help="price cap, tokens per GiB per period")

    put = sub.add_parser("put", parents=[common], help="store a file")
    put.add_argument("file", type=Path)
    mode = put.add_mutually_exclusive_group()
    mode.add_argument("--copies", type=int, metavar="R", help="R full copies")
    mode.add_argument("--ec", metavar="K-of-N", help="erasure coding, any K of N shares")
    put.add_argument("--duration", type=int, metavar="PERIODS", help="deal length")
    put.add_argument("--max-price", help="price cap, tokens per GiB per period")

    get = sub.add_parser("get", parents=[common], help="get a file back")
    get.add_argument("id")
    get.add_argument("out", nargs="?", type=Path)
    get.add_argument("--force", action="store_true", help="replace OUT if it exists")

    sub.add_parser("ls", parents=[common], help="list files, their deals and health")

    status = sub.add_parser("status", parents=[common], help="one file's deals and health")
    status.add_argument("id")

    repair = sub.add_parser("repair", parents=[common], help="restore full redundancy")
    repair.add_argument("id", nargs="?")
    repair.add_argument("--watch", action="store_true", help="repair every file, forever")
    repair.add_argument("--interval", type=float, help="seconds between passes (--watch)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``market`` console script."""
    args = _parser().parse_args(argv)
    for name, default in _GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    _setup_logging(args)
    try:
        from market.commands import run_command  # noqa: PLC0415 (heavy imports)

        result = run_command(args)
    except KeyboardInterrupt:
        print("market: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        code, message = _describe(exc)
        if code is None:
            log.exception("unexpected error")
            print(f"market: internal error: {exc!r} (run with --debug)", file=sys.stderr)
            return 1
        print(f"market: {message}", file=sys.stderr)
        return code
    return _emit(args, result)


def _describe(exc: Exception) -> tuple[int | None, str]:
    """Exit code and one-line message of an error, or (None, "") for a bug."""
    from contracts.errors import LedgerError, RemoteError  # noqa: PLC0415
    from market.errors import LocalError as MarketLocal  # noqa: PLC0415
    from market.errors import MarketError  # noqa: PLC0415
    from market.errors import RemoteError as MarketRemote  # noqa: PLC0415
    from node.errors import LocalError as NodeLocal  # noqa: PLC0415
    from node.errors import NodeError  # noqa: PLC0415

    local, remote = MarketLocal.exit_code, MarketRemote.exit_code
    if isinstance(exc, MarketError):
        return exc.exit_code, str(exc)
    if isinstance(exc, LedgerError):
        return (remote if isinstance(exc, RemoteError) else local), f"chain: {exc}"
    if isinstance(exc, NodeError):
        return (local if isinstance(exc, NodeLocal) else remote), f"network: {exc}"
    if isinstance(exc, OSError):
        return local, str(exc)
    return None, ""


def _emit(args: argparse.Namespace, result: Any) -> int:
    """Print a command's result: JSON, or its human rendering."""
    code = getattr(result, "exit_code", 0)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        result.render()
    sys.stdout.flush()
    return int(code)


class _KeyValueFormatter(logging.Formatter):
    """``time=... level=... logger=... msg="..."`` lines (structured, grep-able)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace('"', "'")
        line = (
            f"time={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} level={record.levelname.lower()}"
            f' logger={record.name} msg="{message}"'
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _setup_logging(args: argparse.Namespace) -> None:
    daemon = args.command == "repair" and args.watch
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    if daemon and not args.verbose:
        level = logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if level > logging.DEBUG:
        # web3 and the transport are chatty at INFO about things the user did not ask.
        for name in ("web3", "urllib3", "node.transport", "node.swarm", "node.kademlia"):
            logging.getLogger(name).setLevel(max(level, logging.WARNING))


if __name__ == "__main__":
    sys.exit(main())
