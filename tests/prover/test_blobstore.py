"""The blob store: expected pushes only, verified imports, proofs checked against the root,
leftovers of interrupted writes cleaned, rot detected."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from contracts.spec.commitment import leaf_count, merkle_root, verify_leaf
from node.swarm.errors import SwarmUsageError
from node.swarm.verify import CHUNK_SIZE, layer_of
from prover.blobstore import BlobStore
from prover.errors import NoSpace, PieceMissing, StorageError
from tests.prover.helpers import random_piece

PEER = b"\x01" * 32
SIZE = 3 * CHUNK_SIZE + 5000


def stage(store: BlobStore, data: bytes, name: str = "upload") -> Path:
    path = store.staging_dir() / name
    path.write_bytes(data)
    return path


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


async def imported(store: BlobStore, data: bytes) -> bytes:
    root = merkle_root(data)
    done = store.expect(root, len(data), PEER)
    store.import_piece(root, len(data), stage(store, data), layer_of(data))
    await done
    return root


def test_only_an_expected_piece_from_its_peer_is_accepted(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = BlobStore(tmp_path, capacity=1 << 30)
        root = b"\x05" * 32
        assert store.accept_push(PEER, root, SIZE) == "no deal expects this piece"
        store.expect(root, SIZE, PEER)
        assert store.accept_push(PEER, root, SIZE) is None
        assert "another peer" in str(store.accept_push(b"\x02" * 32, root, SIZE))
        assert "bytes" in str(store.accept_push(PEER, root, SIZE + 1))
        with pytest.raises(StorageError):
            store.expect(root, SIZE, PEER)
        store.forget_expected(root)
        assert store.accept_push(PEER, root, SIZE) == "no deal expects this piece"

    asyncio.run(scenario())


def test_capacity_counts_held_and_expected_pieces(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = BlobStore(tmp_path, capacity=2 * SIZE)
        data = random_piece(SIZE, 1)
        await imported(store, data)
        assert store.stored_bytes == SIZE and store.free_bytes() == SIZE
        store.expect(b"\x06" * 32, SIZE, PEER)
        assert store.free_bytes() == 0
        with pytest.raises(NoSpace):
            store.expect(b"\x07" * 32, 1, PEER)
        huge = BlobStore(tmp_path / "huge", capacity=1 << 62, reserve=1 << 61)
        assert huge.free_bytes() == 0  # bounded by the disk, whatever the capacity says

    asyncio.run(scenario())


def test_an_import_lands_whole_and_proves_every_challenge(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = BlobStore(tmp_path, capacity=1 << 30)
        data = random_piece(SIZE, 2)
        root = await imported(store, data)
        assert store.has(root) and store.size(root) == SIZE
        assert store.path(root).read_bytes() == data
        assert store.layer(root) == layer_of(data)
        assert store.read_chunk(root, 3) == data[3 * CHUNK_SIZE :]
        assert not list(store.staging_dir().iterdir())
        for leaf in (0, 255, 256, leaf_count(SIZE) - 1):
            proof_leaf, path = store.prove(root, SIZE, leaf)
            assert verify_leaf(root, SIZE, leaf, proof_leaf, path)  # type: ignore[arg-type]
        with pytest.raises(PieceMissing):
            store.prove(root, SIZE + 1, 0)

    asyncio.run(scenario())


def test_a_layer_that_does_not_match_the_root_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = BlobStore(tmp_path, capacity=1 << 30)
        data = random_piece(SIZE, 3)
        root = merkle_root(data)
        done = store.expect(root, SIZE, PEER)
        bad = bytearray(layer_of(data))
        bad[0] ^= 1
        with pytest.raises(SwarmUsageError):
            store.import_piece(root, SIZE, stage(store, data), bytes(bad))
        assert not store.has(root) and not store.path(root).exists()
        with pytest.raises(PieceMissing):
            await done

    asyncio.run(scenario())


def test_rot_and_loss_are_found_before_a_proof_goes_out(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = BlobStore(tmp_path, capacity=1 << 30)
        data = random_piece(SIZE, 4)
        root = await imported(store, data)
        assert store.verify_chunk(root, 1) and store.present(root)
        flip_byte(store.path(root), CHUNK_SIZE + 10)
        assert not store.verify_chunk(root, 1) and store.verify_chunk(root, 0)
        with pytest.raises(PieceMissing, match="does not match its layer"):
            store.prove(root, SIZE, 256 + 1)
        store.prove(root, SIZE, 1)  # other chunks still prove
        os.truncate(store.path(root), SIZE - 1)
        assert not store.present(root)
        with pytest.raises(PieceMissing):
            store.prove(root, SIZE, leaf_count(SIZE) - 1)
        store.path(root).unlink()
        with pytest.raises(PieceMissing):
            store.prove(root, SIZE, 0)

    asyncio.run(scenario())


def test_scan_keeps_whole_pieces_and_clears_leftovers(tmp_path: Path) -> None:
    async def scenario() -> bytes:
        store = BlobStore(tmp_path, capacity=1 << 30)
        return await imported(store, random_piece(SIZE, 5))

    root = asyncio.run(scenario())
    store = BlobStore(tmp_path, capacity=1 << 30)
    sub = store.path(root).parent
    (sub / f".{root.hex()}.layer.abc.tmp").write_bytes(b"half")  # an interrupted layer write
    orphan = b"\x0a" * 32
    store.layer_path(orphan).parent.mkdir(exist_ok=True)
    store.layer_path(orphan).write_bytes(b"\x00" * 32)  # a layer whose piece never landed
    torn = b"\x0b" * 32
    store.path(torn).parent.mkdir(exist_ok=True)
    store.path(torn).write_bytes(b"x" * 10)  # a piece without its layer
    stage(store, b"partial upload")
    assert store.scan() == {root: SIZE}
    assert not (sub / f".{root.hex()}.layer.abc.tmp").exists()
    assert not store.layer_path(orphan).exists()
    assert not list(store.staging_dir().iterdir())
    store.delete(root)
    assert not store.has(root) and not store.path(root).exists()
    assert store.scan() == {}
