"""
``market put``: a file in, an id out, with every share in an active deal on chain.

1. Rank the providers for the share size (``market.discovery``, ``market.scoring``) and
   check, before any work, that enough distinct ones are eligible under the price cap and
   that the balance covers the escrow.
2. Prepare the file into a staging directory (``node.pieces.prepare_file``: encrypt,
   erasure-code or replicate, commit, sign the manifest) and record the file and shares.
3. Place every share in parallel (``market.dealflow.Placer``): propose, upload, wait for
   the deal on chain, retry with the next provider on any failure.
4. Store the manifest with every provider holding a share and in the DHT, mark the file
   stored, delete the staging directory.

Resume: the put job (source path, size, mtime and plan) is recorded before the
preparation; running the same ``market put`` again after an interruption finds it, settles
every nonce the interrupted run left live (a deal accepted meanwhile is kept), and places
only the shares without an active deal, from the same prepared shares.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from contracts.offers import DEAL_PROTOCOL, ManifestStored, StoreManifest
from market.config import format_tokens, redundancy_text
from market.db import FileRecord, PlacementRecord, ShareRecord
from market.dealflow import Funds, Placer, ProviderPool, settle_nonce
from market.discovery import discover
from market.errors import (
    InsufficientFunds,
    NoProviders,
    PlacementFailed,
    PriceCapUnmet,
    UsageError,
)
from market.placement import LIVE_NONCE, State
from market.progress import Progress
from market.scoring import Score, candidates, rank, shortfall
from market.session import Session
from node.errors import NodeError
from node.pieces.errors import PiecesError
from node.pieces.layout import share_size
from node.pieces.modes import Mode
from node.pieces.prepare import prepare_file

log = logging.getLogger("market.put")

MANIFEST_TIMEOUT: float = 10.0


@dataclass(frozen=True)
class PutResult:
    file_id: str
    name: str | None
    size: int
    redundancy: str
    deals: list[PlacementRecord]
    escrow: int
    resumed: bool
    manifest_copies: int
    """Providers that stored the manifest."""
    published: bool
    """Whether the manifest is in the DHT."""
    timings: dict[str, float]
    """Seconds spent in each phase: discover, prepare, place, manifest."""


async def put_file(
    s: Session,
    path: Path,
    *,
    mode: Mode,
    periods: int,
    max_price: int | None,
    progress: Progress,
) -> PutResult:
    """Store ``path`` with ``mode`` redundancy for ``periods`` periods (module docstring)."""
    db = s.home.db
    clock = time.monotonic()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = round(now - clock, 3)
        clock = now

    source, st = await asyncio.to_thread(_stat_source, path)
    plan = redundancy_text(mode)
    job = db.find_put(str(source), st.st_size, st.st_mtime_ns, plan, periods)
    size = share_size(st.st_size, mode.k)

    discovery = await discover(s)
    for note in discovery.notes:
        progress.note(note)
    ranking = rank(discovery.views, size, periods, discovery.params, max_price)
    lap("discover")

    file: FileRecord | None = None
    if job is not None and job.file_id is not None:
        file = db.file(job.file_id)
        if file is not None and not _staging_complete(Path(job.staging), db.shares(file.id)):
            progress.note(f"the prepared shares of {file.id[:16]} are gone; preparing again")
            await _abandon(s, file.id)
            db.update_put(job.id, state="failed")
            job, file = None, None
    resumed = file is not None
    if file is None:
        _require_providers(ranking, mode.n, max_price)
        plan_cost = sum(c.price_per_period * periods for c in candidates(ranking)[: mode.n])
        funds = Funds(s)
        await funds.check(plan_cost)
        lap("funds")
        # The approval is mined while the file is prepared.
        approving = asyncio.ensure_future(funds.ensure(plan_cost))
        if job is None:
            staging = Path(tempfile.mkdtemp(prefix="put-", dir=s.home.paths.staging))
            job = db.add_put(
                source=str(source),
                source_size=st.st_size,
                source_mtime_ns=st.st_mtime_ns,
                redundancy=plan,
                periods=periods,
                staging=str(staging),
            )
        try:
            file = await _prepare(
                s,
                job.id,
                source,
                Path(job.staging),
                mode=mode,
                periods=periods,
                max_price=max_price,
            )
        finally:
            await approving
    else:
        progress.note(f"resuming the put of {file.id}")
        for record in db.placements(file.id, LIVE_NONCE):
            await settle_nonce(s, record)
    lap("prepare")

    assert job is not None
    shares = db.shares(file.id)
    active = {p.share_index for p in db.placements(file.id, [State.ACTIVE])}
    todo = [sh for sh in shares if sh.index not in active]
    holders = {p.provider for p in db.placements(file.id, [State.ACTIVE])}
    if todo:
        s.node.serve_pieces(Path(job.staging))
        await _place(
            s, file, todo, ranking=ranking, holders=holders, periods=periods, progress=progress
        )

    lap("place")
    deals = db.placements(file.id, [State.ACTIVE])
    cleanup = None
    if not s.home.config.deals.keep_staging:  # every share is placed: the copies can go
        cleanup = asyncio.ensure_future(asyncio.to_thread(shutil.rmtree, job.staging, True))
    copies, published = await store_manifest(s, file, deals, discovery.addresses())
    db.set_file_state(file.id, "stored")
    db.update_put(job.id, state="done")
    if cleanup is not None:
        await cleanup
    lap("manifest")
    return PutResult(
        file_id=file.id,
        name=file.name,
        size=file.size,
        redundancy=plan,
        deals=deals,
        escrow=sum(d.escrow for d in deals),
        resumed=resumed,
        manifest_copies=copies,
        published=published,
        timings=timings,
    )


def _stat_source(path: Path) -> tuple[Path, os.stat_result]:
    """The absolute path of a readable regular file and its stat (``UsageError`` if not)."""
    source = path.expanduser().resolve()
    try:
        st = os.stat(source)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path}: not a regular file")
    return source, st


def _require_providers(ranking: list[Score], needed: int, max_price: int | None) -> None:
    eligible = candidates(ranking)
    if len(eligible) >= needed:
        return
    gap = shortfall(ranking, needed)
    if max_price is not None and gap.eligible + gap.priced_out >= needed:
        cheapest = sorted(
            s.provider.ask.price_per_gib_period for s in ranking if s.provider.ask is not None
        )
        raise PriceCapUnmet(
            f"only {gap.eligible} providers ask at most {format_tokens(max_price)} tokens per "
            f"GiB per period, {needed} needed (the cheapest asks: "
            + ", ".join(format_tokens(p) for p in cheapest[:needed])
            + ")"
        )
    raise NoProviders(gap.message())


async def _prepare(
    s: Session,
    job_id: int,
    source: Path,
    staging: Path,
    *,
    mode: Mode,
    periods: int,
    max_price: int | None,
) -> FileRecord:
    db = s.home.db
    account = s.account
    assert account is not None
    try:
        prepared = await asyncio.to_thread(
            prepare_file, source, s.secret, mode, staging, account, name=source.name
        )
    except PiecesError as exc:
        raise UsageError(f"cannot prepare {source}: {exc}") from None
    m = prepared.manifest.manifest
    db.add_file(
        file_id=prepared.id,
        name=source.name,
        size=m.file_size,
        mode=m.mode,
        k=m.k,
        n=m.n,
        periods=periods,
        max_price=max_price,
        manifest=prepared.manifest.encoded,
        roots=[(sh.root, sh.size) for sh in prepared.shares],
    )
    db.update_put(job_id, file_id=prepared.id, state="placing")
    file = db.file(prepared.id)
    assert file is not None
    return file


async def _place(
    s: Session,
    file: FileRecord,
    todo: list[ShareRecord],
    *,
    ranking: list[Score],
    holders: set[str],
    periods: int,
    progress: Progress,
) -> None:
    pool = ProviderPool(candidates(ranking, holders), holders)
    placer = Placer(
        s, file.id, periods=periods, pool=pool, funds=Funds(s), progress=progress, purpose="put"
    )
    limit = s.home.config.deals.parallel_uploads or len(todo)
    gate = asyncio.Semaphore(limit)

    async def one(share: ShareRecord) -> None:
        async with gate:
            await placer.place(share)

    results = await asyncio.gather(*(one(sh) for sh in todo), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for exc in failures:
        if not isinstance(exc, PlacementFailed | InsufficientFunds):
            raise exc
    if failures:
        funds = [e for e in failures if isinstance(e, InsufficientFunds)]
        if funds:
            raise funds[0]
        raise PlacementFailed(
            f"{len(failures)} of {len(todo)} shares could not be placed; run the same put "
            f"again to retry them. {failures[0]}"
        )


async def store_manifest(
    s: Session,
    file: FileRecord,
    deals: list[PlacementRecord],
    addrs: dict[str, tuple[tuple[str, int], ...]],
) -> tuple[int, bool]:
    """Give the manifest to every provider holding a share, and to the DHT."""
    manifest_id = bytes.fromhex(file.id)
    holders = {d.provider.lower(): d.node_id for d in deals}

    async def give(address: str, node_id: bytes) -> bool:
        where = addrs.get(address, ())
        if not where:
            return False
        try:
            reply = await s.node.host.request(
                node_id, list(where), DEAL_PROTOCOL, StoreManifest(file.manifest), MANIFEST_TIMEOUT
            )
        except (NodeError, OSError) as exc:
            log.warning("manifest not stored with %s: %s", address, exc)
            return False
        return isinstance(reply, ManifestStored) and reply.manifest_id == manifest_id

    stored = await asyncio.gather(*(give(a, n) for a, n in holders.items()))
    published = await publish_manifest(s, file)
    return sum(stored), published


async def publish_manifest(s: Session, file: FileRecord) -> bool:
    """Store the manifest in the DHT (content-addressed); True if some node took it."""
    assert hashlib.sha256(file.manifest).hexdigest() == file.id
    try:
        async with asyncio.timeout(s.home.config.node.lookup_timeout):
            await s.node.kad.put_value(file.manifest)
    except (TimeoutError, NodeError) as exc:
        log.warning("manifest %s not stored in the DHT: %s", file.id[:16], exc)
        return False
    s.home.db.set_published(file.id)
    return True


def _staging_complete(staging: Path, shares: list[ShareRecord]) -> bool:
    return all(
        (staging / f"{sh.root.hex()}.piece").exists()
        and (staging / f"{sh.root.hex()}.layer").exists()
        for sh in shares
    )


async def _abandon(s: Session, file_id: str) -> None:
    """Settle every live nonce of a put that cannot resume (its staging is gone)."""
    for record in s.home.db.placements(file_id, LIVE_NONCE):
        await settle_nonce(s, record)
    s.home.db.set_file_state(file_id, "failed")
