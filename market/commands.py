"""
What each ``market`` subcommand does, and how its result is printed (a rich table or one
JSON document). ``market.cli`` parses the arguments and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.table import Table

from contracts.keystore import read_passphrase
from market.config import (
    MarketConfig,
    format_tokens,
    parse_redundancy,
    parse_token_amount,
)
from market.db import PlacementRecord
from market.errors import UsageError
from market.get import GetResult, get_file
from market.home import Home, init_home, open_home
from market.paths import resolve_home
from market.progress import make_progress
from market.put import PutResult, put_file
from market.repair import RepairOutcome, repair_all, repair_file, watch
from market.retrieve import parse_file_id
from market.scoring import Score, rank
from market.session import Session, open_session
from market.status import FileStatus, file_status, file_statuses
from node.runtime import run

T = TypeVar("T")
out = Console(highlight=False, soft_wrap=True)


def run_command(args: argparse.Namespace) -> Any:
    """Run the subcommand of ``args``; returns its result object (``to_json``/``render``)."""
    handlers: dict[str, Callable[[argparse.Namespace], Any]] = {
        "init": cmd_init,
        "providers": cmd_providers,
        "put": cmd_put,
        "get": cmd_get,
        "ls": cmd_ls,
        "status": cmd_status,
        "repair": cmd_repair,
    }
    return handlers[args.command](args)


# ----------------------------------------------------------------------------- plumbing


def _home(args: argparse.Namespace) -> Home:
    return open_home(resolve_home(args.home))


def _passphrase(args: argparse.Namespace, *, confirm: bool = False) -> str:
    return read_passphrase(file=args.passphrase_file, confirm=confirm)


def _account(args: argparse.Namespace, home: Home) -> LocalAccount:
    """The decrypted account (``ConfigError`` on a wrong passphrase)."""
    return home.account(_passphrase(args))


def _run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on the node's event loop; SIGTERM and SIGINT cancel it cleanly."""

    async def guarded() -> T:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    return run(guarded())


async def _with_session(
    home: Home,
    account: LocalAccount | None,
    network: bool,
    body: Callable[[Session], Awaitable[T]],
) -> T:
    async with open_session(home, account=account, network=network) as s:
        return await body(s)


def _jsonable(value: Any) -> Any:
    """Dataclasses, bytes, paths and big integers as JSON values (amounts as strings)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, float | str):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    return str(value)


def _deal_json(p: PlacementRecord) -> dict[str, Any]:
    return {
        "share": p.share_index,
        "provider": p.provider,
        "deal_id": p.deal_id,
        "state": str(p.state),
        "price_per_period": str(p.price_per_period),
        "collateral": str(p.collateral),
        "periods": p.periods,
        "start_period": p.start_period,
        "end_period": p.end_period,
        "tx_hash": p.tx_hash,
        "purpose": p.purpose,
    }


# ----------------------------------------------------------------------------- init


@dataclass
class InitOutput:
    home: Path
    address: str
    node_id: bytes
    database: str

    def to_json(self) -> Any:
        return _jsonable(self)

    def render(self) -> None:
        out.print(f"home      {self.home}")
        out.print(f"address   {self.address}   (fund it with tokens and gas)")
        out.print(f"node id   {self.node_id.hex()}")
        out.print(f"database  {self.database}")


def cmd_init(args: argparse.Namespace) -> InitOutput:
    defaults = MarketConfig()
    node = defaults.node
    node = dataclasses.replace(
        node,
        listen=args.listen or node.listen,
        bootstrap=tuple(args.bootstrap) or node.bootstrap,
        exempt_loopback=args.exempt_loopback or node.exempt_loopback,
    )
    deals = defaults.deals
    if args.redundancy:
        parse_redundancy(args.redundancy)
    if args.max_price:
        parse_token_amount(args.max_price)
    deals = dataclasses.replace(
        deals,
        redundancy=args.redundancy or deals.redundancy,
        duration_periods=args.duration or deals.duration_periods,
        max_price=args.max_price or deals.max_price,
    )
    scoring = dataclasses.replace(defaults.scoring, reputation=args.reputation or "")
    database = dataclasses.replace(defaults.database, url=args.database or "")
    config = MarketConfig(
        chain=defaults.chain,
        node=node,
        deals=deals,
        scoring=scoring,
        repair=defaults.repair,
        database=database,
    )
    key = None
    if args.import_key:
        try:
            key = bytes.fromhex(args.import_key.removeprefix("0x"))
        except ValueError:
            raise UsageError("--import-key takes a private key in hex") from None
        if len(key) != 32:
            raise UsageError("--import-key takes a 32-byte private key")
    result = init_home(
        resolve_home(args.home),
        deployment=Path(args.deployment),
        passphrase=_passphrase(args, confirm=True),
        rpc_url=args.rpc,
        import_key=key,
        config=config,
    )
    return InitOutput(result.home, result.address, result.node_id, result.database_url)


# ----------------------------------------------------------------------------- providers


@dataclass
class ProvidersOutput:
    ranking: list[Score]
    size: int
    periods: int
    notes: tuple[str, ...] = ()

    def to_json(self) -> Any:
        rows = []
        for rank_no, s in enumerate(self.ranking, 1):
            v = s.provider
            rows.append(
                {
                    "rank": rank_no,
                    "address": v.address,
                    "node_id": v.node_id.hex(),
                    "addrs": [f"{h}:{p}" for h, p in v.addrs],
                    "eligible": s.eligible,
                    "problems": list(s.problems),
                    "score": s.total,
                    "parts": s.parts,
                    "price_per_gib_period": str(v.ask.price_per_gib_period) if v.ask else None,
                    "collateral_per_gib": str(v.ask.collateral_per_gib) if v.ask else None,
                    "free_bytes": v.ask.free_bytes if v.ask else None,
                    "price_per_period": str(s.price_per_period),
                    "stake": str(v.stake),
                    "free_stake": str(v.free_stake),
                    "proofs": v.proofs,
                    "missed": v.missed,
                    "terminations": v.terminations,
                    "losses": v.losses,
                    "latency_ms": None if v.latency is None else round(v.latency * 1000, 2),
                    "active": v.active,
                }
            )
        return {
            "size": self.size,
            "periods": self.periods,
            "providers": rows,
            "notes": list(self.notes),
        }

    def render(self) -> None:
        for note in self.notes:
            out.print(f"[yellow]{note}[/yellow]")
        table = Table(title=f"providers for a {self.size:,}-byte piece, {self.periods} periods")
        for col in (
            "#",
            "provider",
            "score",
            "price/GiB/period",
            "collateral/GiB",
            "free",
            "proofs",
            "missed/term./loss",
            "rtt ms",
            "notes",
        ):
            table.add_column(col)
        for i, s in enumerate(self.ranking, 1):
            v = s.provider
            table.add_row(
                str(i),
                v.address,
                f"{s.total:.3f}" if v.ask else "-",
                format_tokens(v.ask.price_per_gib_period) if v.ask else "-",
                format_tokens(v.ask.collateral_per_gib) if v.ask else "-",
                _bytes(v.ask.free_bytes) if v.ask else "-",
                f"{v.proofs}",
                f"{v.missed}/{v.terminations}/{v.losses}",
                "-" if v.latency is None else f"{v.latency * 1000:.1f}",
                ", ".join(s.problems) if s.problems else "eligible",
            )
        out.print(table)


def cmd_providers(args: argparse.Namespace) -> ProvidersOutput:
    from market.discovery import discover  # noqa: PLC0415

    home = _home(args)
    periods = args.periods or home.config.deals.duration_periods
    cap = parse_token_amount(args.max_price or home.config.deals.max_price)

    async def body(s: Session) -> ProvidersOutput:
        d = await discover(s)
        ranking = rank(d.views, args.size, periods, d.params, cap)
        return ProvidersOutput(ranking, args.size, periods, d.notes)

    try:
        return _run(_with_session(home, None, True, body))
    finally:
        home.close()


# ----------------------------------------------------------------------------- put


@dataclass
class PutOutput:
    result: PutResult

    def to_json(self) -> Any:
        r = self.result
        return {
            "id": r.file_id,
            "name": r.name,
            "size": r.size,
            "redundancy": r.redundancy,
            "escrow": str(r.escrow),
            "resumed": r.resumed,
            "manifest_copies": r.manifest_copies,
            "published": r.published,
            "timings": r.timings,
            "deals": [_deal_json(d) for d in r.deals],
        }

    def render(self) -> None:
        r = self.result
        table = Table(title=f"{r.name or r.file_id}: {r.size:,} bytes, {r.redundancy}")
        for col in ("share", "provider", "deal", "price/period", "periods", "ends"):
            table.add_column(col)
        for d in sorted(r.deals, key=lambda d: d.share_index):
            table.add_row(
                str(d.share_index),
                d.provider,
                str(d.deal_id),
                format_tokens(d.price_per_period),
                str(d.periods),
                f"period {d.end_period}",
            )
        err = Console(stderr=True, highlight=False)
        err.print(table)
        err.print(
            f"escrow {format_tokens(r.escrow)} tokens; manifest with {r.manifest_copies} "
            f"providers{' and in the DHT' if r.published else ''}"
        )
        print(r.file_id)


def cmd_put(args: argparse.Namespace) -> PutOutput:
    home = _home(args)
    cfg = home.config.deals
    if args.copies is not None:
        mode = parse_redundancy(f"copies:{args.copies}")
    elif args.ec is not None:
        mode = parse_redundancy(f"ec:{args.ec}")
    else:
        mode = parse_redundancy(cfg.redundancy)
    periods = args.duration or cfg.duration_periods
    if periods < 1:
        raise UsageError("--duration must be at least 1 period")
    cap = parse_token_amount(args.max_price if args.max_price is not None else cfg.max_price)
    account = _account(args, home)

    async def body(s: Session) -> PutOutput:
        with make_progress(not args.json) as progress:
            return PutOutput(
                await put_file(
                    s, args.file, mode=mode, periods=periods, max_price=cap, progress=progress
                )
            )

    try:
        return _run(_with_session(home, account, True, body))
    finally:
        home.close()


# ----------------------------------------------------------------------------- get


@dataclass
class GetOutput:
    result: GetResult

    def to_json(self) -> Any:
        r = self.result
        data = _jsonable(r)
        data["mib_s"] = round(r.size / 2**20 / r.elapsed, 2) if r.elapsed > 0 else None
        return data

    def render(self) -> None:
        r = self.result
        rate = r.size / 2**20 / r.elapsed if r.elapsed > 0 else 0.0
        Console(stderr=True, highlight=False).print(
            f"{r.size:,} bytes from {r.holders} providers ({r.shares_available} shares "
            f"available) in {r.elapsed:.2f}s, {rate:.1f} MiB/s"
        )
        print(r.path)


def cmd_get(args: argparse.Namespace) -> GetOutput:
    home = _home(args)
    account = _account(args, home)

    async def body(s: Session) -> GetOutput:
        with make_progress(not args.json) as progress:
            return GetOutput(
                await get_file(s, args.id, args.out, force=args.force, progress=progress)
            )

    try:
        return _run(_with_session(home, account, True, body))
    finally:
        home.close()


# ----------------------------------------------------------------------------- ls, status


def _status_json(st: FileStatus) -> dict[str, Any]:
    f = st.file
    return {
        "id": f.id,
        "name": f.name,
        "size": f.size,
        "redundancy": f"copies:{f.n}" if f.mode == "copies" else f"ec:{f.k}-of-{f.n}",
        "state": f.state,
        "published": f.published,
        "period": st.period,
        "health": {
            "state": str(st.health.state),
            "alive": st.health.alive,
            "needed": st.health.needed,
            "total": st.health.total,
            "missing": list(st.health.missing),
            "expiring": list(st.health.expiring),
        },
        "deals": [
            {
                **_deal_json(v.placement),
                "condition": str(v.condition),
                "proven_periods": v.proven,
                "faults": v.faults,
                "paid": str(v.paid),
                "refunded": str(v.refunded),
                "stop_period": v.deal.stop if v.deal else None,
                "settled_through": v.deal.settled_through if v.deal else None,
            }
            for v in st.deals
        ],
    }


@dataclass
class LsOutput:
    statuses: list[FileStatus]

    def to_json(self) -> Any:
        return {"files": [_status_json(st) for st in self.statuses]}

    def render(self) -> None:
        table = Table(title="files")
        for col in ("id", "name", "size", "redundancy", "health", "deals", "ends"):
            table.add_column(col)
        for st in self.statuses:
            f, h = st.file, st.health
            ends = [v.deal.end for v in st.deals if v.deal is not None]
            table.add_row(
                f.id[:16],
                f.name or "",
                _bytes(f.size),
                f"copies:{f.n}" if f.mode == "copies" else f"ec:{f.k}-of-{f.n}",
                f"{h.state} {h.alive}/{h.total} (k={h.needed})",
                str(len([v for v in st.deals if v.placement.state.value == "active"])),
                f"period {min(ends)}" if ends else "-",
            )
        out.print(table)


@dataclass
class StatusOutput:
    status: FileStatus

    def to_json(self) -> Any:
        return _status_json(self.status)

    def render(self) -> None:
        st = self.status
        f, h = st.file, st.health
        out.print(f"file    {f.id}")
        out.print(f"name    {f.name or '-'}   size {f.size:,} bytes   state {f.state}")
        out.print(
            f"health  {h.state}: {h.alive} of {h.total} shares alive, {h.needed} needed"
            + (f"; missing {list(h.missing)}" if h.missing else "")
            + (f"; expiring {list(h.expiring)}" if h.expiring else "")
        )
        out.print(f"period  {st.period} (block {st.block})")
        table = Table()
        for col in (
            "share",
            "deal",
            "provider",
            "condition",
            "proven",
            "faults",
            "paid",
            "refunded",
            "start",
            "end",
        ):
            table.add_column(col)
        for v in sorted(st.deals, key=lambda v: (v.placement.share_index, v.placement.id)):
            p = v.placement
            table.add_row(
                str(p.share_index),
                str(p.deal_id),
                p.provider,
                str(v.condition),
                str(v.proven),
                str(v.faults),
                format_tokens(v.paid),
                format_tokens(v.refunded),
                str(p.start_period),
                str(v.deal.stop if v.deal else p.end_period),
            )
        out.print(table)


def cmd_ls(args: argparse.Namespace) -> LsOutput:
    home = _home(args)

    async def body(s: Session) -> LsOutput:
        return LsOutput(await file_statuses(s))

    try:
        return _run(_with_session(home, None, False, body))
    finally:
        home.close()


def cmd_status(args: argparse.Namespace) -> StatusOutput:
    home = _home(args)
    file_id = parse_file_id(args.id)

    async def body(s: Session) -> StatusOutput:
        return StatusOutput(await file_status(s, file_id))

    try:
        return _run(_with_session(home, None, False, body))
    finally:
        home.close()


# ----------------------------------------------------------------------------- repair


@dataclass
class RepairOutput:
    outcomes: list[RepairOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 5 if self.errors else 0

    def to_json(self) -> Any:
        return {
            "files": [
                {
                    "id": o.file_id,
                    "health_before": str(o.before.state),
                    "alive_before": o.before.alive,
                    "repaired": list(o.repaired),
                    "renewed": list(o.renewed),
                    "closed": list(o.closed),
                    "deals": [_deal_json(p) for p in o.placements],
                }
                for o in self.outcomes
            ],
            "errors": self.errors,
        }

    def render(self) -> None:
        for o in self.outcomes:
            if o.acted:
                out.print(
                    f"{o.file_id[:16]}: was {o.before.state} ({o.before.alive}/{o.before.total});"
                    f" repaired {list(o.repaired)} renewed {list(o.renewed)}"
                )
            else:
                out.print(f"{o.file_id[:16]}: {o.before.state}, nothing to do")
        for e in self.errors:
            Console(stderr=True).print(f"[red]{e}[/red]")


def cmd_repair(args: argparse.Namespace) -> RepairOutput:
    home = _home(args)
    account = _account(args, home)
    if args.watch and args.id:
        raise UsageError("--watch repairs every file; give no id")
    interval = args.interval or home.config.repair.watch_interval

    async def body(s: Session) -> RepairOutput:
        progress = make_progress(not args.json and not args.watch)
        with progress:
            if args.watch:
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, stop.set)
                print("market repair: watching", flush=True)
                await watch(s, progress, stop, interval)
                return RepairOutput()
            if args.id:
                return RepairOutput([await repair_file(s, parse_file_id(args.id), progress)])
            result = RepairOutput()
            for item in await repair_all(s, progress):
                if isinstance(item, RepairOutcome):
                    result.outcomes.append(item)
                else:
                    result.errors.append(str(item))
            return result

    try:
        if args.watch:
            return run(_with_session(home, account, True, body))
        return _run(_with_session(home, account, True, body))
    finally:
        home.close()


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
