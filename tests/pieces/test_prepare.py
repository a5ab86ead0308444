"""prepare_file: shares on disk match the spec commitment, the manifest, and come back."""

import os

import pytest

from contracts.spec.commitment import merkle_root, verify_leaf
from node.pieces import files
from node.pieces.errors import (
    InvalidArgument,
    LocalError,
    NoSpace,
    UnreadableInput,
)
from node.pieces.layer import prove_leaf, verify_layer
from node.pieces.layout import share_size
from node.pieces.manifest import decode_manifest
from node.pieces.merkle import layer_of
from node.pieces.modes import Copies, ErasureCode
from node.pieces.prepare import prepare_file
from node.pieces.reassemble import reassemble_from_share_files

from .helpers import INLINE, MIB, PARALLEL, SIZES, listing

MODES = [Copies(2), ErasureCode(3, 5)]


def check_shares(prepared, size, mode):
    """Every share on disk is committed to by its root, with its layer beside it."""
    assert len(prepared.shares) == mode.n
    for i, share in enumerate(prepared.shares):
        data = share.piece_path.read_bytes()
        assert share.index == i
        assert share.size == len(data) == share_size(size, mode.k)
        assert share.root == merkle_root(data)
        assert share.piece_path.name == f"{share.root.hex()}.piece"
        assert share.read_layer() == layer_of(data)
        assert verify_layer(share.root, share.size, share.read_layer())
    assert len({s.root for s in prepared.shares}) == mode.n


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("size", SIZES)
def test_round_trip(make_file, out_dir, tmp_path, secret, account, size, mode):
    src = make_file(size)
    prepared = prepare_file(src, secret, mode, out_dir, account, config=INLINE)
    check_shares(prepared, size, mode)
    decoded = decode_manifest(prepared.manifest_path.read_bytes())
    assert decoded.id == prepared.id
    assert prepared.manifest_path.name == f"{prepared.id}.manifest"
    assert decoded.manifest.file_size == size
    assert [s.root for s in decoded.manifest.shares] == [s.root for s in prepared.shares]
    assert not [n for n in listing(out_dir) if n.startswith(".")]
    # Rebuild from the last k shares (parity shares, for erasure coding).
    chosen = {s.index: s.piece_path for s in prepared.shares[-mode.k :]}
    back = reassemble_from_share_files(decoded, secret, chosen, tmp_path / "back", config=INLINE)
    assert back.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("mode", [Copies(3), ErasureCode(10, 30)], ids=str)
def test_parallel_equals_inline(make_file, tmp_path, secret, account, mode):
    src = make_file(3 * MIB + 12_345)
    outs = []
    for config in (INLINE, PARALLEL):
        out = tmp_path / f"out-{len(outs)}"
        out.mkdir()
        outs.append(prepare_file(src, secret, mode, out, account, config=config))
    # Salts are random, so the bytes differ; both must be internally right and rebuild.
    for prepared in outs:
        check_shares(prepared, 3 * MIB + 12_345, mode)
        chosen = {s.index: s.piece_path for s in prepared.shares[: mode.k]}
        back = tmp_path / f"back-{prepared.id}"
        reassemble_from_share_files(prepared.manifest, secret, chosen, back, config=PARALLEL)
        assert back.read_bytes() == src.read_bytes()


def test_copies_are_distinct_pieces(make_file, out_dir, secret, account):
    prepared = prepare_file(make_file(100_000), secret, Copies(4), out_dir, account)
    blobs = [s.piece_path.read_bytes() for s in prepared.shares]
    assert len(set(blobs)) == 4
    assert len({s.root for s in prepared.shares}) == 4


def test_proofs_on_prepared_shares(make_file, out_dir, secret, account):
    prepared = prepare_file(make_file(700_000), secret, ErasureCode(2, 3), out_dir, account)
    for share in prepared.shares:
        for index in (0, 255, 256, share.size // 1024):
            leaf, path = prove_leaf(share.piece_path, share.read_layer(), share.size, index)
            assert verify_leaf(share.root, share.size, index, leaf, path)


def test_name_and_created(make_file, out_dir, secret, account):
    prepared = prepare_file(
        make_file(10), secret, Copies(1), out_dir, account, name="photo.jpg", created=42
    )
    assert prepared.manifest.manifest.file_name(secret) == "photo.jpg"
    assert prepared.manifest.manifest.created == 42
    assert prepared.manifest.manifest.owner == account.address


def test_same_file_twice_in_one_directory(make_file, out_dir, secret, account):
    src = make_file(5000)
    a = prepare_file(src, secret, Copies(2), out_dir, account)
    b = prepare_file(src, secret, Copies(2), out_dir, account)
    assert a.id != b.id  # fresh salt each time
    assert len(listing(out_dir)) == 2 * (2 * 2 + 1)


def test_unreadable_input(tmp_path, out_dir, secret, account):
    for bad in (tmp_path / "missing", tmp_path):
        with pytest.raises(UnreadableInput):
            prepare_file(bad, secret, Copies(2), out_dir, account)
    assert listing(out_dir) == []


def test_no_space_is_checked_before_writing(make_file, out_dir, secret, account, monkeypatch):
    src = make_file(300_000)
    needed_at_least = 3 * share_size(300_000, 1)
    monkeypatch.setattr(files, "free_space", lambda directory: needed_at_least - 1)
    with pytest.raises(NoSpace) as info:
        prepare_file(src, secret, Copies(3), out_dir, account)
    assert info.value.needed > info.value.available == needed_at_least - 1
    assert isinstance(info.value, LocalError)
    assert listing(out_dir) == []


def test_failure_midway_leaves_nothing(make_file, out_dir, secret, account, monkeypatch):
    src = make_file(600_000)

    def fail(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("node.pieces.prepare.fsync_path", fail)
    with pytest.raises(LocalError):
        prepare_file(src, secret, ErasureCode(2, 3), out_dir, account)
    assert listing(out_dir) == []


def test_bad_arguments(make_file, tmp_path, out_dir, secret, account):
    src = make_file(10)
    with pytest.raises(InvalidArgument):
        prepare_file(src, b"short", Copies(2), out_dir, account)
    with pytest.raises(InvalidArgument):
        prepare_file(src, secret, (3, 5), out_dir, account)
    with pytest.raises(InvalidArgument):
        prepare_file(src, secret, Copies(2), tmp_path / "nowhere", account)
    with pytest.raises(InvalidArgument):
        prepare_file(src, secret, Copies(2), out_dir, account, name="a\x00b")
    assert listing(out_dir) == []
    assert os.path.exists(src)
