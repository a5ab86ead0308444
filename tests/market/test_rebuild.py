"""market.rebuild: lost shares re-encoded bit for bit from any k survivors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from eth_account import Account

from market.errors import RetrievalFailed
from market.rebuild import RebuildMismatch, rebuild_shares
from node.pieces.config import PiecesConfig
from node.pieces.layout import CHUNK_SIZE, PLAINTEXT_CHUNK_SIZE
from node.pieces.manifest import Manifest
from node.pieces.modes import Copies, ErasureCode, Mode
from node.pieces.prepare import PreparedFile, prepare_file

ACCOUNT = Account.from_key(b"\x05" * 32)
SECRET = b"\x09" * 32
INLINE = PiecesConfig(workers=1)


def prepare(tmp_path: Path, mode: Mode, size: int) -> PreparedFile:
    src = tmp_path / "input.bin"
    src.write_bytes(os.urandom(size))
    out = tmp_path / "prepared"
    out.mkdir()
    return prepare_file(src, SECRET, mode, out, ACCOUNT, config=INLINE)


def reader(prepared: PreparedFile):
    paths = {s.index: s.piece_path for s in prepared.shares}
    m = prepared.manifest.manifest

    def read(share: int, stripe: int) -> bytes:
        with open(paths[share], "rb") as f:
            f.seek(stripe * CHUNK_SIZE)
            return f.read(m.block_size(stripe))

    return read


def have_all(m: Manifest, shares: set[int]) -> dict[int, set[int]]:
    return {stripe: set(shares) for stripe in range(m.stripes)}


@pytest.mark.parametrize(
    ("mode", "size", "survivors", "lost"),
    [
        (ErasureCode(2, 4), 5 * PLAINTEXT_CHUNK_SIZE + 123, {0, 3}, [1, 2]),
        (ErasureCode(3, 5), 2 * PLAINTEXT_CHUNK_SIZE, {2, 3, 4}, [0]),
        (Copies(3), 3 * PLAINTEXT_CHUNK_SIZE + 1, {2}, [0, 1]),
        (Copies(2), 0, {1}, [0]),
    ],
)
def test_rebuilt_shares_are_the_lost_ones(
    tmp_path: Path, mode: Mode, size: int, survivors: set[int], lost: list[int]
) -> None:
    prepared = prepare(tmp_path, mode, size)
    m = prepared.manifest.manifest
    out = tmp_path / "rebuilt"
    out.mkdir()
    got = rebuild_shares(
        m, SECRET, have=have_all(m, survivors), read=reader(prepared), missing=lost, out_dir=out
    )
    assert sorted(got) == lost
    for i in lost:
        original = prepared.shares[i]
        assert got[i].read_bytes() == original.piece_path.read_bytes()
        assert got[i].with_suffix(".layer").read_bytes() == original.layer_path.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{prepared.shares[i].root.hex()}{suffix}" for i in lost for suffix in (".piece", ".layer")
    )


def test_stripes_may_come_from_different_shares(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, ErasureCode(2, 4), 6 * PLAINTEXT_CHUNK_SIZE)
    m = prepared.manifest.manifest
    have = {j: ({0, 1} if j % 2 else {2, 3}) for j in range(m.stripes)}
    out = tmp_path / "rebuilt"
    out.mkdir()
    got = rebuild_shares(m, SECRET, have=have, read=reader(prepared), missing=[0, 3], out_dir=out)
    assert got[3].read_bytes() == prepared.shares[3].piece_path.read_bytes()


def test_too_few_chunks_or_a_wrong_secret_leave_nothing(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, ErasureCode(2, 3), 3 * PLAINTEXT_CHUNK_SIZE)
    m = prepared.manifest.manifest
    out = tmp_path / "rebuilt"
    out.mkdir()
    have = have_all(m, {0, 1})
    have[1] = {0}
    with pytest.raises(RetrievalFailed, match="stripe 1"):
        rebuild_shares(m, SECRET, have=have, read=reader(prepared), missing=[2], out_dir=out)
    assert list(out.iterdir()) == []


def test_damaged_chunks_are_refused(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, Copies(2), 2 * PLAINTEXT_CHUNK_SIZE)
    m = prepared.manifest.manifest
    read = reader(prepared)

    def flipped(share: int, stripe: int) -> bytes:
        data = bytearray(read(share, stripe))
        data[10] ^= 1
        return bytes(data)

    out = tmp_path / "rebuilt"
    out.mkdir()
    with pytest.raises(RetrievalFailed, match="does not decode"):
        rebuild_shares(m, SECRET, have=have_all(m, {1}), read=flipped, missing=[0], out_dir=out)
    assert list(out.iterdir()) == []


def test_a_result_that_misses_its_root_is_refused(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, ErasureCode(2, 3), 2 * PLAINTEXT_CHUNK_SIZE)
    m = prepared.manifest.manifest
    entries = list(m.shares)
    entries[2] = type(entries[2])(2, b"\x00" * 32, entries[2].size)
    forged = Manifest(**{**m.__dict__, "shares": tuple(entries)})
    out = tmp_path / "rebuilt"
    out.mkdir()
    with pytest.raises(RebuildMismatch):
        rebuild_shares(
            forged,
            SECRET,
            have=have_all(m, {0, 1}),
            read=reader(prepared),
            missing=[2],
            out_dir=out,
        )
    assert list(out.iterdir()) == []
