"""
The swarm's asyncio adapter: ``/depot/swarm/1`` over ``node.transport``.

    swarm = Swarm(host, store=FilePieceStore(home / "pieces"))
    report = await swarm.download(sources, need, FileSink(dir, pieces_of(sources)))
    await swarm.push(peer_id, addrs, root)           # client -> provider, acknowledged
    await swarm.pull(sources, importer)              # provider <- provider (repair)

It only pumps: the decisions are the sans-I/O cores' (``DownloadCore``, ``Choker``,
``UploadLimiter``). Every task it starts is kept and cancelled on ``close()``. A peer's
misbehaviour is logged with the peer's id, counted in the metrics and contained to its
stream; it never raises out of the swarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from node import errors, wire
from node.identity import peer_short
from node.metrics import Registry
from node.swarm.bitfield import Bitfield
from node.swarm.choker import Choker
from node.swarm.config import SwarmConfig
from node.swarm.errors import DownloadFailedError, PushRefusedError, SwarmUsageError
from node.swarm.events import (
    ChunkRejected,
    ChunkVerified,
    Close,
    Dial,
    DuplicateDropped,
    Event,
    LinkClosed,
    PeerBanned,
    PeerPenalised,
    PeerSlowed,
    PeerStalled,
    Send,
    SessionCompleted,
    SessionFailed,
)
from node.swarm.messages import (
    LAYER_PAGE,
    PROTOCOL,
    WIRE,
    Cancel,
    Choke,
    Chunk,
    GetLayer,
    Have,
    Interested,
    Layer,
    Offer,
    Refused,
    Reject,
    Request,
    Stored,
    Unchoke,
)
from node.swarm.metrics import SwarmMetrics
from node.swarm.ratelimit import UploadLimiter
from node.swarm.session import DownloadCore, ShareProgress, Source
from node.swarm.sink import ChunkSink, FileSink, ResumeState, SharePiece, pieces_of, reverify
from node.swarm.store import PieceImporter, PieceStore
from node.swarm.verify import HASH_SIZE, chunk_count, chunk_length
from node.transport import MSG_LENGTH_BYTES, Host, Stream

log = logging.getLogger("node.swarm")

STREAM_ERRORS = (errors.RemoteError, ConnectionError, OSError)


@dataclass
class DownloadReport:
    """What a finished download did."""

    elapsed: float
    ttfb: float | None
    received: dict[bytes, int]
    """Chunk bytes received per peer id (verified or not)."""
    bans: list[tuple[bytes, str]]
    stalls: int
    verification_failures: int
    layers: dict[int, bytes]
    """The verified layer of every share."""


@dataclass(eq=False)
class _Serving:
    """One stream on which we are the source of one piece."""

    stream: Stream
    root: bytes
    size: int
    jobs: deque[tuple[Any, ...]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    unchoked: bool = False


class Swarm:
    """
    A node's swarm endpoint: serves pieces from ``store``, downloads, pushes and pulls.

    Parameters
    ----------
    host :
        The transport; the swarm registers its handler for ``/depot/swarm/1``.
    store :
        Pieces this node serves (``None``: serve nothing).
    importer :
        Where pieces pushed to this node go (``None``: refuse pushes).
    """

    def __init__(
        self,
        host: Host,
        store: PieceStore | None = None,
        importer: PieceImporter | None = None,
        config: SwarmConfig | None = None,
        *,
        registry: Registry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.host = host
        self.store = store
        self.importer = importer
        self.config = config or SwarmConfig()
        self.metrics = SwarmMetrics(registry or host.registry)
        now = time.monotonic()
        cfg = self.config
        self._choker: Choker[bytes] = Choker(
            cfg.upload_slots,
            cfg.optimistic_slots,
            cfg.rechoke_interval,
            cfg.optimistic_interval,
            rng or random.Random(),
            now,
        )
        self._limiter = UploadLimiter(cfg.peer_upload_rate, cfg.upload_rate, cfg.burst_seconds, now)
        self._serving: dict[bytes, set[_Serving]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._choke_task: asyncio.Task[Any] | None = None
        host.set_handler(PROTOCOL, self._handle)

    # -- public API ------------------------------------------------------------------------
    async def download(
        self,
        sources: Sequence[Source],
        need: int,
        sink: ChunkSink,
        *,
        state_path: Path | None = None,
    ) -> DownloadReport:
        """
        Fetch, for every stripe, chunks of ``need`` distinct shares from ``sources``.

        With ``state_path`` the download is resumable: ``sink`` must be a ``FileSink``;
        progress is loaded from ``state_path`` if it exists and saved while running.
        Raises ``DownloadFailedError`` if the goal cannot be met.
        """
        resume = None
        progress = None
        if state_path is not None:
            if not isinstance(sink, FileSink):
                raise SwarmUsageError("a resumable download needs a FileSink")
            resume = ResumeState(state_path, pieces_of(list(sources)))
            progress = resume.load()
            if progress and self.config.reverify_on_resume:
                progress = reverify(progress, sink)
        run = _Download(self, list(sources), need, sink, resume=resume, progress=progress)
        return await run.run()

    async def pull(self, sources: Sequence[Source], importer: PieceImporter | None = None) -> None:
        """
        Copy one piece from the ``sources`` that hold it (repair) into ``importer``.

        Resumable: partial data stays in the importer's staging directory, and a later
        ``pull`` of the same piece continues from it.
        """
        target = importer or self.importer
        if target is None:
            raise SwarmUsageError("pull needs an importer")
        pieces = pieces_of(list(sources))
        if len(pieces) != 1:
            raise SwarmUsageError("pull copies exactly one piece")
        share, piece = next(iter(pieces.items()))
        workdir = target.staging_dir() / f"pull-{piece.root.hex()}"
        sink = FileSink(workdir, pieces)
        state = workdir / "state.json"
        try:
            report = await self.download(sources, 1, sink, state_path=state)
        except BaseException:
            sink.close()
            raise
        self._import(target, sink, share, piece, report.layers[share])
        shutil.rmtree(workdir, ignore_errors=True)

    async def push(self, peer_id: bytes, addrs: Sequence[tuple[str, int]], root: bytes) -> None:
        """
        Upload piece ``root`` from our store to ``peer_id``; returns once the receiver has
        verified, fsynced and stored it. Raises ``PushRefusedError`` otherwise.
        """
        if self.store is None or not self.store.has(root):
            raise SwarmUsageError(f"push of {root.hex()}: not in our store")
        size = self.store.size(root)
        stream = await self.host.open_stream(peer_id, addrs, PROTOCOL)
        try:
            await stream.send_msg(Offer(root, size))
            first = await asyncio.wait_for(stream.recv_msg(WIRE), self.config.handshake_timeout)
            if isinstance(first, Refused):
                raise PushRefusedError(
                    f"{peer_short(peer_id)} refused {root.hex()[:16]}: {first.reason}"
                )
            if not isinstance(first, Interested) or (first.root, first.piece_size) != (root, size):
                raise PushRefusedError(f"{peer_short(peer_id)} answered the offer with {first!r}")
            outcome = await self._serve(stream, root, size, choke=False)
        except (errors.RemoteError, TimeoutError, OSError) as exc:
            stream.reset("push failed")
            self.metrics.pushes.labels(result="failed").inc()
            if isinstance(exc, PushRefusedError):
                raise
            raise PushRefusedError(
                f"push of {root.hex()[:16]} to {peer_short(peer_id)}: {exc}"
            ) from None
        if not isinstance(outcome, Stored) or outcome.root != root:
            self.metrics.pushes.labels(result="failed").inc()
            reason = outcome.reason if isinstance(outcome, Refused) else "stream ended"
            raise PushRefusedError(
                f"{peer_short(peer_id)} did not store {root.hex()[:16]}: {reason}"
            )
        self.metrics.pushes.labels(result="sent").inc()
        await stream.close()

    async def close(self) -> None:
        """Stop serving and cancel every task the swarm started."""
        self._closed = True
        self.host.remove_handler(PROTOCOL)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for streams in self._serving.values():
            for s in streams:
                s.stream.reset("swarm closing")
        self._serving.clear()

    # -- tasks -----------------------------------------------------------------------------
    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- serving side ----------------------------------------------------------------------
    async def _handle(self, stream: Stream) -> None:
        """Entry point of every inbound swarm stream."""
        try:
            first = await asyncio.wait_for(stream.recv_msg(WIRE), self.config.handshake_timeout)
            if isinstance(first, Interested):
                await self._serve(stream, first.root, first.piece_size, choke=True)
            elif isinstance(first, Offer):
                await self._receive_push(stream, first)
            else:
                await self._refuse(stream, f"unexpected first message {type(first).__name__}")
        except (errors.RemoteError, TimeoutError, OSError) as exc:
            log.info("swarm: stream from %s ended: %s", peer_short(stream.peer_id), exc)
            stream.reset(type(exc).__name__)

    async def _refuse(self, stream: Stream, reason: str) -> None:
        log.info("swarm: refusing %s: %s", peer_short(stream.peer_id), reason)
        with contextlib.suppress(*STREAM_ERRORS):
            await stream.send_msg(Refused(reason))
            await stream.close()

    async def _serve(self, stream: Stream, root: bytes, size: int, *, choke: bool) -> object:
        """Be the source of ``root`` on ``stream``; returns the message that ended it, if any."""
        store = self.store
        if store is None or not store.has(root) or store.size(root) != size:
            await self._refuse(stream, "no such piece")
            return None
        peer = stream.peer_id
        serving = _Serving(stream, root, size)
        self._serving.setdefault(peer, set()).add(serving)
        self.metrics.streams_served.inc()
        count = chunk_count(size)
        await stream.send_msg(Have(Bitfield.full(count).to_bytes()))
        if choke:
            self._choker.add(peer, time.monotonic())
            self._apply_chokes(self._choker.set_interested(peer, True, time.monotonic()))
            self._ensure_choke_timer()
        else:
            serving.unchoked = True
            serving.jobs.append(("unchoke",))
        sender = self.spawn(self._send_loop(serving), f"swarm send {peer_short(peer)}")
        ended: object = None
        try:
            while True:
                msg = await stream.recv_msg(WIRE)
                if isinstance(msg, Request):
                    if not 0 <= msg.index < count:
                        raise errors.ProtocolViolation(f"request for chunk {msg.index} of {count}")
                    if len(serving.jobs) >= self.config.max_queued_requests:
                        raise errors.ProtocolViolation("too many queued requests")
                    if serving.unchoked:
                        serving.jobs.append(("chunk", msg.index))
                    else:
                        serving.jobs.append(("reject", msg.index, "choked"))
                elif isinstance(msg, Cancel):
                    with contextlib.suppress(ValueError):
                        serving.jobs.remove(("chunk", msg.index))
                elif isinstance(msg, GetLayer):
                    if not (0 <= msg.start < count and 0 < msg.count <= LAYER_PAGE):
                        raise errors.ProtocolViolation("bad layer range")
                    serving.jobs.append(("layer", msg.start, min(msg.count, count - msg.start)))
                elif isinstance(msg, Stored | Refused):
                    ended = msg
                    break
                else:
                    raise errors.ProtocolViolation(f"unexpected {type(msg).__name__}")
                serving.wake.set()
        except (errors.EndOfStream, errors.StreamReset, errors.ConnectionClosed):
            pass
        except errors.RemoteError as exc:
            log.info("swarm: %s broke the protocol: %s", peer_short(peer), exc)
            stream.reset(str(exc))
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            streams = self._serving.get(peer, set())
            streams.discard(serving)
            if not streams:
                self._serving.pop(peer, None)
                self._limiter.forget(peer)
                if choke:
                    self._apply_chokes(self._choker.remove(peer, time.monotonic()))
        return ended

    async def _send_loop(self, serving: _Serving) -> None:
        """Answer the stream's jobs in order, within the upload caps."""
        stream, store, peer = serving.stream, self.store, serving.stream.peer_id
        assert store is not None
        sent_bytes = self.metrics.sent.labels(peer=peer_short(peer))
        try:
            while True:
                while not serving.jobs:
                    serving.wake.clear()
                    await serving.wake.wait()
                job = serving.jobs.popleft()
                kind = job[0]
                if kind == "chunk":
                    index = job[1]
                    length = chunk_length(serving.size, index)
                    wait = self._limiter.take(peer, length, time.monotonic())
                    if wait > 0:
                        await asyncio.sleep(wait)
                    try:
                        data = store.read_chunk(serving.root, index)
                    except OSError as exc:
                        log.error(
                            "swarm: cannot read chunk %d of %s: %s",
                            index,
                            serving.root.hex()[:16],
                            exc,
                        )
                        await stream.send_msg(Reject(index, "missing"))
                        continue
                    await stream.send_msg(Chunk(index, len(data)))
                    await stream.write(data)
                    sent_bytes.inc(len(data))
                    self._choker.record(peer, sent=len(data))
                elif kind == "layer":
                    _, start, n = job
                    hashes = store.layer(serving.root)[start * HASH_SIZE : (start + n) * HASH_SIZE]
                    await stream.send_msg(Layer(start, hashes))
                elif kind == "reject":
                    await stream.send_msg(Reject(job[1], job[2]))
                elif kind == "choke":
                    await stream.send_msg(Choke())
                elif kind == "unchoke":
                    await stream.send_msg(Unchoke())
        except STREAM_ERRORS as exc:
            log.debug("swarm: sending to %s stopped: %s", peer_short(peer), exc)

    def _apply_chokes(self, changes: list[tuple[bytes, bool]]) -> None:
        for peer, unchoked in changes:
            for serving in self._serving.get(peer, ()):
                if serving.unchoked == unchoked:
                    continue
                serving.unchoked = unchoked
                if not unchoked:
                    # BEP 3: choking drops every queued request; the layer is still sent.
                    kept = [j for j in serving.jobs if j[0] == "layer"]
                    serving.jobs.clear()
                    serving.jobs.extend(kept)
                serving.jobs.append(("unchoke",) if unchoked else ("choke",))
                serving.wake.set()
            log.debug("swarm: %s %s", "unchoked" if unchoked else "choked", peer_short(peer))

    def _ensure_choke_timer(self) -> None:
        if self._choke_task is None or self._choke_task.done():
            self._choke_task = self.spawn(self._choke_loop(), "swarm choker")

    async def _choke_loop(self) -> None:
        while self._serving:
            await asyncio.sleep(max(0.0, self._choker.get_timer() - time.monotonic()))
            self._apply_chokes(self._choker.handle_timer(time.monotonic()))

    # -- receiving a push ------------------------------------------------------------------
    async def _receive_push(self, stream: Stream, offer: Offer) -> None:
        importer = self.importer
        refusal = "this node takes no pushes" if importer is None else None
        if importer is not None:
            refusal = importer.accept_push(stream.peer_id, offer.root, offer.piece_size)
        if refusal is not None or importer is None:
            self.metrics.pushes.labels(result="refused").inc()
            await self._refuse(stream, refusal or "refused")
            return
        piece = SharePiece(offer.root, offer.piece_size)
        source = Source(stream.peer_id, (), offer.root, offer.piece_size, 0)
        workdir = importer.staging_dir() / f"push-{offer.root.hex()}-{stream.stream_id}"
        sink = FileSink(workdir, {0: piece})
        config = replace(self.config, reconnect_attempts=0)
        run = _Download(self, [source], 1, sink, stream=stream, config=config)
        try:
            report = await run.run()
            self._import(importer, sink, 0, piece, report.layers[0])
        except (DownloadFailedError, OSError, errors.NodeError) as exc:
            sink.close()
            self.metrics.pushes.labels(result="failed").inc()
            log.warning(
                "swarm: push of %s from %s failed: %s",
                offer.root.hex()[:16],
                peer_short(stream.peer_id),
                exc,
            )
            await self._refuse(stream, f"push failed: {exc}")
            return
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        self.metrics.pushes.labels(result="received").inc()
        with contextlib.suppress(*STREAM_ERRORS):
            await stream.send_msg(Stored(offer.root))
            await stream.close()

    def _import(
        self, importer: PieceImporter, sink: FileSink, share: int, piece: SharePiece, layer: bytes
    ) -> None:
        paths = sink.finish({share})
        importer.import_piece(piece.root, piece.size, paths[share], layer)


class _Download:
    """One download session: the ``DownloadCore`` pumped over transport streams."""

    def __init__(
        self,
        swarm: Swarm,
        sources: list[Source],
        need: int,
        sink: ChunkSink,
        *,
        resume: ResumeState | None = None,
        progress: dict[int, ShareProgress] | None = None,
        stream: Stream | None = None,
        config: SwarmConfig | None = None,
    ) -> None:
        self.swarm = swarm
        self.sources = sources
        self.sink = sink
        self.resume = resume
        self.config = config or swarm.config
        self.metrics = swarm.metrics
        self.core = DownloadCore(sources, need, self.config, time.monotonic(), progress=progress)
        self._given_stream = stream
        self._push_stream = stream
        self._streams: dict[int, Stream] = {}
        self._outbox: dict[int, deque[object]] = {}
        self._wakes: dict[int, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer_wake = asyncio.Event()
        self._sleep_until = 0.0
        self._done = asyncio.Event()
        self._dirty = False
        self._saving: asyncio.Task[Any] | None = None
        self._last_save = time.monotonic()
        self._received: dict[bytes, int] = {}
        self._bans: list[tuple[bytes, str]] = []
        self._stalls = 0
        self._failures = 0
        self._result: SessionCompleted | SessionFailed | None = None
        self._sink_error: OSError | None = None
        self._peer_counters = {
            s.peer_id: swarm.metrics.received.labels(peer=peer_short(s.peer_id)) for s in sources
        }

    async def run(self) -> DownloadReport:
        self._spawn(self._timer_loop(), "swarm timer")
        self._pump()
        try:
            await self._done.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(BaseException):
                    await task
            for key in list(self._streams):
                self._close_link(key, "download over")
            if self._saving is not None:
                with contextlib.suppress(BaseException):
                    await self._saving
            if not self.core.done:
                self.core.close("cancelled", time.monotonic())
            if self._sink_error is None:
                await self._save(final=True)
            if self._sink_error is not None:
                raise self._sink_error
        result = self._result
        if isinstance(result, SessionCompleted):
            self.metrics.downloads.labels(result="completed").inc()
            if result.ttfb is not None:
                self.metrics.ttfb.observe(result.ttfb)
            if self.resume is not None:
                self.resume.remove()
            layers = {i: p.layer for i, p in self.core.progress().items() if p.layer is not None}
            return DownloadReport(
                result.elapsed,
                result.ttfb,
                self._received,
                self._bans,
                self._stalls,
                self._failures,
                layers,
            )
        self.metrics.downloads.labels(result="failed").inc()
        reason = result.reason if isinstance(result, SessionFailed) else "cancelled"
        raise DownloadFailedError(reason)

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = self.swarm.spawn(coro, name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the pump: core outputs to I/O -------------------------------------------------------
    def _pump(self) -> None:
        core = self.core
        while True:
            commands = core.commands()
            events = core.events()
            if not commands and not events:
                break
            for cmd in commands:
                if isinstance(cmd, Send):
                    box = self._outbox.get(cmd.link)
                    if box is not None:
                        box.append(cmd.msg)
                        self._wakes[cmd.link].set()
                elif isinstance(cmd, Dial):
                    self._spawn(self._dial(cmd.link), f"swarm dial {cmd.link}")
                elif isinstance(cmd, Close):
                    self._close_link(cmd.link, cmd.reason)
            for ev in events:
                self._on_event(ev)
        deadline = core.get_timer()
        if deadline is not None and deadline < self._sleep_until:
            self._timer_wake.set()
        if core.done:
            self._done.set()
            self._timer_wake.set()

    def _on_event(self, ev: Event) -> None:
        src = self.sources[ev.link] if hasattr(ev, "link") else None
        peer = peer_short(src.peer_id) if src is not None else "-"
        if isinstance(ev, ChunkVerified):
            # Inline: a write into the (preallocated) page cache costs less than handing the
            # chunk to a thread (measured in scripts/bench_swarm.py, docs/swarm.md).
            try:
                self.sink.write_chunk(ev.share, ev.index, ev.data)
            except OSError as exc:
                log.error("swarm: sink write failed: %s", exc)
                self._sink_error = exc
                self.core.close(f"sink failed: {exc}", time.monotonic())
                return
            self.metrics.verified.inc()
            self._dirty = True
        elif isinstance(ev, ChunkRejected):
            log.warning(
                "swarm: chunk %d of share %d from %s rejected: %s",
                ev.index,
                ev.share,
                peer,
                ev.reason,
            )
            if ev.reason == "hash mismatch":
                self._failures += 1
                self.metrics.verification_failures.labels(peer=peer).inc()
        elif isinstance(ev, DuplicateDropped):
            self.metrics.wasted.inc(ev.size)
        elif isinstance(ev, PeerPenalised):
            log.warning("swarm: %s penalised (%d faults): %s", peer, ev.faults, ev.reason)
            self.metrics.faults.labels(kind=ev.kind).inc()
        elif isinstance(ev, PeerBanned):
            assert src is not None
            log.warning("swarm: %s banned: %s", peer, ev.reason)
            self._bans.append((src.peer_id, ev.reason))
            self.metrics.bans.inc()
            if ev.kind == "bad-layer":
                self.metrics.verification_failures.labels(peer=peer).inc()
        elif isinstance(ev, PeerStalled):
            log.warning(
                "swarm: %s stalled (%d times), %d requests moved", peer, ev.stalls, ev.requeued
            )
            self._stalls += 1
            self.metrics.stalls.inc()
        elif isinstance(ev, PeerSlowed):
            log.info("swarm: %s is slow (%.0f B/s): pipeline cut", peer, ev.rate)
        elif isinstance(ev, LinkClosed):
            log.info(
                "swarm: link to %s closed: %s%s",
                peer,
                ev.reason,
                " (will retry)" if ev.will_retry else "",
            )
        elif isinstance(ev, SessionCompleted | SessionFailed):
            self._result = ev
            if isinstance(ev, SessionFailed):
                log.warning("swarm: download failed: %s", ev.reason)
        else:
            log.debug("swarm: %s", ev)

    def _close_link(self, link: int, reason: str) -> None:
        stream = self._streams.pop(link, None)
        self._outbox.pop(link, None)
        wake = self._wakes.pop(link, None)
        if wake is not None:
            wake.set()
        if stream is not None and not (stream is self._push_stream and self.core.done):
            # A push stream outlives the download: the receiver still owes its answer.
            stream.reset(reason[:200])

    # -- per-link tasks ----------------------------------------------------------------------
    async def _dial(self, link: int) -> None:
        src = self.sources[link]
        try:
            if self._given_stream is not None:
                stream = self._given_stream
                self._given_stream = None
            else:
                stream = await asyncio.wait_for(
                    self.swarm.host.open_stream(src.peer_id, src.addrs, PROTOCOL),
                    self.swarm.host.config.handshake_timeout,
                )
        except (*STREAM_ERRORS, TimeoutError, ValueError) as exc:
            self.core.link_closed(link, f"dial failed: {exc}", time.monotonic())
            self._pump()
            return
        self._streams[link] = stream
        self._outbox[link] = deque()
        self._wakes[link] = asyncio.Event()
        self._spawn(self._writer(link, stream), f"swarm writer {link}")
        self._spawn(self._reader(link, stream), f"swarm reader {link}")
        self.core.link_opened(link, time.monotonic())
        self._pump()

    async def _writer(self, link: int, stream: Stream) -> None:
        box, wake = self._outbox[link], self._wakes[link]
        try:
            while link in self._outbox:
                if box:
                    # Everything queued goes out in one write: one record, one syscall.
                    frames = [wire.encode(msg) for msg in box]
                    box.clear()
                    await stream.write(
                        b"".join(len(f).to_bytes(MSG_LENGTH_BYTES, "big") + f for f in frames)
                    )
                    continue
                wake.clear()
                await wake.wait()
        except STREAM_ERRORS as exc:
            if self._streams.get(link) is stream:
                self.core.link_closed(link, f"send failed: {exc}", time.monotonic())
                self._pump()

    async def _reader(self, link: int, stream: Stream) -> None:
        core, src = self.core, self.sources[link]
        counter = self._peer_counters[src.peer_id]
        choker = self.swarm._choker
        try:
            while True:
                msg = await stream.recv_msg(WIRE)
                now = time.monotonic()
                if isinstance(msg, Chunk):
                    expected = core.expected_length(link, msg.index)
                    if expected is None or msg.length != expected:
                        core.protocol_error(
                            link, f"unexpected chunk {msg.index} of {msg.length} bytes", now
                        )
                        self._pump()
                        return
                    data = await stream.readexactly(msg.length)
                    now = time.monotonic()
                    counter.inc(len(data))
                    self._received[src.peer_id] = self._received.get(src.peer_id, 0) + len(data)
                    choker.record(src.peer_id, received=len(data))
                    core.chunk_received(link, msg.index, data, now)
                else:
                    core.message_received(link, msg, now)
                self._pump()
                self._maybe_save()
        except errors.DecodeError as exc:
            if self._streams.get(link) is stream:
                core.protocol_error(link, str(exc), time.monotonic())
                self._pump()
        except STREAM_ERRORS as exc:
            if self._streams.get(link) is stream:
                core.link_closed(link, f"{type(exc).__name__}: {exc}", time.monotonic())
                self._pump()

    async def _timer_loop(self) -> None:
        while not self.core.done:
            deadline = self.core.get_timer()
            now = time.monotonic()
            if deadline is not None and deadline <= now:
                self.core.handle_timer(now)
                self._pump()
                continue
            self._timer_wake.clear()
            timeout = self.config.state_save_interval
            if deadline is not None:
                timeout = min(timeout, deadline - now)
            self._sleep_until = now + timeout
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wake.wait(), timeout)
            self._maybe_save()

    # -- resume ------------------------------------------------------------------------------
    def _maybe_save(self) -> None:
        if (
            self.resume is not None
            and self._dirty
            and (self._saving is None or self._saving.done())
            and time.monotonic() - self._last_save >= self.config.state_save_interval
        ):
            self._saving = self._spawn(self._save(), "swarm save state")

    async def _save(self, *, final: bool = False) -> None:
        if self.resume is None or not self._dirty:
            return
        self._dirty = False
        self._last_save = time.monotonic()
        snapshot = {
            share: replace(p, done=Bitfield(p.done.size, p.done.to_bytes()))
            for share, p in self.core.progress().items()
        }
        # Data first, then the state that mentions it (module docstring of node.swarm.sink);
        # the writes the snapshot covers are done (they are made inline), so a thread may
        # fsync them while the download goes on.
        if final:
            self.sink.flush()
            self.resume.save(snapshot)
        else:
            await asyncio.to_thread(self.sink.flush)
            await asyncio.to_thread(self.resume.save, snapshot)
