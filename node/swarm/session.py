"""
The download session core, sans-I/O: which chunk to ask of which peer, and what to make of
what comes back.

A session is given *sources* (peer, piece root, piece size, share index) and a goal: for
every stripe ``j``, chunk ``j`` of any ``need`` distinct shares (``need = k`` of a k-of-n
erasure code; ``need = 1`` with one share for a whole piece). One *link* per source
carries one piece; several links may carry the same piece (repair, public pieces).

Feed it what happens (``link_opened``, ``message_received``, ``chunk_received``,
``link_closed``, ``handle_timer``) with the current time; drain ``commands()`` (dial, send,
close) and ``events()`` (past-tense facts: a verified chunk for the sink, a ban, ...).
It never touches a socket, a clock or a file.

How it picks (the BitTorrent toolbox, BEP 3 and Cohen 2003 §2):

- *Layer first*: a link's piece layer (its chunk roots) is fetched once per share from one
  source and checked against the root; a wrong layer bans at once. Requests may be
  pipelined behind ``GetLayer`` on that link (sources answer in order); other links of the
  share wait for the verified layer.
- *Pipelining*: each link keeps ``rate * pipeline_seconds`` bytes of requests in flight,
  clamped to ``[min_pipeline, max_pipeline]`` (``initial_pipeline`` until measured).
- *Rarest first*: each link takes stripes in increasing order of how many active links
  could serve them, ties in index order (which also keeps writes sequential).
- *Endgame*: once every missing stripe is in flight, idle links duplicate outstanding
  stripes (up to ``endgame_copies`` requests per missing chunk); the first verified copy
  wins and the others are cancelled.
- *Verification*: every chunk is checked against its share's verified layer before it is
  counted or handed to the sink. A bad chunk is discarded, re-requested elsewhere, and
  costs the sender a fault; ``ban_faults`` faults ban it.
- *Stalls and slow peers*: a link that delivers nothing for ``stall_timeout`` while it
  owes chunks is stalled: its requests go to other links and it is snubbed (no requests)
  for another ``stall_timeout``; ``max_stalls`` stalls drop it. A link far slower than the
  fastest is held at ``min_pipeline``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from node.swarm.bitfield import Bitfield
from node.swarm.config import SwarmConfig
from node.swarm.errors import IllegalTransitionError, SwarmProtocolError, SwarmUsageError
from node.swarm.events import (
    ChunkRejected,
    ChunkVerified,
    Close,
    Command,
    Dial,
    DuplicateDropped,
    EndgameEntered,
    Event,
    HaveReceived,
    LayerVerified,
    LinkClosed,
    LinkOpened,
    PeerBanned,
    PeerPenalised,
    PeerSlowed,
    PeerStalled,
    RequestsCancelled,
    Send,
    SessionCompleted,
    SessionFailed,
)
from node.swarm.messages import (
    LAYER_PAGE,
    Cancel,
    Choke,
    GetLayer,
    Have,
    Interested,
    Layer,
    Refused,
    Reject,
    Request,
    Unchoke,
)
from node.swarm.ratelimit import RateMeter
from node.swarm.verify import CHUNK_SIZE, HASH_SIZE, chunk_count, verify_chunk, verify_layer


@dataclass(frozen=True)
class Source:
    """One peer holding one piece: what a session is told to download from."""

    peer_id: bytes
    addrs: tuple[tuple[str, int], ...]
    """Transport addresses of the peer, tried in order (``(host, port)``)."""
    root: bytes
    piece_size: int
    share: int
    """Which share of the file the piece is (its index among the n shares)."""


@dataclass(frozen=True)
class ShareProgress:
    """What is known of one share: its verified layer and verified chunks (for resume)."""

    layer: bytes | None
    done: Bitfield


class LinkState(Enum):
    IDLE = "idle"
    DIALLING = "dialling"
    WAITING_HAVE = "waiting-have"
    ACTIVE = "active"
    RETRY_WAIT = "retry-wait"
    CLOSED = "closed"
    BANNED = "banned"


class SessionState(Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


# State machines as tables: (state, trigger) -> next state. Anything else is a local bug.
LINK_TRANSITIONS: dict[tuple[LinkState, str], LinkState] = {
    (LinkState.IDLE, "dial"): LinkState.DIALLING,
    (LinkState.RETRY_WAIT, "dial"): LinkState.DIALLING,
    (LinkState.DIALLING, "opened"): LinkState.WAITING_HAVE,
    (LinkState.WAITING_HAVE, "have"): LinkState.ACTIVE,
    (LinkState.ACTIVE, "have"): LinkState.ACTIVE,
    **{
        (s, "lost"): LinkState.RETRY_WAIT
        for s in (LinkState.DIALLING, LinkState.WAITING_HAVE, LinkState.ACTIVE)
    },
    **{
        (s, "close"): LinkState.CLOSED
        for s in (
            LinkState.IDLE,
            LinkState.DIALLING,
            LinkState.WAITING_HAVE,
            LinkState.ACTIVE,
            LinkState.RETRY_WAIT,
        )
    },
    **{
        (s, "ban"): LinkState.BANNED
        for s in (LinkState.DIALLING, LinkState.WAITING_HAVE, LinkState.ACTIVE)
    },
}
SESSION_TRANSITIONS: dict[tuple[SessionState, str], SessionState] = {
    (SessionState.RUNNING, "complete"): SessionState.COMPLETED,
    (SessionState.RUNNING, "fail"): SessionState.FAILED,
}
_LIVE = (LinkState.DIALLING, LinkState.WAITING_HAVE, LinkState.ACTIVE, LinkState.RETRY_WAIT)


@dataclass(eq=False)
class _Share:
    root: bytes
    size: int
    layer: bytes | None
    done: Bitfield
    layer_link: int | None = None
    """The link the layer is being fetched from."""
    layer_buf: bytearray = field(default_factory=bytearray)


@dataclass(eq=False)
class _Link:
    key: int
    source: Source
    rate: RateMeter
    state: LinkState = LinkState.IDLE
    have: Bitfield | None = None
    choked: bool = True
    inflight: dict[int, float] = field(default_factory=dict)
    """Requested chunk index -> time requested."""
    cancelled: set[int] = field(default_factory=set)
    """Cancelled requests whose data may still arrive (not a fault if it does)."""
    candidates: deque[int] = field(default_factory=deque)
    faults: int = 0
    stalls: int = 0
    attempts: int = 0
    retry_at: float = 0.0
    progress_at: float = 0.0
    snubbed_until: float = 0.0
    chunks: int = 0
    slow: bool = False


VerifyChunk = Callable[[bytes, int, "bytes | memoryview"], bool]


class DownloadCore:
    """
    Sans-I/O download session.

    Parameters
    ----------
    sources :
        One entry per (peer, piece). Every share index maps to one root and size; all
        shares have the same number of chunks.
    need :
        Distinct shares needed per stripe.
    config :
        Timeouts, pipeline sizes, ban threshold.
    now :
        Current time (any monotonic clock, seconds).
    progress :
        Resumed state per share (verified layer, verified chunks), from a previous run.
    verify :
        ``verify(layer, index, data) -> bool``; the default hashes in this thread.
    """

    def __init__(
        self,
        sources: Iterable[Source],
        need: int,
        config: SwarmConfig,
        now: float,
        *,
        progress: Mapping[int, ShareProgress] | None = None,
        verify: VerifyChunk = verify_chunk,
    ) -> None:
        self.sources = tuple(sources)
        self.config = config
        self.need = need
        self._verify = verify
        self.shares: dict[int, _Share] = {}
        for src in self.sources:
            known = self.shares.get(src.share)
            if known is None:
                count = chunk_count(src.piece_size)
                self.shares[src.share] = _Share(src.root, src.piece_size, None, Bitfield(count))
            elif (known.root, known.size) != (src.root, src.piece_size):
                raise SwarmUsageError(f"share {src.share} is given two different pieces")
        counts = {s.done.size for s in self.shares.values()}
        if len(counts) != 1:
            raise SwarmUsageError(f"shares have different chunk counts: {sorted(counts)}")
        if not 1 <= need <= len(self.shares):
            raise SwarmUsageError(f"need {need} of {len(self.shares)} distinct shares")
        self.stripes = counts.pop()
        for share, prog in (progress or {}).items():
            if share not in self.shares or prog.done.size != self.stripes:
                raise SwarmUsageError(f"resume data for unknown share {share}")
            self.shares[share].layer = prog.layer
            self.shares[share].done = prog.done
        self._have = [0] * self.stripes
        for s in self.shares.values():
            for j in s.done:
                self._have[j] += 1
        self._unsatisfied = sum(1 for h in self._have if h < need)
        self._links = [
            _Link(i, src, RateMeter(config.rate_time_constant, now))
            for i, src in enumerate(self.sources)
        ]
        self._stripe_reqs: dict[int, set[int]] = {}
        self._retry: dict[int, None] = {}
        self._commands: deque[Command] = deque()
        self._events: deque[Event] = deque()
        self._state = SessionState.RUNNING
        self._start = now
        self._first_chunk: float | None = None
        self._endgame = False
        self._max_rate = 0.0
        if self._unsatisfied == 0:
            self._complete(now)
        else:
            for link in self._links:
                self._dial(link)

    # -- outputs -------------------------------------------------------------------------------
    def commands(self) -> list[Command]:
        """Drain what the adapter must do now, in order."""
        out = list(self._commands)
        self._commands.clear()
        return out

    def events(self) -> list[Event]:
        """Drain what happened, in order."""
        out = list(self._events)
        self._events.clear()
        return out

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def done(self) -> bool:
        return self._state is not SessionState.RUNNING

    def progress(self) -> dict[int, ShareProgress]:
        """Verified layers and chunks per share, for the resume state file."""
        return {i: ShareProgress(s.layer, s.done) for i, s in self.shares.items()}

    def link_state(self, link: int) -> LinkState:
        return self._links[link].state

    def remaining(self) -> int:
        """Stripes that still lack chunks."""
        return self._unsatisfied

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must next be called (``None``: no timer needed)."""
        if self.done:
            return None
        times = []
        for link in self._links:
            if link.state is LinkState.ACTIVE and link.inflight:
                times.append(link.progress_at + self.config.stall_timeout)
            elif link.state is LinkState.RETRY_WAIT:
                times.append(link.retry_at)
            if link.state is LinkState.ACTIVE and link.snubbed_until > 0:
                times.append(link.snubbed_until)
        return min(times, default=None)

    # -- inputs --------------------------------------------------------------------------------
    def link_opened(self, key: int, now: float) -> None:
        """The stream of ``key`` is open: introduce ourselves."""
        link = self._links[key]
        if self.done or link.state is not LinkState.DIALLING:
            return
        self._move(link, "opened")
        link.progress_at = now
        src = link.source
        self._send(link, Interested(src.root, src.piece_size))
        self._events.append(LinkOpened(key))

    def link_closed(self, key: int, reason: str, now: float) -> None:
        """The stream of ``key`` ended, or could not be opened."""
        link = self._links[key]
        if self.done or link.state not in _LIVE or link.state is LinkState.RETRY_WAIT:
            return
        retry = link.attempts < self.config.reconnect_attempts
        self._detach(link, now)
        if retry:
            link.retry_at = now + self.config.reconnect_backoff * (2**link.attempts)
            link.attempts += 1
            self._move(link, "lost")
        else:
            self._move(link, "close")
        self._events.append(LinkClosed(key, reason, retry))
        self._after_loss(now)

    def protocol_error(self, key: int, reason: str, now: float) -> None:
        """The adapter could not parse what ``key`` sent: a fault, and the stream is gone."""
        link = self._links[key]
        if self.done or link.state not in _LIVE:
            return
        if self._fault(link, "protocol", reason, now):
            return
        self._drop(link, f"protocol error: {reason}", now)

    def message_received(self, key: int, msg: object, now: float) -> None:
        """A control message arrived on the stream of ``key``."""
        link = self._links[key]
        if self.done or link.state not in (LinkState.WAITING_HAVE, LinkState.ACTIVE):
            return
        handler = self._HANDLERS.get(type(msg))
        if handler is None or (
            link.state is LinkState.WAITING_HAVE and not isinstance(msg, Have | Refused)
        ):
            self.protocol_error(key, f"unexpected {type(msg).__name__}", now)
            return
        try:
            handler(self, link, msg, now)
        except SwarmProtocolError as exc:
            self.protocol_error(key, str(exc), now)

    def chunk_received(self, key: int, index: int, data: bytes | memoryview, now: float) -> None:
        """Chunk ``index`` arrived whole from ``key`` (after a ``Chunk`` header)."""
        link = self._links[key]
        if self.done or link.state is not LinkState.ACTIVE:
            return
        share = self.shares[link.source.share]
        requested = link.inflight.pop(index, None)
        was_cancelled = requested is None and index in link.cancelled
        if requested is None and not was_cancelled:
            self._reject(link, index, "unsolicited chunk")
            self._fault(link, "unsolicited", f"sent chunk {index} that was not requested", now)
            return
        link.cancelled.discard(index)
        self._unrequest(link, index)
        link.progress_at = now
        link.snubbed_until = 0.0
        link.rate.add(len(data), now)
        link.chunks += 1
        if index in share.done or self._have[index] >= self.need:
            # A late endgame duplicate: harmless, dropped, not a fault.
            self._events.append(DuplicateDropped(key, index, len(data)))
            self._fill_all(now)
            return
        if share.layer is None:
            self.protocol_error(key, f"chunk {index} arrived before the layer", now)
            return
        if not self._verify(share.layer, index, data):
            self._reject(link, index, "hash mismatch")
            self._retry[index] = None
            if not self._fault(link, "corrupt", f"chunk {index} does not match the layer", now):
                self._fill_all(now)
            return
        self._accept(link, share, index, data, now)

    def expected_length(self, key: int, index: int) -> int | None:
        """Length a ``Chunk`` header from ``key`` must announce, or ``None`` if not wanted."""
        link = self._links[key]
        share = self.shares[link.source.share]
        if index not in link.inflight and index not in link.cancelled:
            return None
        if share.layer is None:
            return None
        if index < self.stripes - 1:
            return CHUNK_SIZE
        return share.size - CHUNK_SIZE * (self.stripes - 1)

    def handle_timer(self, now: float) -> None:
        """Stall detection, redials, end of snubs."""
        if self.done:
            return
        for link in self._links:
            if link.state is LinkState.RETRY_WAIT and now >= link.retry_at:
                self._dial(link)
            elif link.state is LinkState.ACTIVE:
                if link.inflight and now - link.progress_at >= self.config.stall_timeout:
                    self._stall(link, now)
                elif link.snubbed_until and now >= link.snubbed_until:
                    link.snubbed_until = 0.0
                    self._fill(link, now)

    def close(self, reason: str, now: float) -> None:
        """Abandon the session (the adapter is shutting down)."""
        if not self.done:
            self._fail(reason, now)

    # -- message handlers ------------------------------------------------------------------------
    def _on_have(self, link: _Link, msg: Have, now: float) -> None:
        field_ = Bitfield(self.stripes, msg.bitfield)
        link.have = field_
        self._move(link, "have")
        self._events.append(HaveReceived(link.key, len(field_)))
        share = self.shares[link.source.share]
        if share.layer is None and share.layer_link is None:
            self._fetch_layer(link, share)
        self._rebuild_candidates()
        self._fill_all(now)

    def _on_choke(self, link: _Link, msg: Choke, now: float) -> None:
        link.choked = True
        # BEP 3: a choke discards every request the peer had not answered yet.
        for index in list(link.inflight):
            self._unrequest(link, index)
            del link.inflight[index]
            self._retry[index] = None
        self._fill_all(now)

    def _on_unchoke(self, link: _Link, msg: Unchoke, now: float) -> None:
        link.choked = False
        link.progress_at = now
        self._fill(link, now)

    def _on_layer(self, link: _Link, msg: Layer, now: float) -> None:
        share = self.shares[link.source.share]
        if share.layer_link != link.key:
            raise SwarmProtocolError("layer sent without a request")
        if (
            msg.start * HASH_SIZE != len(share.layer_buf)
            or not msg.hashes
            or len(msg.hashes) % HASH_SIZE
        ):
            raise SwarmProtocolError("layer page out of sequence")
        share.layer_buf += msg.hashes
        total = self.stripes * HASH_SIZE
        link.progress_at = now
        if len(share.layer_buf) < total:
            start = len(share.layer_buf) // HASH_SIZE
            self._send(link, GetLayer(start, min(LAYER_PAGE, self.stripes - start)))
            return
        layer, share.layer_buf, share.layer_link = bytes(share.layer_buf), bytearray(), None
        if not verify_layer(share.root, share.size, layer):
            self._ban(link, "bad-layer", "layer does not match the piece root", now)
            return
        share.layer = layer
        self._events.append(LayerVerified(link.source.share, link.key))
        self._fill_all(now)

    def _on_reject(self, link: _Link, msg: Reject, now: float) -> None:
        if link.inflight.pop(msg.index, None) is None:
            link.cancelled.discard(msg.index)
            return
        self._unrequest(link, msg.index)
        self._retry[msg.index] = None
        if msg.reason == "missing" and link.have is not None and msg.index in link.have:
            link.have.discard(msg.index)
            if self._fault(
                link, "missing", f"chunk {msg.index} is in its bitfield but missing", now
            ):
                return
        self._fill_all(now)

    def _on_refused(self, link: _Link, msg: Refused, now: float) -> None:
        self._detach(link, now)
        self._move(link, "close")
        self._commands.append(Close(link.key, f"refused: {msg.reason}"))
        self._events.append(LinkClosed(link.key, f"refused: {msg.reason}", False))
        self._after_loss(now)

    _HANDLERS: dict[type, Callable[[DownloadCore, _Link, object, float], None]] = {
        Have: _on_have,  # type: ignore[dict-item]
        Choke: _on_choke,  # type: ignore[dict-item]
        Unchoke: _on_unchoke,  # type: ignore[dict-item]
        Layer: _on_layer,  # type: ignore[dict-item]
        Reject: _on_reject,  # type: ignore[dict-item]
        Refused: _on_refused,  # type: ignore[dict-item]
    }

    # -- picking -------------------------------------------------------------------------------
    def _rebuild_candidates(self) -> None:
        """Order every active link's wanted stripes rarest first (ties: index order)."""
        active = [k for k in self._links if k.state is LinkState.ACTIVE and k.have is not None]
        avail = [0] * self.stripes
        full = all(k.have is not None and k.have.complete() for k in active)
        if not full:
            for k in active:
                assert k.have is not None
                for j in k.have:
                    avail[j] += 1
        for link in active:
            assert link.have is not None
            done = self.shares[link.source.share].done
            wanted = [
                j
                for j in (range(self.stripes) if link.have.complete() else link.have)
                if j not in done and self._have[j] < self.need
            ]
            if not full:
                wanted.sort(key=avail.__getitem__)
            link.candidates = deque(wanted)

    def _covered(self, index: int) -> int:
        """Verified plus in-flight distinct shares of a stripe."""
        reqs = self._stripe_reqs.get(index)
        if not reqs:
            return self._have[index]
        return self._have[index] + len({self._links[k].source.share for k in reqs})

    def _share_in_flight(self, share: int, index: int) -> bool:
        reqs = self._stripe_reqs.get(index)
        return bool(reqs) and any(self._links[k].source.share == share for k in reqs)  # type: ignore[union-attr]

    def _pickable(self, link: _Link, index: int) -> bool:
        share = link.source.share
        return (
            index not in self.shares[share].done
            and self._have[index] < self.need
            and not self._share_in_flight(share, index)
            and self._covered(index) < self.need
        )

    def _pick(self, link: _Link) -> int | None:
        assert link.have is not None
        for index in list(self._retry):
            if self._have[index] >= self.need:
                del self._retry[index]
            elif index in link.have and self._pickable(link, index):
                del self._retry[index]
                return index
        queue = link.candidates
        while queue:
            index = queue.popleft()
            if index in link.have and self._pickable(link, index):
                return index
        return None

    def _pick_endgame(self, link: _Link, capacity: int) -> int | None:
        if self._unsatisfied > capacity:
            return None
        assert link.have is not None
        if not self._endgame:
            self._endgame = True
            self._events.append(EndgameEntered(self._unsatisfied))
        done = self.shares[link.source.share].done
        best, best_load = None, math.inf
        for index, reqs in self._stripe_reqs.items():
            if link.key in reqs or index in done or index not in link.have:
                continue
            missing = self.need - self._have[index]
            if missing <= 0 or len(reqs) >= missing * self.config.endgame_copies:
                continue
            if len(reqs) < best_load:
                best, best_load = index, len(reqs)
        return best

    def _depth(self, link: _Link, now: float) -> int:
        cfg = self.config
        if link.slow or (link.stalls and link.chunks == 0):
            return cfg.min_pipeline
        if link.chunks < cfg.initial_pipeline:
            return cfg.initial_pipeline
        want = math.ceil(link.rate.rate(now) * cfg.pipeline_seconds / CHUNK_SIZE)
        return max(cfg.min_pipeline, min(cfg.max_pipeline, want))

    def _usable(self, link: _Link, now: float) -> bool:
        if link.state is not LinkState.ACTIVE or link.choked or link.snubbed_until > now:
            return False
        share = self.shares[link.source.share]
        # Requests may queue behind a one-page GetLayer on the same link (answers come in
        # order); a multi-page layer is fetched page by page, so requests wait for it.
        return share.layer is not None or (
            share.layer_link == link.key and self.stripes <= LAYER_PAGE
        )

    def _fill(self, link: _Link, now: float) -> None:
        if self.done or not self._usable(link, now):
            return
        depth = self._depth(link, now)
        # Top the pipeline up in batches: one message (one record, one syscall) asks for
        # several chunks, which matters when every small write wakes another core.
        if len(link.inflight) > self.config.min_pipeline and depth - len(link.inflight) < min(
            self.config.request_batch, depth
        ):
            return
        capacity = 0
        while len(link.inflight) < depth:
            index = self._pick(link)
            if index is None:
                if not capacity:
                    capacity = sum(self._depth(k, now) for k in self._links if self._usable(k, now))
                index = self._pick_endgame(link, capacity)
                if index is None:
                    break
            self._request(link, index, now)

    def _fill_all(self, now: float) -> None:
        for link in self._links:
            self._fill(link, now)
        self._check_stuck(now)

    def _request(self, link: _Link, index: int, now: float) -> None:
        if not link.inflight:
            link.progress_at = now
        link.inflight[index] = now
        self._stripe_reqs.setdefault(index, set()).add(link.key)
        self._send(link, Request(index))

    def _unrequest(self, link: _Link, index: int) -> None:
        reqs = self._stripe_reqs.get(index)
        if reqs is not None:
            reqs.discard(link.key)
            if not reqs:
                del self._stripe_reqs[index]

    # -- outcomes --------------------------------------------------------------------------------
    def _accept(
        self, link: _Link, share: _Share, index: int, data: bytes | memoryview, now: float
    ) -> None:
        share.done.add(index)
        self._have[index] += 1
        if self._first_chunk is None:
            self._first_chunk = now
        self._events.append(ChunkVerified(link.source.share, index, data, link.key))
        self._retry.pop(index, None)
        satisfied = self._have[index] >= self.need
        if satisfied:
            self._unsatisfied -= 1
        # Cancel the losers: every request for this stripe if it is complete, else the
        # duplicates of this very share.
        for key in list(self._stripe_reqs.get(index, ())):
            other = self._links[key]
            if satisfied or other.source.share == link.source.share:
                del other.inflight[index]
                other.cancelled.add(index)
                self._unrequest(other, index)
                self._send(other, Cancel(index))
                self._events.append(RequestsCancelled(key, (index,)))
        self._check_slow(link, now)
        if self._unsatisfied == 0:
            self._complete(now)
            return
        self._fill_all(now)

    def _check_slow(self, link: _Link, now: float) -> None:
        if (
            link.chunks < self.config.initial_pipeline
            or now - self._start < self.config.rate_time_constant
        ):
            return
        rate = link.rate.rate(now)
        self._max_rate = max(self._max_rate * 0.99, rate)
        slow = rate < self.config.slow_fraction * self._max_rate
        if slow and not link.slow:
            self._events.append(PeerSlowed(link.key, rate))
        link.slow = slow

    def _reject(self, link: _Link, index: int, reason: str) -> None:
        self._events.append(ChunkRejected(link.source.share, index, link.key, reason))

    def _fault(self, link: _Link, kind: str, reason: str, now: float) -> bool:
        """Count a fault; returns True if it banned the link."""
        link.faults += 1
        self._events.append(PeerPenalised(link.key, kind, reason, link.faults))
        if link.faults >= self.config.ban_faults:
            self._ban(link, kind, f"{link.faults} faults, last: {reason}", now)
            return True
        return False

    def _ban(self, link: _Link, kind: str, reason: str, now: float) -> None:
        self._detach(link, now)
        self._move(link, "ban")
        self._commands.append(Close(link.key, f"banned: {reason}"))
        self._events.append(PeerBanned(link.key, kind, reason))
        self._after_loss(now)

    def _drop(self, link: _Link, reason: str, now: float) -> None:
        self._detach(link, now)
        self._move(link, "close")
        self._commands.append(Close(link.key, reason))
        self._events.append(LinkClosed(link.key, reason, False))
        self._after_loss(now)

    def _stall(self, link: _Link, now: float) -> None:
        link.stalls += 1
        requeued = list(link.inflight)
        for index in requeued:
            self._unrequest(link, index)
            link.cancelled.add(index)
            self._retry[index] = None
            self._send(link, Cancel(index))
        link.inflight.clear()
        self._events.append(PeerStalled(link.key, link.stalls, len(requeued)))
        if link.stalls >= self.config.max_stalls:
            self._drop(link, f"stalled {link.stalls} times", now)
            return
        link.snubbed_until = now + self.config.stall_timeout
        self._fill_all(now)

    def _detach(self, link: _Link, now: float) -> None:
        """Forget the link's requests (they go back to the pool) and its layer fetch."""
        for index in link.inflight:
            self._unrequest(link, index)
            self._retry[index] = None
        link.inflight.clear()
        link.cancelled.clear()
        link.candidates.clear()
        link.have = None
        link.choked = True
        link.snubbed_until = 0.0
        share = self.shares[link.source.share]
        if share.layer_link == link.key:
            share.layer_link = None
            share.layer_buf = bytearray()

    def _after_loss(self, now: float) -> None:
        for key, share in self.shares.items():
            if share.layer is None and share.layer_link is None:
                for other in self._links:
                    if other.source.share == key and other.state is LinkState.ACTIVE:
                        self._fetch_layer(other, share)
                        break
        self._rebuild_candidates()
        self._fill_all(now)

    def _fetch_layer(self, link: _Link, share: _Share) -> None:
        share.layer_link = link.key
        share.layer_buf = bytearray()
        self._send(link, GetLayer(0, min(LAYER_PAGE, self.stripes)))

    def _check_stuck(self, now: float) -> None:
        """Fail when no live link can make progress towards the goal."""
        if self.done or any(s.layer_link is not None for s in self.shares.values()):
            return
        for link in self._links:
            if link.state in (LinkState.DIALLING, LinkState.WAITING_HAVE, LinkState.RETRY_WAIT):
                return
            if link.state is LinkState.ACTIVE and (
                link.inflight or link.choked or link.snubbed_until
            ):
                return
        missing = next(j for j, h in enumerate(self._have) if h < self.need)
        self._fail(
            f"no live source can provide stripe {missing} ({self._unsatisfied} stripes missing)",
            now,
        )

    def _complete(self, now: float) -> None:
        self._state = SESSION_TRANSITIONS[(self._state, "complete")]
        ttfb = None if self._first_chunk is None else self._first_chunk - self._start
        self._finish_links("done")
        self._events.append(SessionCompleted(now - self._start, ttfb))

    def _fail(self, reason: str, now: float) -> None:
        self._state = SESSION_TRANSITIONS[(self._state, "fail")]
        self._finish_links(reason)
        self._events.append(SessionFailed(reason))

    def _finish_links(self, reason: str) -> None:
        for link in self._links:
            if link.state in _LIVE:
                if link.state is not LinkState.RETRY_WAIT:
                    self._commands.append(Close(link.key, reason))
                link.inflight.clear()
                link.state = LINK_TRANSITIONS[(link.state, "close")]

    # -- plumbing --------------------------------------------------------------------------------
    def _dial(self, link: _Link) -> None:
        self._move(link, "dial")
        self._commands.append(Dial(link.key))

    def _move(self, link: _Link, trigger: str) -> None:
        try:
            link.state = LINK_TRANSITIONS[(link.state, trigger)]
        except KeyError:
            raise IllegalTransitionError(
                f"link {link.key}: {trigger!r} in state {link.state.value}"
            ) from None

    def _send(self, link: _Link, msg: object) -> None:
        self._commands.append(Send(link.key, msg))
