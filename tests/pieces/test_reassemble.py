"""The way back: any k shares per stripe rebuild the file; anything wrong is a clear error."""

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.pieces import files
from node.pieces.config import PiecesConfig
from node.pieces.errors import (
    CorruptShare,
    InvalidArgument,
    NoSpace,
    NotEnoughShares,
    RemoteError,
    Tampered,
    UnwritableOutput,
    WrongKey,
)
from node.pieces.layer import read_chunk
from node.pieces.modes import Copies, ErasureCode
from node.pieces.prepare import prepare_file
from node.pieces.reassemble import Reassembler, reassemble_from_share_files

from .helpers import ACCOUNT, INLINE, LEAF, SECRET, P, listing, pseudo_random


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A 5-stripe file coded 2-of-4, its plaintext and its share files (read-only)."""
    root = tmp_path_factory.mktemp("prepared")
    src = root / "input.bin"
    src.write_bytes(pseudo_random(9 * P + 1234, seed=3))
    out = root / "out"
    out.mkdir()
    return src.read_bytes(), prepare_file(src, SECRET, ErasureCode(2, 4), out, ACCOUNT)


def chunk(prepared_file, share, stripe):
    s = prepared_file.shares[share]
    return read_chunk(s.piece_path, s.size, stripe)


@st.composite
def codes_and_sizes(draw):
    n = draw(st.integers(1, 6))
    k = draw(st.integers(1, n))
    copies = draw(st.booleans())
    mode = Copies(n) if copies else ErasureCode(k, n)
    size = draw(st.sampled_from([0, 1, LEAF + 1, P, P + 1, 2 * P + 3, 5 * P - 1]))
    return mode, size


@given(codes_and_sizes(), st.randoms(use_true_random=False))
@settings(max_examples=30, deadline=None)
def test_any_k_shares_per_stripe_rebuild(tmp_path_factory, case, rng):
    mode, size = case
    root = tmp_path_factory.mktemp("anyk")
    src = root / "input.bin"
    src.write_bytes(pseudo_random(size, seed=size))
    out = root / "out"
    out.mkdir()
    prepared = prepare_file(src, SECRET, mode, out, ACCOUNT, config=INLINE)
    m = prepared.manifest.manifest
    with Reassembler(prepared.manifest, SECRET, root / "back") as rebuilt:
        stripes = list(range(m.stripes))
        rng.shuffle(stripes)  # stripes in any order, each from its own k shares
        for stripe in stripes:
            for share in rng.sample(range(m.n), m.k):
                assert rebuilt.add(stripe, share, chunk(prepared, share, stripe))
            assert rebuilt.is_complete(stripe)
        assert rebuilt.remaining == 0
        path = rebuilt.finish()
    assert path.read_bytes() == src.read_bytes()
    assert listing(root) == ["back", "input.bin", "out"]


@given(st.data())
@settings(max_examples=25, deadline=None)
def test_any_flipped_bit_in_a_chunk_is_detected(tmp_path_factory, prepared, data):
    _, p = prepared
    stripe = data.draw(st.integers(0, p.manifest.manifest.stripes - 1))
    share = data.draw(st.integers(0, 3))
    good = chunk(p, share, stripe)
    bit = data.draw(st.integers(0, 8 * len(good) - 1))
    bad = bytearray(good)
    bad[bit // 8] ^= 1 << (bit % 8)
    other = (share + 1) % 4
    out = tmp_path_factory.mktemp("flip") / "back"
    with Reassembler(p.manifest, SECRET, out) as rebuilt:
        rebuilt.add(stripe, other, chunk(p, other, stripe))
        with pytest.raises(Tampered):
            rebuilt.add(stripe, share, bytes(bad))
        assert not rebuilt.is_complete(stripe)
        # The stripe's chunks were dropped; it can be retried from good shares.
        assert rebuilt.add(stripe, other, chunk(p, other, stripe))
        assert rebuilt.add(stripe, share, good)
        assert rebuilt.is_complete(stripe)
    assert not out.exists()
    assert listing(out.parent) == []


def test_corrupt_share_is_excluded(prepared, tmp_path, secret):
    plaintext, p = prepared
    broken = bytearray(p.shares[0].piece_path.read_bytes())
    broken[12345] ^= 4
    bad = tmp_path / "bad.piece"
    bad.write_bytes(bytes(broken))
    short = tmp_path / "short.piece"
    short.write_bytes(bytes(broken[:-1]))
    paths = {0: bad, 1: short, 2: tmp_path / "missing", 3: p.shares[3].piece_path}
    with pytest.raises(NotEnoughShares) as info:
        reassemble_from_share_files(p.manifest, secret, paths, tmp_path / "back")
    assert sorted(info.value.excluded) == [0, 1, 2]
    assert "root" in info.value.excluded[0]
    assert listing(tmp_path) == ["bad.piece", "short.piece"]
    paths[2] = p.shares[2].piece_path
    back = reassemble_from_share_files(p.manifest, secret, paths, tmp_path / "back")
    assert back.read_bytes() == plaintext


def test_fewer_than_k_shares(prepared, tmp_path, secret):
    _, p = prepared
    with pytest.raises(NotEnoughShares):
        reassemble_from_share_files(p.manifest, secret, {1: p.shares[1].piece_path}, tmp_path / "x")
    assert listing(tmp_path) == []


def test_wrong_key_before_anything_is_read(prepared, tmp_path):
    _, p = prepared
    paths = {s.index: s.piece_path for s in p.shares}
    with pytest.raises(WrongKey):
        reassemble_from_share_files(p.manifest, b"\x08" * 32, paths, tmp_path / "back")
    with pytest.raises(WrongKey):
        Reassembler(p.manifest, b"\x08" * 32, tmp_path / "back")
    assert listing(tmp_path) == []


def test_output_directory_must_exist(prepared, tmp_path):
    _, p = prepared
    with pytest.raises(UnwritableOutput):
        Reassembler(p.manifest, SECRET, tmp_path / "nowhere" / "back")


def test_finish_needs_every_stripe_and_keeps_state(prepared, tmp_path, secret):
    plaintext, p = prepared
    m = p.manifest.manifest
    rebuilt = Reassembler(m, secret, tmp_path / "back")
    for stripe in range(m.stripes - 1):
        rebuilt.add(stripe, 0, chunk(p, 0, stripe))
        rebuilt.add(stripe, 3, chunk(p, 3, stripe))
    with pytest.raises(NotEnoughShares):
        rebuilt.finish()
    last = m.stripes - 1
    assert rebuilt.add(last, 2, chunk(p, 2, last))
    assert not rebuilt.add(last, 2, chunk(p, 2, last))  # same share twice
    assert rebuilt.add(last, 1, chunk(p, 1, last))
    assert not rebuilt.add(last, 0, chunk(p, 0, last))  # stripe already rebuilt
    assert rebuilt.finish().read_bytes() == plaintext
    with pytest.raises(InvalidArgument):
        rebuilt.add(0, 0, chunk(p, 0, 0))


def test_spills_to_disk_beyond_the_memory_budget(prepared, tmp_path, secret):
    plaintext, p = prepared
    m = p.manifest.manifest
    tiny = PiecesConfig(reassembly_memory=m.block_size(0) + 1)
    order = [(stripe, share) for share in (1, 2) for stripe in range(m.stripes)]
    random.Random(5).shuffle(order)
    with Reassembler(m, secret, tmp_path / "back", config=tiny) as rebuilt:
        for stripe, share in order:
            rebuilt.add(stripe, share, chunk(p, share, stripe))
        assert any(n.endswith(".tmp") and "spool" in n for n in listing(tmp_path))
        rebuilt.finish()
    assert (tmp_path / "back").read_bytes() == plaintext
    assert listing(tmp_path) == ["back"]


def test_wrong_chunk_size_is_a_corrupt_share(prepared, tmp_path, secret):
    _, p = prepared
    with Reassembler(p.manifest, secret, tmp_path / "back") as rebuilt:
        with pytest.raises(CorruptShare) as info:
            rebuilt.add(0, 2, chunk(p, 2, 0)[:-1])
        assert info.value.share_index == 2
        assert isinstance(info.value, RemoteError)
        with pytest.raises(InvalidArgument):
            rebuilt.add(99, 0, b"")
        with pytest.raises(InvalidArgument):
            rebuilt.add(0, 4, chunk(p, 0, 0))
    assert listing(tmp_path) == []


def test_plaintext_digest_mismatch(prepared, tmp_path, secret, account):
    _, p = prepared
    m = dataclasses.replace(p.manifest.manifest, plaintext_mac=b"\x00" * 32)
    paths = {s.index: s.piece_path for s in p.shares}
    with pytest.raises(Tampered):
        reassemble_from_share_files(m.sign(account), secret, paths, tmp_path / "back")
    assert listing(tmp_path) == []


def test_chunks_swapped_between_stripes_are_detected(prepared, tmp_path, secret):
    _, p = prepared
    with Reassembler(p.manifest, secret, tmp_path / "back") as rebuilt:
        rebuilt.add(1, 0, chunk(p, 0, 2))
        with pytest.raises(Tampered):
            rebuilt.add(1, 1, chunk(p, 1, 2))


def test_no_space_for_the_output(prepared, tmp_path, monkeypatch):
    _, p = prepared
    monkeypatch.setattr(files, "free_space", lambda directory: 10)
    with pytest.raises(NoSpace):
        Reassembler(p.manifest, SECRET, tmp_path / "back")
    assert listing(tmp_path) == []
