"""
Bad input at the deal protocol, against a running daemon on a real anvil: each is refused or
failed with a clear reason, and nothing half-stored is kept. Then the manifests.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from contracts.offers import (
    DEAL_PROTOCOL,
    DealActivated,
    DealDecision,
    DealFailed,
    GetManifest,
    ManifestReply,
    ManifestStored,
    StoreManifest,
)
from contracts.spec.commitment import merkle_root
from node.pieces.modes import Copies
from node.pieces.prepare import prepare_file
from node.swarm.errors import PushRefusedError
from node.swarm.store import FilePieceStore
from prover.daemon import ProverNode
from prover.lifecycle import DealState
from tests.prover.helpers import (
    DealClient,
    fast_config,
    make_devnet,
    make_home,
    peer_of,
    random_piece,
)
from tests.prover.test_daemon import eventually, run

pytestmark = pytest.mark.slow


class CorruptStore(FilePieceStore):
    """Serves the true layer but every chunk with one bit flipped."""

    def read_chunk(self, root: bytes, index: int) -> bytes:
        data = super().read_chunk(root, index)
        return bytes([data[0] ^ 1]) + data[1:]


def test_bad_proposals_and_uploads_are_refused_and_leave_nothing(
    anvil: Any, tmp_path: Path
) -> None:
    devnet = make_devnet(anvil.url, tmp_path)
    config = fast_config(
        storage={"capacity": "2 MiB"}, offer={"push_timeout": 3.0, "min_expiry_blocks": 4}
    )
    home = make_home(tmp_path / "prover", devnet, config)

    async def scenario() -> None:
        node = ProverNode(home, home.load_config(), devnet.provider)
        info = await node.start()
        client = await DealClient(devnet, tmp_path / "client").start()
        peer, provider = peer_of(info), devnet.provider.address
        ctx = node.ctx
        try:
            await eventually(lambda: ctx.taking_deals, 20, "registration")
            free = ctx.store.free_bytes()

            async def refused(piece: bytes, **kw: Any) -> str:
                answer = await client.deal(peer, provider, piece, **kw)
                assert isinstance(answer, DealDecision) and not answer.accepted, answer
                return answer.reason

            piece = random_piece(300_000, seed=7)
            assert "underpriced" in await refused(piece, price_per_gib=10**15)
            assert "collateral" in await refused(piece, collateral_per_gib=100 * 10**18)
            assert "periods" in await refused(piece, periods=10**6)
            assert "expires" in await refused(piece, expiry_blocks=1)
            assert "no space" in await refused(random_piece(3 << 20, seed=8))
            p = await asyncio.to_thread(client.proposal, provider, merkle_root(piece), len(piece))
            signed_other = dataclasses.replace(p, price_per_period=p.price_per_period + 1)
            bad_sig = client.ledger.sign_proposal(signed_other)
            assert "not the client" in await refused(piece, proposal=p, signature=bad_sig)

            # Bytes that do not match the root: the push fails verification, the client
            # gives up, and the daemon keeps nothing and frees the reservation.
            liar = DealClient(devnet, tmp_path / "liar")
            liar.store = CorruptStore(tmp_path / "liar-store")
            liar.swarm.store = liar.store
            await liar.start()
            try:
                with pytest.raises(PushRefusedError):
                    await liar.deal(peer, provider, random_piece(400_000, seed=9))
            finally:
                await liar.close()
            await eventually(
                lambda: ctx.db.deal_counts().get("failed", 0) == 1, 10, "the failed deal"
            )
            assert not ctx.store.held() and ctx.store.free_bytes() == free

            # An admitted proposal whose upload never comes fails after push_timeout.
            silent = await client.deal(peer, provider, random_piece(200_000, seed=10), push=False)
            assert isinstance(silent, DealDecision) and silent.accepted
            await eventually(
                lambda: ctx.db.deal_counts().get("failed", 0) == 2, 15, "the timed-out deal"
            )
            assert not ctx.store.held() and ctx.store.free_bytes() == free
            assert all(r.state == DealState.FAILED for r in ctx.db.deals())
            assert ctx.metrics.proposals.labels(result="refused").value == 6
        finally:
            await client.close()
            await node.stop()

    run(scenario())


def test_manifests_are_kept_for_the_owners_pieces_and_served(anvil: Any, tmp_path: Path) -> None:
    devnet = make_devnet(anvil.url, tmp_path, index=2)
    home = make_home(tmp_path / "prover", devnet)
    source = tmp_path / "file.bin"
    source.write_bytes(random_piece(100_000, seed=11))
    (tmp_path / "prepared").mkdir()
    (tmp_path / "stranger").mkdir()
    prepared = prepare_file(source, b"\x42" * 32, Copies(1), tmp_path / "prepared", devnet.client)
    share = prepared.shares[0]
    stranger = prepare_file(source, b"\x43" * 32, Copies(1), tmp_path / "stranger", devnet.provider)

    async def scenario() -> None:
        node = ProverNode(home, home.load_config(), devnet.provider)
        info = await node.start()
        client = await DealClient(devnet, tmp_path / "client").start()
        peer = peer_of(info)
        try:
            await eventually(lambda: node.ctx.taking_deals, 20, "registration")
            result = await client.deal(peer, devnet.provider.address, share.piece_path.read_bytes())
            assert isinstance(result, DealActivated)
            manifest = prepared.manifest.encoded
            reply = await client.host.request(
                peer[0], [peer[1]], DEAL_PROTOCOL, StoreManifest(manifest)
            )
            assert isinstance(reply, ManifestStored)
            assert reply.manifest_id.hex() == prepared.manifest.id
            got = await client.host.request(
                peer[0], [peer[1]], DEAL_PROTOCOL, GetManifest(reply.manifest_id)
            )
            assert isinstance(got, ManifestReply) and got.manifest == manifest
            none = await client.host.request(
                peer[0], [peer[1]], DEAL_PROTOCOL, GetManifest(b"\x00" * 32)
            )
            assert isinstance(none, ManifestReply) and none.manifest is None
            # A manifest whose owner has no deal here is not stored.
            foreign = await client.host.request(
                peer[0], [peer[1]], DEAL_PROTOCOL, StoreManifest(stranger.manifest.encoded)
            )
            assert isinstance(foreign, DealFailed) and "no piece" in foreign.reason
            garbage = await client.host.request(
                peer[0], [peer[1]], DEAL_PROTOCOL, StoreManifest(b"\xa0not cbor")
            )
            assert isinstance(garbage, DealFailed) and "manifest refused" in garbage.reason
            assert node.ctx.db.manifest_count() == 1
        finally:
            await client.close()
            await node.stop()

    run(scenario())
