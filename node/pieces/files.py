"""
Crash-safe file output: nothing half-written under a final name, ever.

Every output is written under a temporary dot-name in its final directory, fsynced,
renamed over its final name, and the directory fsynced (so the rename itself survives a
crash). Space is checked before the first byte and reserved with ``posix_fallocate``, so a
full disk is a ``NoSpace`` up front rather than a torn file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

from node.pieces.errors import NoSpace


def free_space(directory: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged process may still write on ``directory``'s file system."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def ensure_space(directory: str | os.PathLike[str], needed: int) -> None:
    """Raise ``NoSpace`` if ``directory`` has less than ``needed`` bytes free."""
    available = free_space(directory)
    if needed > available:
        raise NoSpace(os.fspath(directory), needed, available)


def reserve(fd: int, size: int, directory: str | os.PathLike[str]) -> None:
    """Give an open file its final size, allocating the blocks where the file system can."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise NoSpace(os.fspath(directory), size, free_space(directory)) from exc
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
    os.ftruncate(fd, size)


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """``os.pwrite`` until every byte is written (a short write is legal, if rare)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make renames and creations in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file by name (written by another process, say)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(final: Path) -> Path:
    """A fresh hidden name beside ``final`` for writing it."""
    return final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")


def remove_quietly(path: Path) -> None:
    """Delete ``path`` if it exists (cleanup after a failure must not mask the failure)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary name, fsync, rename, fsync dir."""
    final = Path(path)
    ensure_space(final.parent, len(data))
    tmp = temp_path(final)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(final.parent)
