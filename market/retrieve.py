"""
Fetching a file's shares back: the manifest by id, the current holders of each share, a
resumable swarm download, and the stripes handed to a consumer (the file, or a repair).

Where the manifest comes from, in order: the local database, the DHT (``get_value(id)``,
checked against the id by the DHT and again here), then every registered provider
(``GetManifest`` over ``/depot/deal/1``). Whatever the source, the manifest must hash to the
id and carry its owner's signature (``node.pieces.manifest.decode_manifest``).

Holders: the DHT's provider records for each share's root (signed by staked node ids, the
record policy), plus the providers this client has active deals with. The download is a
``node.swarm`` session over all of them at once (for each stripe, chunks of any ``k``
distinct shares), into a chunk journal (``market.spool``) with the swarm's resume state
beside it: an interrupted get continues where it stopped. The spool knows which shares'
chunks of each stripe it holds, so that each stripe is decoded from exactly what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

from contracts.offers import DEAL_PROTOCOL, GetManifest, ManifestReply
from market.errors import RetrievalFailed, UnknownFile, UsageError
from market.network import endpoint_addrs
from market.placement import State
from market.progress import Progress
from market.session import Session
from market.spool import HEADER as SPOOL_HEADER
from market.spool import ChunkSpool
from node.errors import NodeError
from node.pieces.errors import ManifestError, NoSpace
from node.pieces.files import ensure_space
from node.pieces.manifest import Manifest, SignedManifest, decode_manifest
from node.swarm.errors import DownloadFailedError, StateFileError
from node.swarm.service import DownloadReport
from node.swarm.session import Source
from node.swarm.sink import ResumeState, SharePiece, pieces_of, reverify

log = logging.getLogger("market.retrieve")

STATE_FILE = "state.json"
MANIFEST_TIMEOUT = 10.0
HOLDER_LOOKUPS = 16
"""Share holder lookups in flight at once."""


def parse_file_id(text: str) -> str:
    """A manifest id: 64 hex digits (``UsageError`` otherwise), lowercased."""
    value = text.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise UsageError(f"not a file id (64 hex digits): {text!r}")
    return value


def check_manifest(file_id: str, data: bytes) -> SignedManifest | None:
    """The manifest if ``data`` hashes to ``file_id`` and verifies, else ``None``."""
    if hashlib.sha256(data).hexdigest() != file_id:
        return None
    try:
        return decode_manifest(data)
    except ManifestError as exc:
        log.warning("manifest %s does not verify: %s", file_id[:16], exc)
        return None


async def load_manifest(s: Session, file_id: str) -> SignedManifest:
    """The verified manifest of ``file_id`` (module docstring); ``UnknownFile`` if none."""
    record = s.home.db.file(file_id)
    if record is not None:
        manifest = check_manifest(file_id, record.manifest)
        if manifest is not None:
            return manifest
    try:
        async with asyncio.timeout(s.home.config.node.lookup_timeout):
            value = await s.node.kad.get_value(bytes.fromhex(file_id))
    except (TimeoutError, NodeError) as exc:
        log.info("dht: manifest lookup failed: %s", exc)
        value = None
    if value is not None:
        manifest = check_manifest(file_id, value)
        if manifest is not None:
            return manifest
    manifest = await _ask_providers(s, file_id)
    if manifest is None:
        raise UnknownFile(
            f"no file {file_id}: not in the local database, the DHT, or with any provider"
        )
    return manifest


async def _ask_providers(s: Session, file_id: str) -> SignedManifest | None:
    peers = [
        (p.node_id, endpoint_addrs(p.endpoint))
        for p in s.directory.providers()
        if p.node_id in s.directory.staked_node_ids()
    ]

    async def ask(node_id: bytes, addrs: tuple[tuple[str, int], ...]) -> SignedManifest | None:
        if not addrs:
            return None
        try:
            reply = await s.node.host.request(
                node_id,
                list(addrs),
                DEAL_PROTOCOL,
                GetManifest(bytes.fromhex(file_id)),
                MANIFEST_TIMEOUT,
            )
        except (NodeError, OSError):
            return None
        if isinstance(reply, ManifestReply) and reply.manifest is not None:
            return check_manifest(file_id, reply.manifest)
        return None

    tasks = [asyncio.ensure_future(ask(n, a)) for n, a in peers]
    try:
        for next_done in asyncio.as_completed(tasks):
            manifest = await next_done
            if manifest is not None:
                return manifest
    finally:
        for t in tasks:
            t.cancel()
    return None


async def find_sources(
    s: Session, manifest: SignedManifest, shares: set[int] | None = None
) -> list[Source]:
    """Current holders of the file's shares (all, or those in ``shares``) as swarm sources."""
    m = manifest.manifest
    wanted = [sh for sh in m.shares if shares is None or sh.index in shares]
    gate = asyncio.Semaphore(HOLDER_LOOKUPS)
    found: dict[tuple[bytes, int], Source] = {}

    async def lookup(index: int, root: bytes) -> None:
        async with gate:
            try:
                async with asyncio.timeout(s.home.config.node.lookup_timeout):
                    result = await s.node.kad.get_providers(root)
            except (TimeoutError, NodeError) as exc:
                log.info("dht: holders of share %d not found: %s", index, exc)
                return
        for record in result.records:
            addrs = tuple((a.host, a.port) for a in record.addrs)
            if addrs:
                found[(record.node_id, index)] = Source(
                    record.node_id, addrs, root, m.share_size, index
                )

    await asyncio.gather(*(lookup(sh.index, sh.root) for sh in wanted))
    # The providers we have deals with, at their registered endpoints, as a fallback.
    file_id = manifest.id
    staked = s.directory.staked_node_ids()
    for p in s.home.db.placements(file_id, [State.ACTIVE]):
        info = s.directory.by_node_id(p.node_id)
        if info is None or p.node_id not in staked or (p.node_id, p.share_index) in found:
            continue
        if shares is not None and p.share_index not in shares:
            continue
        addrs = endpoint_addrs(info.endpoint)
        share = m.shares[p.share_index]
        if addrs:
            found[(p.node_id, p.share_index)] = Source(
                p.node_id, addrs, share.root, m.share_size, p.share_index
            )
    return sorted(found.values(), key=lambda src: (src.share, src.peer_id))


def open_spool(manifest: SignedManifest, sources: list[Source], workdir: Path) -> ChunkSpool:
    """
    The download's chunk spool in ``workdir``, with what an interrupted earlier run left
    there (re-checked against the layers). ``RetrievalFailed`` if fewer than ``k`` shares
    have a holder.
    """
    m = manifest.manifest
    distinct = {src.share for src in sources}
    if len(distinct) < m.k:
        raise RetrievalFailed(
            f"only {len(distinct)} of the {m.k} shares needed have a reachable holder "
            f"({len(sources)} holders found)"
        )
    pieces = pieces_of(sources)
    expected = m.k * (m.share_size + m.stripes * SPOOL_HEADER.size)
    try:
        ensure_space(workdir.parent, expected + m.file_size)
    except NoSpace as exc:
        raise UsageError(f"{exc} (the download and the file)") from None
    sink = ChunkSpool(workdir, pieces, m.k, expected)
    try:
        _load_resume(sink, workdir / STATE_FILE, pieces)
    except BaseException:
        sink.close()
        raise
    return sink


async def fetch_stripes(
    s: Session,
    manifest: SignedManifest,
    sources: list[Source],
    sink: ChunkSpool,
    *,
    progress: Progress,
    label: str,
) -> DownloadReport:
    """
    Download, for every stripe, chunks of ``k`` distinct shares from ``sources`` into
    ``sink`` (resumable: run it again on the same directory after an interruption).

    Raises ``RetrievalFailed`` when the holders cannot cover some stripe ``k`` times.
    """
    m = manifest.manifest
    total = sum(m.block_size(j) for j in range(m.stripes)) * m.k
    progress.add(label, f"{label}: downloading", total)
    log.info(
        "download of %s: %d holders, %d chunks on disk",
        manifest.id[:16],
        len(sources),
        sum(len(v) for v in sink.have.values()),
    )
    state = sink.directory / STATE_FILE
    task = asyncio.ensure_future(s.node.swarm.download(sources, m.k, sink, state_path=state))
    base = _bytes_on_disk(sink, m)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            progress.update(label, min(base + sink.written, total))
        report = task.result()
    except DownloadFailedError as exc:
        raise RetrievalFailed(f"download failed: {exc}") from None
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    progress.update(label, total, f"{label}: downloaded")
    return report


def close_spool(sink: ChunkSpool) -> None:
    """Close the spool and delete the work directory (after a finished download)."""
    sink.close()
    shutil.rmtree(sink.directory, ignore_errors=True)


def _load_resume(sink: ChunkSpool, state: Path, pieces: Mapping[int, SharePiece]) -> None:
    """Seed ``sink.have`` from an earlier run's state (chunks re-checked against the layer)."""
    try:
        progress = ResumeState(state, pieces).load()
    except StateFileError as exc:
        # The holders changed since (a share without source now): start the state over;
        # the data files are rewritten where needed.
        log.info("resume state dropped: %s", exc)
        state.unlink(missing_ok=True)
        return
    for share, p in reverify(progress, sink).items():
        for index in p.done:
            sink.have.setdefault(index, set()).add(share)


def _bytes_on_disk(sink: ChunkSpool, m: Manifest) -> int:
    return sum(m.block_size(j) * min(len(shares), m.k) for j, shares in sink.have.items())
