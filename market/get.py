"""
``market get ID [OUT]``: the file back from whatever shares survive.

The manifest and the holders come from ``market.retrieve``; the shares are swarmed from
every holder at once into a resumable work directory (``<home>/downloads/<id>``), then
each stripe is decoded from the chunks of ``k`` shares that arrived, decrypted, and
written by the ``node.pieces`` Reassembler, which checks the keyed plaintext digest and
moves the file into place atomically: ``OUT`` either appears whole and verified, or not
at all. An interrupted get continues from the chunks already on disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from market.errors import RetrievalFailed, UsageError
from market.progress import Progress
from market.retrieve import Fetched, fetch_stripes, find_sources, load_manifest, parse_file_id
from market.session import Session
from node.identity import peer_short
from node.pieces.errors import NotEnoughShares, PiecesError, Tampered
from node.pieces.manifest import SignedManifest
from node.pieces.reassemble import Reassembler

log = logging.getLogger("market.get")


@dataclass(frozen=True)
class GetResult:
    file_id: str
    path: Path
    size: int
    holders: int
    shares_available: int
    received: dict[str, int]
    """Bytes received per provider (short node id)."""
    elapsed: float


async def get_file(
    s: Session, file_text: str, out: Path | None, *, force: bool, progress: Progress
) -> GetResult:
    """Fetch, verify, decode and decrypt file ``file_text`` into ``out`` (module docstring)."""
    started = time.monotonic()
    file_id = parse_file_id(file_text)
    manifest = await load_manifest(s, file_id)
    m = manifest.manifest
    if m.owner.lower() != s.address.lower():
        raise UsageError(f"file {file_id[:16]} belongs to {m.owner}; only its owner's key opens it")
    name = m.file_name(s.secret)
    target = _target(out, name or file_id, force)
    sources = await find_sources(s, manifest)
    workdir = s.home.paths.downloads / file_id
    fetched = await fetch_stripes(
        s, manifest, sources, workdir=workdir, progress=progress, label="get"
    )
    try:
        path = await asyncio.to_thread(assemble, manifest, s.secret, fetched, target)
    finally:
        fetched.cleanup()
    return GetResult(
        file_id=file_id,
        path=path,
        size=m.file_size,
        holders=len({src.peer_id for src in sources}),
        shares_available=len({src.share for src in sources}),
        received={peer_short(p): n for p, n in fetched.report.received.items()},
        elapsed=time.monotonic() - started,
    )


def _target(out: Path | None, name: str, force: bool) -> Path:
    if out is None:
        target = Path.cwd() / Path(name).name
    elif out.is_dir():
        target = out / Path(name).name
    else:
        target = out
    if target.exists() and not force:
        raise UsageError(f"{target} exists (use --force to replace it)")
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent}: no such directory")
    return target


def assemble(manifest: SignedManifest, secret: bytes, fetched: Fetched, out: Path) -> Path:
    """Decode every stripe from the downloaded chunks into ``out`` (atomically)."""
    m = manifest.manifest
    sink = fetched.sink
    try:
        with Reassembler(m, secret, out) as rebuilt:
            for stripe in range(m.stripes):
                shares = sorted(sink.have.get(stripe, ()))
                if len(shares) < m.k:
                    raise RetrievalFailed(f"stripe {stripe} has {len(shares)} of {m.k} chunks")
                for share in shares[: m.k]:  # data shares first: nothing to decode
                    rebuilt.add(stripe, share, sink.read_chunk(share, stripe))
            return rebuilt.finish()
    except (Tampered, NotEnoughShares) as exc:
        raise RetrievalFailed(f"the downloaded shares do not rebuild the file: {exc}") from None
    except PiecesError as exc:
        raise UsageError(f"cannot write {out}: {exc}") from None
