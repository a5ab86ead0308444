"""node/kademlia/snapshot.py: atomic save, reload, corrupt files."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.errors import DecodeError
from node.kademlia.messages import PROTOCOL, Address, PeerInfo
from node.kademlia.snapshot import SnapshotError, TableSnapshot, load_table, save_table
from node.wire import decode, encode

SNAP = TableSnapshot(
    1_800_000_000,
    tuple(PeerInfo(bytes([i]) * 32, (Address(f"192.0.2.{i}", 4001),)) for i in range(1, 30)),
)


def test_round_trip_and_no_temporary_left(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "kad.table"
    save_table(path, SNAP)
    assert load_table(path) == SNAP
    assert [p.name for p in path.parent.iterdir()] == ["kad.table"]


def test_missing_file_is_no_table(tmp_path: Path) -> None:
    assert load_table(tmp_path / "none") is None


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x94\x01\xa3kad\x02\x90"])
def test_corrupt_file_is_a_typed_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "kad.table"
    path.write_bytes(data)
    with pytest.raises(SnapshotError):
        load_table(path)


def test_truncated_file_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "kad.table"
    save_table(path, SNAP)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(SnapshotError):
        load_table(path)


def test_overwrite_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "kad.table"
    save_table(path, SNAP)
    smaller = TableSnapshot(1, SNAP.contacts[:2])
    save_table(path, smaller)
    assert load_table(path) == smaller


def test_a_snapshot_is_not_a_network_message() -> None:
    with pytest.raises(DecodeError):
        decode(encode(SNAP), PROTOCOL)
