"""Atomic writes and the free-space check."""

import pytest

from node.pieces import files
from node.pieces.errors import NoSpace

from .helpers import listing


def test_atomic_write_replaces_whole(tmp_path):
    path = tmp_path / "f"
    files.atomic_write(path, b"one")
    files.atomic_write(path, b"two, longer")
    assert path.read_bytes() == b"two, longer"
    assert listing(tmp_path) == ["f"]


def test_atomic_write_without_space_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f"
    files.atomic_write(path, b"old")
    monkeypatch.setattr(files, "free_space", lambda directory: 2)
    with pytest.raises(NoSpace):
        files.atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert listing(tmp_path) == ["f"]


def test_free_space_is_real(tmp_path):
    assert files.free_space(tmp_path) > 0
    files.ensure_space(tmp_path, 1)
    with pytest.raises(NoSpace) as info:
        files.ensure_space(tmp_path, 1 << 62)
    assert info.value.needed == 1 << 62


def test_reserve_and_pwrite_all(tmp_path):
    path = tmp_path / "r"
    with open(path, "wb") as f:
        files.reserve(f.fileno(), 10_000, tmp_path)
        files.pwrite_all(f.fileno(), b"abc", 9_997)
    data = path.read_bytes()
    assert len(data) == 10_000
    assert data.endswith(b"abc")


def test_temp_paths_are_hidden_and_fresh(tmp_path):
    final = tmp_path / "x.piece"
    a, b = files.temp_path(final), files.temp_path(final)
    assert a != b
    assert a.name.startswith(".x.piece.")
    assert a.parent == tmp_path
    files.remove_quietly(a)  # absent: no error
