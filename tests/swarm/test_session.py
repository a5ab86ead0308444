"""The download session core, driven by in-memory sources (no sockets)."""

from __future__ import annotations

import pytest

from node.swarm.bitfield import Bitfield
from node.swarm.config import SwarmConfig
from node.swarm.errors import IllegalTransitionError, SwarmUsageError
from node.swarm.events import (
    ChunkRejected,
    EndgameEntered,
    LayerVerified,
    LinkClosed,
    PeerBanned,
    PeerPenalised,
    PeerStalled,
    RequestsCancelled,
    SessionCompleted,
    SessionFailed,
)
from node.swarm.session import (
    LINK_TRANSITIONS,
    DownloadCore,
    LinkState,
    SessionState,
    ShareProgress,
    Source,
)
from node.swarm.verify import CHUNK_SIZE, layer_of
from tests.swarm.memswarm import Harness, MemSource, make_piece, sources_for

CFG = SwarmConfig(stall_timeout=0.5, reconnect_backoff=0.1, reconnect_attempts=1)
SIZE = 20 * CHUNK_SIZE + 1000  # 21 chunks, the last one short


def whole(h: Harness, share: int, count: int) -> bytes:
    return b"".join(h.written[(share, j)] for j in range(count))


def run(
    pieces: list[bytes], srcs: list[MemSource], need: int = 1, per_piece: int = 1, **kw: object
) -> Harness:
    sources = sources_for(pieces, per_piece)
    tick = float(kw.pop("tick", 0.001))  # type: ignore[arg-type]
    core = DownloadCore(sources, need, kw.pop("config", CFG), 0.0, **kw)  # type: ignore[arg-type]
    h = Harness(core, srcs, tick=tick)
    h.run()
    return h


def test_one_source_downloads_the_whole_piece() -> None:
    piece = make_piece(SIZE)
    h = run([piece], [MemSource(piece)])
    assert h.core.state is SessionState.COMPLETED
    assert whole(h, 0, 21) == piece
    assert len(h.of_type(LayerVerified)) == 1
    done = h.of_type(SessionCompleted)
    assert len(done) == 1 and done[0].ttfb is not None


def test_three_sources_of_one_piece_share_the_work() -> None:
    piece = make_piece(SIZE)
    srcs = [MemSource(piece) for _ in range(3)]
    h = run([piece], srcs, per_piece=3)
    assert whole(h, 0, 21) == piece
    assert all(s.sent_chunks > 0 for s in srcs)
    # Only one layer fetch for the share, however many sources hold it.
    assert sum(1 for s in srcs for _ in [0] if s.layer) == 3
    assert len(h.of_type(LayerVerified)) == 1


def test_k_of_n_takes_each_stripe_from_need_distinct_shares() -> None:
    pieces = [make_piece(SIZE, seed) for seed in range(3)]
    srcs = [MemSource(p) for p in pieces]
    h = run(pieces, srcs, need=2)
    for j in range(21):
        shares = {s for (s, i) in h.written if i == j}
        assert len(shares) >= 2, j
    for (s, j), data in h.written.items():
        assert data == pieces[s][j * CHUNK_SIZE : (j + 1) * CHUNK_SIZE]
    # No stripe was written from more than `need` shares outside endgame duplicates.
    assert len(h.written) <= 21 * 2 + CFG.max_pipeline * 3


def test_rarest_first_takes_what_only_one_peer_has_from_it() -> None:
    piece = make_piece(SIZE)
    partial = MemSource(piece, has=set(range(10)))
    full = MemSource(piece)
    h = run([piece], [partial, full], per_piece=2)
    assert whole(h, 0, 21) == piece
    # The full source's first requests are the chunks only it holds (10..20).
    first = full.requests[: CFG.initial_pipeline]
    assert all(j >= 10 for j in first), first
    assert not partial.requests or all(j < 10 for j in partial.requests)


def test_endgame_duplicates_the_last_requests_and_cancels_losers() -> None:
    piece = make_piece(SIZE)
    slow = MemSource(piece, stall_after=3)
    fast = MemSource(piece)
    cfg = SwarmConfig(stall_timeout=100.0)
    h = run([piece], [slow, fast], per_piece=2, config=cfg)
    assert whole(h, 0, 21) == piece
    assert h.of_type(EndgameEntered)
    # What the stalled peer owed was duplicated at the fast one, then cancelled at the slow one.
    owed = set(slow.requests[3:])
    assert owed and owed <= set(fast.requests)
    cancelled = {j for e in h.of_type(RequestsCancelled) if e.link == 0 for j in e.indices}
    assert owed <= cancelled
    assert set(slow.cancels) >= owed
    assert not h.of_type(PeerPenalised)  # losing the race is not a fault


def test_corrupt_source_is_banned_and_the_download_completes() -> None:
    piece = make_piece(SIZE)
    bad = MemSource(piece, corrupt=set(range(21)))
    h = run([piece], [bad, MemSource(piece)], per_piece=2)
    assert whole(h, 0, 21) == piece
    rejected = h.of_type(ChunkRejected)
    assert rejected and all(e.link == 0 and e.reason == "hash mismatch" for e in rejected)
    assert [e.link for e in h.of_type(PeerBanned)] == [0]
    assert h.core.link_state(0) is LinkState.BANNED
    assert len(h.of_type(PeerPenalised)) == CFG.ban_faults


def test_liar_in_its_bitfield_is_penalised_and_banned() -> None:
    piece = make_piece(SIZE)
    liar = MemSource(piece, has={0, 1}, claims=set(range(21)))
    h = run([piece], [liar, MemSource(piece)], per_piece=2)
    assert whole(h, 0, 21) == piece
    reasons = [e.reason for e in h.of_type(PeerPenalised) if e.link == 0]
    assert reasons and all("missing" in r for r in reasons)
    assert [e.link for e in h.of_type(PeerBanned)] == [0]


def test_stalled_source_is_detected_and_its_requests_move() -> None:
    piece = make_piece(SIZE)
    staller = MemSource(piece, stall_after=2)
    h = run([piece], [staller, MemSource(piece)], per_piece=2, tick=0.1)
    assert whole(h, 0, 21) == piece
    stalls = h.of_type(PeerStalled)
    assert stalls and stalls[0].link == 0 and stalls[0].requeued > 0


def test_source_killed_mid_transfer_is_retried_then_dropped() -> None:
    piece = make_piece(SIZE)
    dying = MemSource(piece, die_after=3)
    h = run([piece], [dying, MemSource(piece)], per_piece=2, tick=0.05)
    assert whole(h, 0, 21) == piece
    closed = h.of_type(LinkClosed)
    assert closed[0].link == 0 and closed[0].will_retry
    assert any(e.link == 0 and not e.will_retry for e in closed)


def test_bad_layer_bans_at_once_and_the_layer_comes_from_another_source() -> None:
    piece = make_piece(SIZE)
    h = run([piece], [MemSource(piece, bad_layer=True), MemSource(piece)], per_piece=2)
    assert whole(h, 0, 21) == piece
    banned = h.of_type(PeerBanned)
    assert [e.link for e in banned] == [0] and "root" in banned[0].reason
    assert [e.link for e in h.of_type(LayerVerified)] == [1]


def test_session_fails_when_every_source_is_gone() -> None:
    piece = make_piece(SIZE)
    h = run([piece], [MemSource(piece, die_after=2)])
    assert h.core.state is SessionState.FAILED
    assert h.of_type(SessionFailed)


def test_session_fails_when_no_source_holds_a_stripe() -> None:
    piece = make_piece(SIZE)
    h = run([piece], [MemSource(piece, has=set(range(5)))])
    assert h.core.state is SessionState.FAILED
    assert "stripe 5" in h.of_type(SessionFailed)[0].reason


def test_refusing_source_is_closed_without_a_fault() -> None:
    piece = make_piece(SIZE)
    h = run([piece], [MemSource(piece, refuse=True), MemSource(piece)], per_piece=2)
    assert whole(h, 0, 21) == piece
    assert not h.of_type(PeerPenalised)
    assert any("refused" in e.reason for e in h.of_type(LinkClosed))


def test_resumed_progress_is_not_fetched_again() -> None:
    piece = make_piece(SIZE)
    done = Bitfield(21)
    for j in range(0, 21, 2):
        done.add(j)
    src = MemSource(piece)
    h = run([piece], [src], progress={0: ShareProgress(layer_of(piece), done)})
    assert sorted(src.requests) == list(range(1, 21, 2))
    assert not h.of_type(LayerVerified)  # the resumed layer was trusted (checked by the loader)


def test_nothing_to_do_completes_at_once() -> None:
    piece = make_piece(CHUNK_SIZE)
    sources = sources_for([piece])
    core = DownloadCore(
        sources, 1, CFG, 0.0, progress={0: ShareProgress(layer_of(piece), Bitfield.full(1))}
    )
    assert core.state is SessionState.COMPLETED
    assert not core.commands() or all(type(c).__name__ != "Dial" for c in core.commands())


def test_inconsistent_sources_are_a_usage_error() -> None:
    a, b = make_piece(CHUNK_SIZE, 1), make_piece(CHUNK_SIZE, 2)
    srcs = sources_for([a, b])
    clash = [srcs[0], Source(srcs[1].peer_id, (), srcs[1].root, len(b), 0)]
    with pytest.raises(SwarmUsageError):
        DownloadCore(clash, 1, CFG, 0.0)
    with pytest.raises(SwarmUsageError):
        DownloadCore(srcs, 3, CFG, 0.0)
    with pytest.raises(SwarmUsageError):
        DownloadCore(sources_for([a, make_piece(3 * CHUNK_SIZE)]), 1, CFG, 0.0)


def test_link_table_rejects_illegal_transitions() -> None:
    assert (LinkState.BANNED, "dial") not in LINK_TRANSITIONS
    piece = make_piece(CHUNK_SIZE)
    core = DownloadCore(sources_for([piece]), 1, CFG, 0.0)
    core.commands()
    with pytest.raises(IllegalTransitionError):
        core._move(core._links[0], "have")  # DIALLING -> have is not in the table


def test_unsolicited_chunk_is_a_fault() -> None:
    piece = make_piece(SIZE)
    core = DownloadCore(sources_for([piece]), 1, CFG, 0.0)
    h = Harness(core, [MemSource(piece)])
    h.step_commands()
    core.chunk_received(
        0, 5, piece[5 * CHUNK_SIZE : 6 * CHUNK_SIZE], 0.0
    )  # still waiting for Have: ignored
    src = h.sources[0]
    while src.queue:
        kind, value = src.next()  # type: ignore[misc]
        if kind == "msg":
            core.message_received(0, value, 0.0)
        h.step_commands()
        if core._links[0].state is LinkState.ACTIVE:
            break
    core.chunk_received(0, 20, piece[20 * CHUNK_SIZE :], 0.0)
    h.step_commands()
    assert any(isinstance(e, PeerPenalised) and "not requested" in e.reason for e in h.events)
