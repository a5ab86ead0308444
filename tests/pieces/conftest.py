"""Fixtures of the pieces tests: a client (secret + Ethereum account), files, directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .helpers import ACCOUNT, MIB, SECRET, pseudo_random


@pytest.fixture
def account():
    return ACCOUNT


@pytest.fixture
def secret():
    return SECRET


@pytest.fixture
def make_file(tmp_path: Path):
    def make(size: int, seed: int = 0, name: str = "input.bin") -> Path:
        path = tmp_path / name
        path.write_bytes(pseudo_random(size, seed) if size < 4 * MIB else os.urandom(size))
        return path

    return make


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out
