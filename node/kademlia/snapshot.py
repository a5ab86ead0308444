"""
Routing table persistence: the contacts saved as one schema-checked ``node.wire`` message,
written atomically (temporary file, fsync, rename, fsync of the directory), so a crash
leaves either the old file or the new one, never half of one.

A reloaded table is only a list of candidates: the first lookups ask them and the table's
usual failure rules evict the ones that went away while we were down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

from node.errors import DecodeError, LocalError
from node.kademlia.messages import PeerInfo
from node.wire import MaxLen, decode, encode, message

SNAPSHOT_PROTOCOL: Final = "kad-table"
"""Not ``"kad"``: a snapshot is never accepted from the network."""
MAX_SAVED_CONTACTS: Final = 256 * 20
"""Every bucket full: the largest table there can be."""


class SnapshotError(LocalError):
    """The routing table file exists but cannot be read or is not a table snapshot."""


@message(SNAPSHOT_PROTOCOL, 1)
@dataclass(frozen=True, slots=True)
class TableSnapshot:
    saved_at: int
    """Unix seconds."""
    contacts: Annotated[tuple[PeerInfo, ...], MaxLen(MAX_SAVED_CONTACTS)]
    """Bucket by bucket, least-recently seen first (the order to re-insert them in)."""


def save_table(path: str | os.PathLike[str], snapshot: TableSnapshot) -> None:
    """Write ``snapshot`` to ``path`` atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(encode(snapshot))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_table(path: str | os.PathLike[str]) -> TableSnapshot | None:
    """
    The snapshot at ``path``, or ``None`` if there is no file.

    Raises
    ------
    SnapshotError
        If the file cannot be read or does not decode to a ``TableSnapshot``.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotError(f"cannot read routing table {p}: {exc.strerror}") from None
    try:
        snapshot = decode(data, SNAPSHOT_PROTOCOL)
    except DecodeError as exc:
        raise SnapshotError(f"routing table {p} is corrupt: {exc}") from None
    if not isinstance(snapshot, TableSnapshot):
        raise SnapshotError(f"{p} holds a {type(snapshot).__name__}, not a routing table")
    return snapshot
