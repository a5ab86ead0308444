"""
``market get ID [OUT]``: the file back from whatever shares survive.

The manifest and the holders come from ``market.retrieve``; the shares are swarmed from
every holder at once into a resumable work directory (``<home>/downloads/<id>``), and each
stripe is decoded and decrypted as soon as ``k`` of its chunks are there
(``market.assemble``, on the other core), which also checks the keyed plaintext digest and
moves the file into place atomically: ``OUT`` either appears whole and verified, or not at
all. An interrupted get continues from the chunks already on disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from market.assemble import StripeAssembler
from market.errors import UsageError
from market.progress import Progress
from market.retrieve import (
    close_spool,
    fetch_stripes,
    find_sources,
    load_manifest,
    open_spool,
    parse_file_id,
)
from market.session import Session
from node.identity import peer_short

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
    timings: dict[str, float]
    """Seconds spent finding the manifest and holders, downloading, and decoding."""


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
    target = await asyncio.to_thread(_target, out, name or file_id, force)
    sources = await find_sources(s, manifest)
    found = time.monotonic()
    sink = await asyncio.to_thread(open_spool, manifest, sources, s.home.paths.downloads / file_id)
    try:
        assembler = StripeAssembler(m, s.secret, target, sink)
        try:
            sink.on_stripe = assembler.ready
            for stripe, shares in sink.complete():
                assembler.ready(stripe, shares)
            report = await fetch_stripes(s, manifest, sources, sink, progress=progress, label="get")
            downloaded = time.monotonic()
            path = await assembler.finish()
        except BaseException:
            assembler.abort()
            raise
    except BaseException:
        sink.close()
        raise
    close_spool(sink)
    done = time.monotonic()
    return GetResult(
        file_id=file_id,
        path=path,
        size=m.file_size,
        holders=len({src.peer_id for src in sources}),
        shares_available=len({src.share for src in sources}),
        received={peer_short(p): n for p, n in report.received.items()},
        elapsed=done - started,
        timings={
            "locate": round(found - started, 3),
            "download": round(downloaded - found, 3),
            "decode": round(done - downloaded, 3),
        },
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
