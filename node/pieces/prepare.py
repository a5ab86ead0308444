"""
``prepare_file``: a file in, its shares (pieces), their layers and a signed manifest out.

The pipeline is stripe-parallel: stripe ``j`` depends only on plaintext chunks
``[j*k, (j+1)*k)``, so worker processes take ranges of stripes, each reading its own
plaintext, encrypting, coding, hashing every share chunk and writing it in place
(``node.pieces.stripes``), one stripe in memory at a time. Meanwhile this process computes
the keyed plaintext digest (one sequential pass, OpenSSL dropping the GIL). Then the share
roots come from the layers, the manifest is signed, and everything is renamed into place.

Output, in ``out_dir``: ``<root hex>.piece`` and ``<root hex>.layer`` per share
(content-addressed, as a provider's blob store keeps them) and ``<id>.manifest``. Free
space is checked and reserved before the first byte; until the final renames everything
lives under temporary dot-names, deleted on any error.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount

from contracts.spec.commitment import Hash32
from node.pieces.config import DEFAULT_CONFIG, PiecesConfig
from node.pieces.crypto import FileKeys, check_secret, new_salt
from node.pieces.errors import InvalidArgument, NoSpace, UnreadableInput, UnwritableOutput
from node.pieces.files import (
    atomic_write,
    ensure_space,
    free_space,
    fsync_dir,
    fsync_path,
    remove_quietly,
    reserve,
    temp_path,
)
from node.pieces.layout import MAX_PIECE_SIZE, PLAINTEXT_CHUNK_SIZE, share_size, stripe_count
from node.pieces.manifest import MAX_MANIFEST_SIZE, Manifest, ShareEntry, SignedManifest
from node.pieces.merkle import HASH_SIZE, root_of_layer
from node.pieces.modes import Copies, ErasureCode, Mode
from node.pieces.stripes import StripeJob, encode_stripe_range
from node.pieces.workers import pool_for, run_tasks, split_range

PIECE_SUFFIX = ".piece"
LAYER_SUFFIX = ".layer"
MANIFEST_SUFFIX = ".manifest"


@dataclass(frozen=True)
class PreparedShare:
    """One share, ready to be offered in a deal."""

    index: int
    root: Hash32
    size: int
    piece_path: Path
    layer_path: Path

    def read_layer(self) -> bytes:
        """The share's layer (32 bytes per 256 KiB chunk)."""
        return self.layer_path.read_bytes()


@dataclass(frozen=True)
class PreparedFile:
    """What ``prepare_file`` made."""

    manifest: SignedManifest
    manifest_path: Path
    shares: tuple[PreparedShare, ...]

    @property
    def id(self) -> str:
        """The manifest id: what the user keeps to get the file back."""
        return self.manifest.id


def prepare_file(
    path: str | os.PathLike[str],
    secret: bytes,
    mode: Mode,
    out_dir: str | os.PathLike[str],
    owner: LocalAccount,
    *,
    name: str | None = None,
    created: int | None = None,
    pool: Executor | None = None,
    config: PiecesConfig = DEFAULT_CONFIG,
) -> PreparedFile:
    """
    Encrypt, erasure-code (or replicate) and commit a file; sign its manifest.

    Parameters
    ----------
    path :
        The file to prepare.
    secret :
        The client's 32-byte secret; every key of the file derives from it.
    mode :
        ``Copies(r)`` or ``ErasureCode(k, n)``.
    out_dir :
        An existing directory for the shares, layers and manifest.
    owner :
        The client's Ethereum account; it signs the manifest and is named in it.
    name :
        A file name to keep, encrypted, in the manifest.
    created :
        Creation time for the manifest (Unix seconds); now by default.
    pool :
        Worker processes for files above ``config.parallel_threshold``; by default the
        process's shared pool (``node.pieces.workers.shared_pool``).
    config :
        Worker count and sizes.

    Raises
    ------
    UnreadableInput
        ``path`` cannot be read, is not a regular file, or changed while it was read.
    NoSpace
        ``out_dir`` has less free space than the shares, layers and manifest need.
    InvalidArgument
        A bad secret, mode, name or output directory, or a file too large for a piece.
    """
    check_secret(secret)
    if not isinstance(mode, Copies | ErasureCode):
        raise InvalidArgument(f"mode must be Copies or ErasureCode, not {mode!r}")
    out = Path(out_dir)
    if not out.is_dir():
        raise InvalidArgument(f"{out}: not a directory")
    source, before = _open_input(path)
    try:
        return _prepare(
            source,
            before,
            os.fspath(path),
            secret=secret,
            mode=mode,
            out=out,
            owner=owner,
            name=name,
            created=created,
            pool=pool,
            config=config,
        )
    finally:
        os.close(source)


def _open_input(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise UnreadableInput(f"{os.fspath(path)}: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnreadableInput(f"{os.fspath(path)}: not a regular file")
    return fd, st


def _prepare(
    source: int,
    before: os.stat_result,
    input_path: str,
    *,
    secret: bytes,
    mode: Mode,
    out: Path,
    owner: LocalAccount,
    name: str | None,
    created: int | None,
    pool: Executor | None,
    config: PiecesConfig,
) -> PreparedFile:
    file_size = before.st_size
    size = share_size(file_size, mode.k)
    if size > MAX_PIECE_SIZE:
        raise InvalidArgument(f"{input_path}: too large for {mode} ({size} bytes per piece)")
    stripes = stripe_count(file_size, mode.k)
    needed = mode.n * (size + stripes * HASH_SIZE) + MAX_MANIFEST_SIZE
    ensure_space(out, needed)
    salt = new_salt()
    keys = FileKeys.derive(secret, salt, mode.streams)
    sealed_name = None if name is None else keys.seal_name(name)

    staged: list[Path] = []
    created_finals: list[Path] = []
    try:
        pieces, layers = [], []
        for i in range(mode.n):
            pieces.append(_stage(out / f"share-{i}{PIECE_SUFFIX}", size, staged))
            layers.append(_stage(out / f"share-{i}{LAYER_SUFFIX}", stripes * HASH_SIZE, staged))
        per_task = max(1, config.task_size // (mode.k * PLAINTEXT_CHUNK_SIZE))
        executor = pool_for(pool, config, file_size)
        if executor is not None:
            per_task = min(per_task, max(1, stripes // (2 * config.worker_count())))
        jobs = [
            StripeJob(
                input_path,
                file_size,
                mode,
                salt,
                keys.stream_keys,
                tuple(map(str, pieces)),
                tuple(map(str, layers)),
                a,
                b,
            )
            for a, b in split_range(0, stripes, per_task)
        ]
        with ThreadPoolExecutor(1) as side:
            mac = side.submit(_plaintext_mac, source, file_size, keys, config.read_size)
            run_tasks(executor, encode_stripe_range, jobs)
            plaintext_mac = mac.result()
        after = os.fstat(source)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise UnreadableInput(f"{input_path}: changed while it was read")
        roots = []
        for piece, layer in zip(pieces, layers, strict=True):
            fsync_path(piece)
            fsync_path(layer)
            roots.append(root_of_layer(layer.read_bytes()))
        manifest = Manifest(
            file_size=file_size,
            mode=mode.name,
            k=mode.k,
            n=mode.n,
            salt=salt,
            shares=tuple(ShareEntry(i, r, size) for i, r in enumerate(roots)),
            plaintext_mac=plaintext_mac,
            key_check=keys.key_check,
            created=int(time.time()) if created is None else created,
            owner=owner.address,
            name=sealed_name,
        ).sign(owner)
        shares = []
        for i, root in enumerate(roots):
            final_piece = _publish(pieces[i], out / f"{root.hex()}{PIECE_SUFFIX}", created_finals)
            final_layer = _publish(layers[i], out / f"{root.hex()}{LAYER_SUFFIX}", created_finals)
            shares.append(PreparedShare(i, root, size, final_piece, final_layer))
        fsync_dir(out)
        manifest_path = out / f"{manifest.id}{MANIFEST_SUFFIX}"
        atomic_write(manifest_path, manifest.encoded)
        return PreparedFile(manifest, manifest_path, tuple(shares))
    except BaseException as exc:
        for p in staged + created_finals:
            remove_quietly(p)
        if isinstance(exc, OSError):
            if exc.errno == errno.ENOSPC:  # something else filled the disk meanwhile
                raise NoSpace(os.fspath(out), needed, free_space(out)) from exc
            raise UnwritableOutput(f"{out}: {exc}") from exc
        raise


def _stage(final: Path, size: int, staged: list[Path]) -> Path:
    """Create a temporary file of ``size`` bytes that will become ``final``."""
    tmp = temp_path(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    staged.append(tmp)
    try:
        reserve(fd, size, final.parent)
    finally:
        os.close(fd)
    return tmp


def _publish(tmp: Path, final: Path, created_finals: list[Path]) -> Path:
    """Rename a finished temporary file to its content-addressed name. A file already
    there has the same root, hence the same bytes: it is replaced, and kept on failure."""
    existed = final.exists()
    os.replace(tmp, final)
    if not existed:
        created_finals.append(final)
    return final


def _plaintext_mac(source: int, file_size: int, keys: FileKeys, read_size: int) -> bytes:
    """HMAC-SHA256 of the whole plaintext under the file's digest key."""
    mac = keys.plaintext_mac()
    buffer = bytearray(read_size)
    view = memoryview(buffer)
    position = 0
    while position < file_size:
        got = os.preadv(source, [view[: min(read_size, file_size - position)]], position)
        if got == 0:
            raise UnreadableInput("the input shrank while it was read")
        mac.update(view[:got])
        position += got
    return mac.digest()
