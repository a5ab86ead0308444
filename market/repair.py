"""
``market repair ID`` and ``market repair --watch``: keep every file at full redundancy.

For one file (``repair_file``):

1. Read its deals from the chain (``market.status``) and close the rows of deals that will
   never be proven again (``ENDED``, or ``LOST`` for terminations and declared losses).
2. The shares to act on: those without a live deal (the provider was terminated, declared
   the piece lost, the deal ended, or the provider proved none of the last
   ``repair.miss_threshold`` periods), and those whose every live deal ends within
   ``repair.renew_before_periods`` periods. A provider refuses a second deal for a piece it
   already holds, so renewal is a new placement with another provider before the old deal
   ends (the old one runs out on its own).
3. Download chunks of ``k`` surviving shares from every holder (``market.retrieve``),
   re-encode exactly the shares needed (``market.rebuild``: same secret, salt and index,
   hence the same bytes and root, checked), and place each with a new provider that holds
   no other share of the file (``market.dealflow``), then give it the manifest.

``--watch`` repeats this for every stored file every ``repair.watch_interval`` seconds and
republishes the manifests in the DHT (values there live at most 48 hours) every
``REPUBLISH_INTERVAL``; it stops cleanly on SIGTERM or SIGINT between steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from contracts.errors import LedgerError
from market.db import PlacementRecord
from market.dealflow import Funds, Placer, ProviderPool
from market.discovery import discover
from market.errors import MarketError, PlacementFailed, RemoteError
from market.health import GONE, DealCondition, Health
from market.placement import State, Trigger
from market.progress import Progress
from market.put import publish_manifest, store_manifest
from market.rebuild import rebuild_shares
from market.retrieve import close_spool, fetch_stripes, find_sources, open_spool
from market.scoring import candidates, rank
from market.session import Session
from market.status import FileStatus, file_status
from node.errors import NodeError
from node.pieces.manifest import decode_manifest

log = logging.getLogger("market.repair")

REPUBLISH_INTERVAL = 12 * 3600.0
"""Seconds between republications of a manifest in the DHT by ``--watch``."""


@dataclass(frozen=True)
class RepairOutcome:
    file_id: str
    before: Health
    repaired: tuple[int, ...] = ()
    """Shares rebuilt and placed with a new provider."""
    renewed: tuple[int, ...] = ()
    """Shares placed anew because their deals were about to end."""
    closed: tuple[int, ...] = ()
    """Placement ids whose deals ended or were lost."""
    placements: tuple[PlacementRecord, ...] = field(default_factory=tuple)

    @property
    def acted(self) -> bool:
        return bool(self.repaired or self.renewed)


async def repair_file(s: Session, file_id: str, progress: Progress) -> RepairOutcome:
    """Bring one file back to full redundancy (module docstring)."""
    db = s.home.db
    status = await file_status(s, file_id)
    file = status.file
    closed = []
    for view in status.deals:
        if view.placement.state is State.ACTIVE and view.condition in GONE:
            lost = view.condition in (DealCondition.TERMINATED, DealCondition.LOST)
            db.transition(
                view.placement.id,
                Trigger.LOST if lost else Trigger.ENDED,
                reason=str(view.condition),
            )
            closed.append(view.placement.id)
            log.info(
                "deal %s of %s share %d: %s",
                view.placement.deal_id,
                file_id[:16],
                view.placement.share_index,
                view.condition,
            )
    health = status.health
    targets = sorted(set(health.missing) | set(health.expiring))
    if not targets:
        return RepairOutcome(file_id, health, closed=tuple(closed))
    progress.note(
        f"{file_id[:16]}: {health.state}, {health.alive}/{health.total} shares alive; "
        f"rebuilding share(s) {', '.join(map(str, targets))}"
    )
    manifest = decode_manifest(file.manifest)
    m = manifest.manifest
    sources = await find_sources(s, manifest)
    sink = await asyncio.to_thread(
        open_spool, manifest, sources, s.home.paths.downloads / f"repair-{file_id}"
    )
    staging = s.home.paths.staging / f"repair-{file_id}"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        try:
            await fetch_stripes(s, manifest, sources, sink, progress=progress, label="repair")
            await asyncio.to_thread(
                functools.partial(
                    rebuild_shares,
                    m,
                    s.secret,
                    have=sink.have,
                    read=sink.read_chunk,
                    missing=targets,
                    out_dir=staging,
                )
            )
        except BaseException:
            sink.close()
            raise
        close_spool(sink)
        placements = await _place(s, status, targets, staging, progress)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    expiring = set(health.expiring)
    return RepairOutcome(
        file_id,
        health,
        repaired=tuple(i for i in targets if i not in expiring),
        renewed=tuple(i for i in targets if i in expiring),
        closed=tuple(closed),
        placements=tuple(placements),
    )


async def _place(
    s: Session, status: FileStatus, targets: list[int], staging: Path, progress: Progress
) -> list[PlacementRecord]:
    db = s.home.db
    file = status.file
    file_id = file.id
    # Providers that hold (or held, or just failed) a share of this file take no more.
    exclude = {v.placement.provider for v in status.deals}
    shares = {sh.index: sh for sh in db.shares(file_id)}
    discovery = await discover(s)
    size = shares[targets[0]].size
    ranking = rank(discovery.views, size, file.periods, discovery.params, file.max_price)
    pool = ProviderPool(candidates(ranking, exclude), exclude)
    s.node.serve_pieces(staging)
    placer = Placer(
        s,
        file_id,
        periods=file.periods,
        pool=pool,
        funds=Funds(s),
        progress=progress,
        purpose="repair",
    )
    results = await asyncio.gather(
        *(placer.place(shares[i]) for i in targets), return_exceptions=True
    )
    placed = [r[0] for r in results if isinstance(r, tuple)]
    failed = [r for r in results if isinstance(r, BaseException)]
    if placed:
        await store_manifest(s, file, placed, discovery.addresses())
    for exc in failed:
        if not isinstance(exc, MarketError):
            raise exc
    if failed:
        raise PlacementFailed(
            f"{len(failed)} of {len(targets)} shares of {file_id[:16]} not re-placed: {failed[0]}"
        )
    return placed


async def repair_all(s: Session, progress: Progress) -> list[RepairOutcome | MarketError]:
    """
    One pass over every stored file. A file's failure, or the chain or network failing
    meanwhile, does not stop the others (nor ``--watch``): it is reported and retried at
    the next pass.
    """
    out: list[RepairOutcome | MarketError] = []
    for f in s.home.db.files():
        if f.state not in ("stored", "placing"):
            continue
        try:
            out.append(await repair_file(s, f.id, progress))
        except MarketError as exc:
            log.warning("repair of %s failed: %s", f.id[:16], exc)
            out.append(exc)
        except (LedgerError, NodeError) as exc:
            log.warning("repair of %s failed: %s", f.id[:16], exc)
            out.append(RemoteError(f"{f.id[:16]}: {exc}"))
    return out


async def republish(s: Session) -> int:
    """Store due manifests in the DHT again; returns how many were stored."""
    count = 0
    now = time.time()
    for f in s.home.db.files():
        if f.state != "stored":
            continue
        key = f"published_at:{f.id}"
        last = float(s.home.db.get_meta(key) or 0)
        if now - last < REPUBLISH_INTERVAL:
            continue
        if await publish_manifest(s, f):
            s.home.db.set_meta(key, str(now))
            count += 1
    return count


async def watch(s: Session, progress: Progress, stop: asyncio.Event, interval: float) -> None:
    """Repair every file and republish manifests every ``interval`` seconds until ``stop``."""
    while not stop.is_set():
        started = time.monotonic()
        results = await repair_all(s, progress)
        acted = [r for r in results if isinstance(r, RepairOutcome) and r.acted]
        failed = [r for r in results if isinstance(r, MarketError)]
        republished = await republish(s)
        log.info(
            "repair pass: files=%d repaired=%d failed=%d republished=%d elapsed=%.1fs",
            len(results),
            len(acted),
            len(failed),
            republished,
            time.monotonic() - started,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
