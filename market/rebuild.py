"""
Rebuilding lost shares from surviving ones, bit for bit.

Encryption and erasure coding are deterministic given the client's secret, the file's salt
and the share index (docs/pieces.md: one key per copy, nonces from chunk indices, zfec's
systematic code), so decoding each stripe to plaintext from any ``k`` shares and encoding
it again yields exactly the lost share's chunks. The rebuilt share is committed the same
way (chunk roots, then the piece root) and must hash to the root in the manifest: anything
else is refused (``RebuildMismatch``), never offered to a provider.

Output: ``<root>.piece`` and ``<root>.layer`` in ``out_dir`` (the layout of
``node.swarm.store.FilePieceStore``, from which the share is pushed), written under
temporary names and renamed once the root checks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from market.errors import RetrievalFailed
from node.pieces.errors import NotEnoughShares, Tampered
from node.pieces.files import fsync_dir, pwrite_all, remove_quietly, temp_path
from node.pieces.layout import CHUNK_SIZE
from node.pieces.manifest import Manifest
from node.pieces.merkle import chunk_root, root_of_layer
from node.pieces.stripes import StripeCodec

ReadChunk = Callable[[int, int], bytes]
"""``read(share, stripe)``: chunk ``stripe`` of share ``share`` (verified on arrival)."""


class RebuildMismatch(RetrievalFailed):
    """A rebuilt share does not hash to its root in the manifest."""


def rebuild_shares(
    manifest: Manifest,
    secret: bytes,
    *,
    have: Mapping[int, Iterable[int]],
    read: ReadChunk,
    missing: Iterable[int],
    out_dir: Path,
) -> dict[int, Path]:
    """
    Re-encode shares ``missing`` of ``manifest`` from the chunks in ``have``
    (stripe -> share indices on hand, at least ``k`` per stripe) into ``out_dir``.

    Returns share index -> path of ``<root>.piece``. Raises ``RetrievalFailed`` when a
    stripe lacks ``k`` chunks or does not authenticate, ``RebuildMismatch`` when a result
    does not match its root.
    """
    targets = sorted(set(missing))
    codec = StripeCodec(
        manifest.file_size, manifest.redundancy, manifest.salt, manifest.keys(secret).stream_keys
    )
    roots = {i: manifest.shares[i].root for i in targets}
    tmp = {i: temp_path(out_dir / f"{roots[i].hex()}.piece") for i in targets}
    fds: dict[int, int] = {}
    layers: dict[int, bytearray] = {i: bytearray() for i in targets}
    try:
        for i in targets:
            fds[i] = os.open(tmp[i], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        for stripe in range(manifest.stripes):
            sources = sorted(have.get(stripe, ()))[: manifest.k]
            if len(sources) < manifest.k:
                raise RetrievalFailed(f"stripe {stripe}: {len(sources)} of {manifest.k} chunks")
            try:
                plaintext = codec.decode(stripe, {sh: read(sh, stripe) for sh in sources})
            except (Tampered, NotEnoughShares) as exc:
                raise RetrievalFailed(f"stripe {stripe} does not decode: {exc}") from None
            blocks = codec.encode(stripe, b"".join(plaintext))
            for i in targets:
                block = blocks[i]
                pwrite_all(fds[i], block, stripe * CHUNK_SIZE)
                layers[i] += chunk_root(block)
        out: dict[int, Path] = {}
        for i in targets:
            if root_of_layer(bytes(layers[i])) != roots[i]:
                raise RebuildMismatch(f"rebuilt share {i} does not match its root")
            os.fsync(fds[i])
        for i in targets:
            piece = out_dir / f"{roots[i].hex()}.piece"
            layer = out_dir / f"{roots[i].hex()}.layer"
            layer_tmp = temp_path(layer)
            with open(layer_tmp, "wb") as f:
                f.write(layers[i])
                f.flush()
                os.fsync(f.fileno())
            os.replace(layer_tmp, layer)
            os.replace(tmp[i], piece)
            out[i] = piece
        fsync_dir(out_dir)
        return out
    finally:
        for fd in fds.values():
            os.close(fd)
        for path in tmp.values():
            remove_quietly(path)
