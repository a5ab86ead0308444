"""Socket tests of node.transport on 127.0.0.1 ephemeral ports, including hostile peers."""

import asyncio
import logging
import struct
from dataclasses import dataclass
from typing import Annotated

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node import errors, runtime
from node.config import MuxConfig, TransportConfig
from node.identity import NodeKey
from node.metrics import render_prometheus
from node.mux import HEADER, Flag, FrameType, Mux
from node.noise import STATIC_KEY_DOMAIN, Handshake, IdentityPayload, public_bytes
from node.transport import Host
from node.wire import MaxLen, encode, message

PROLOGUE = b"depot/1"
FAST = TransportConfig(
    handshake_timeout=1.0,
    write_timeout=0.5,
    request_timeout=5.0,
    max_message=64 * 1024,
    write_buffer_high=64 * 1024,
    mux=MuxConfig(keepalive_interval=0.3, ping_timeout=0.3),
)


@message(protocol="test-transport", tag=1)
@dataclass(frozen=True)
class Echo:
    text: Annotated[str, MaxLen(1000)]
    n: int


LOOP = {"uvloop": False}


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def event_loop_kind(request):
    """Every socket test runs on the standard loop and on uvloop (what nodes use)."""
    LOOP["uvloop"] = request.param == "uvloop"
    yield request.param
    LOOP["uvloop"] = False


def run(coro):
    return runtime.run(asyncio.wait_for(coro, 30), use_uvloop=LOOP["uvloop"])


async def until(predicate, limit=5.0):
    """Poll a condition (no timing assertion: ``limit`` only bounds a hang)."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 (the condition is another object's state)
            await asyncio.sleep(0.01)


async def echo_handler(stream):
    data = await stream.read()
    await stream.write(data)


async def reply_handler(stream):
    msg = await stream.recv_msg("test-transport")
    await stream.send_msg(Echo(msg.text.upper(), msg.n + 1))


async def make_server(config=FAST, **handlers):
    server = Host(NodeKey.generate(), config)
    addr = await server.listen("127.0.0.1", 0)
    server.set_handler("/echo", echo_handler)
    server.set_handler("/reply", reply_handler)
    for name, handler in handlers.items():
        server.set_handler(name, handler)
    return server, addr


async def check_still_serving(server, addr):
    """A fresh, honest client still gets answers."""
    client = Host(NodeKey.generate(), FAST)
    try:
        reply = await client.request(server.node_id, [addr], "/reply", Echo("ok", 1))
        assert reply == Echo("OK", 2)
    finally:
        await client.close()


async def raw_handshake(addr, handshake=None, key=None):
    """A hand-driven dialer (a peer we control byte by byte)."""
    reader, writer = await asyncio.open_connection(*addr)
    hs = handshake or Handshake(
        key or NodeKey.generate(), X25519PrivateKey.generate(), initiator=True, prologue=PROLOGUE
    )
    writer.write(hs.data_to_send())
    while hs.result is None:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("closed during handshake")
        hs.receive_data(data)
        writer.write(hs.data_to_send())
    return reader, writer, hs.result


async def closed_by_peer(reader):
    """Read until EOF (or reset); True once the peer closed the connection."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    return True


# -- the happy paths ---------------------------------------------------------------------


def test_echo_and_peer_ids():
    async def main():
        server, addr = await make_server()
        client = Host(NodeKey.generate(), FAST)
        seen = []
        server.set_handler("/who", lambda s: _record_peer(s, seen))
        try:
            async with await client.open_stream(server.node_id, [addr], "/echo") as s:
                assert s.peer_id == server.node_id
                await s.write(b"hello " * 10_000)
                await s.close()
                assert await s.read() == b"hello " * 10_000
            s = await client.open_stream(None, [addr], "/who")
            await s.close()
            assert await s.read() == b""
            assert seen == [client.node_id]
        finally:
            await client.close()
            await server.close()

    run(main())


async def _record_peer(stream, seen):
    seen.append(stream.peer_id)


def test_request_response_and_connection_reuse():
    async def main():
        server, addr = await make_server()
        client = Host(NodeKey.generate(), FAST)
        connected, disconnected = [], []
        client.on_peer_connected(lambda peer, a: connected.append(peer))
        client.on_peer_disconnected(lambda peer, a: disconnected.append(peer))
        try:
            replies = await asyncio.gather(
                *(client.request(server.node_id, [addr], "/reply", Echo("x", i)) for i in range(20))
            )
            assert replies == [Echo("X", i + 1) for i in range(20)]
            assert connected == [server.node_id]
            assert client.connected_peers() == [server.node_id]
            assert len(client._conns) == 1  # one connection carried all 20 streams
            await server.close()
            await until(lambda: disconnected == [server.node_id])
            assert client.connected_peers() == []
        finally:
            await client.close()
            await server.close()

    run(main())


def test_many_concurrent_streams_keep_data_apart():
    async def main():
        server, addr = await make_server()
        client = Host(NodeKey.generate(), FAST)

        async def one(i):
            payload = bytes([i]) * (150_000 + i)
            s = await client.open_stream(server.node_id, [addr], "/echo")
            await s.write(payload)
            await s.close()
            assert await s.readexactly(len(payload)) == payload
            assert await s.read() == b""

        try:
            await asyncio.gather(*(one(i) for i in range(30)))
        finally:
            await client.close()
            await server.close()

    run(main())


def test_slow_reader_stalls_only_its_stream():
    async def main():
        stalled = asyncio.Event()

        async def never_reads(stream):
            stalled.set()
            await asyncio.sleep(3600)

        async def sink(stream):
            total = 0
            while chunk := await stream.read(1 << 20):
                total += len(chunk)
            await stream.write(total.to_bytes(8, "big"))

        config = FAST.replace(write_timeout=10.0)
        server, addr = await make_server(config, **{"/stall": never_reads, "/sink": sink})
        client = Host(NodeKey.generate(), config)
        try:
            slow = await client.open_stream(server.node_id, [addr], "/stall")
            writer = asyncio.ensure_future(slow.write(bytes(20 * 1024 * 1024)))
            await stalled.wait()
            fast = await client.open_stream(server.node_id, [addr], "/sink")
            size = 3 * config.mux.stream_window
            await fast.write(bytes(size))
            await fast.close()
            assert int.from_bytes(await fast.readexactly(8), "big") == size
            assert not writer.done()  # the stalled stream waits for credit...
            writer.cancel()
        finally:
            await client.close()
            await server.close()

    run(main())


def test_metrics_are_counted_and_exported():
    async def main():
        server, addr = await make_server()
        client = Host(NodeKey.generate(), FAST)
        try:
            await client.request(server.node_id, [addr], "/reply", Echo("m", 0))
        finally:
            await client.close()
            await server.close()
        assert client.registry.value("depot_transport_sent_bytes_total") > 0
        assert server.registry.value("depot_transport_received_bytes_total") > 0
        opened = client.registry.value
        assert opened("depot_transport_connections_opened_total", direction="outbound") == 1
        streams = server.registry.value
        assert streams("depot_transport_streams_opened_total", direction="inbound") == 1
        text = render_prometheus(server.registry)
        assert "# TYPE depot_transport_connections gauge" in text
        assert 'depot_transport_connections_opened_total{direction="inbound"} 1' in text

    run(main())


# -- stream-level faults -------------------------------------------------------------------


def test_unknown_protocol_is_reset_with_reason():
    async def main():
        server, addr = await make_server()
        client = Host(NodeKey.generate(), FAST)
        try:
            s = await client.open_stream(server.node_id, [addr], "/nope/1")
            with pytest.raises(errors.StreamReset, match="unknown protocol /nope/1"):
                await s.read()
            await check_still_serving(server, addr)
        finally:
            await client.close()
            await server.close()

    run(main())


def test_handler_errors_reset_the_stream_and_are_logged(caplog):
    async def bug(stream):
        raise ValueError("a bug in the handler")

    async def strict(stream):
        await stream.recv_msg()  # the client sends a bogus length prefix

    async def main():
        server, addr = await make_server(**{"/bug": bug, "/strict": strict})
        client = Host(NodeKey.generate(), FAST)
        try:
            s = await client.open_stream(server.node_id, [addr], "/bug")
            with pytest.raises(errors.StreamReset, match="internal error"):
                await s.read()
            s = await client.open_stream(server.node_id, [addr], "/strict")
            await s.write(struct.pack(">I", 10**9))  # an oversized message
            with pytest.raises(errors.StreamReset, match="FrameTooLarge"):
                await s.read()
            await check_still_serving(server, addr)
        finally:
            await client.close()
            await server.close()

    with caplog.at_level(logging.INFO, logger="node.transport"):
        run(main())
    assert "a bug in the handler" in caplog.text
    assert "FrameTooLarge" in caplog.text or "exceeds the limit" in caplog.text


def test_readexactly_before_eof_is_end_of_stream():
    async def short(stream):
        await stream.write(b"abc")

    async def main():
        server, addr = await make_server(**{"/short": short})
        client = Host(NodeKey.generate(), FAST)
        try:
            s = await client.open_stream(server.node_id, [addr], "/short")
            with pytest.raises(errors.EndOfStream):
                await s.readexactly(10)
        finally:
            await client.close()
            await server.close()

    run(main())


def test_peer_that_never_grants_credit_times_out_the_writer(caplog):
    """A stream whose reader stops reading: the writer gets PeerTimeout, the node goes on."""

    async def main():
        blocked = asyncio.Event()
        outcome = []

        async def pusher(stream):
            try:
                await stream.write(bytes(FAST.mux.stream_window * 2))
            except errors.PeerTimeout:
                outcome.append("timeout")
                raise
            finally:
                blocked.set()

        server, addr = await make_server(**{"/push": pusher})
        client = Host(NodeKey.generate(), FAST)
        try:
            s = await client.open_stream(server.node_id, [addr], "/push")
            await s.write(b"x")  # the stream exists; we never read it
            await blocked.wait()
            assert outcome == ["timeout"]
            await check_still_serving(server, addr)
        finally:
            await client.close()
            await server.close()

    with caplog.at_level(logging.INFO, logger="node.transport"):
        run(main())
    assert "PeerTimeout" in caplog.text or "flow-control credit" in caplog.text


# -- connection-level faults ------------------------------------------------------------------


def test_expected_peer_id_mismatch_fails_and_server_keeps_serving():
    async def main():
        server, addr = await make_server()
        client = Host(NodeKey.generate(), FAST)
        try:
            with pytest.raises(errors.HandshakeFailed, match="expected"):
                await client.open_stream(NodeKey.generate().node_id, [addr], "/echo")
            assert (
                client.registry.value(
                    "depot_transport_handshake_failures_total", reason="handshake"
                )
                == 1
            )
            await check_still_serving(server, addr)
        finally:
            await client.close()
            await server.close()

    run(main())


def test_garbage_is_dropped_with_a_logged_reason(caplog):
    async def main():
        server, addr = await make_server()
        try:
            reader, writer = await asyncio.open_connection(*addr)
            # A 5-byte "first handshake message": too short for an ephemeral key.
            writer.write(b"\x00\x05hello" + b"GET / HTTP/1.1\r\n\r\n")
            assert await closed_by_peer(reader)
            writer.close()
            await check_still_serving(server, addr)
            assert (
                server.registry.value(
                    "depot_transport_handshake_failures_total", reason="handshake"
                )
                >= 1
            )
        finally:
            await server.close()

    with caplog.at_level(logging.INFO, logger="node.transport"):
        run(main())
    assert "handshake failed" in caplog.text


class ForgingHandshake(Handshake):
    """A dialer whose identity signature covers another static key."""

    def __init__(self, key, *args, **kwargs):
        super().__init__(key, *args, **kwargs)
        other = public_bytes(X25519PrivateKey.generate())
        self._payload = encode(IdentityPayload(key.public_key, key.sign(STATIC_KEY_DOMAIN + other)))


def test_wrong_signature_is_dropped(caplog):
    async def main():
        server, addr = await make_server()
        try:
            forger = ForgingHandshake(
                NodeKey.generate(), X25519PrivateKey.generate(), initiator=True, prologue=PROLOGUE
            )
            reader, writer = await asyncio.open_connection(*addr)
            writer.write(forger.data_to_send())
            forger.receive_data(await reader.read(65536))
            writer.write(forger.data_to_send())  # message 3 with the forged signature
            assert await closed_by_peer(reader)
            writer.close()
            await check_still_serving(server, addr)
        finally:
            await server.close()

    with caplog.at_level(logging.INFO, logger="node.transport"):
        run(main())
    assert "identity signature over the static key does not verify" in caplog.text


async def hold(stream):
    await asyncio.sleep(3600)  # never reads


def test_malformed_and_oversized_frames_drop_the_connection(caplog):
    async def main():
        server, addr = await make_server(**{"/hold": hold})
        try:
            # A well-encrypted record whose frame claims more bytes than the record holds.
            reader, writer, result = await raw_handshake(addr)
            bad = HEADER.pack(0, FrameType.DATA, Flag.SYN, 1, 60_000) + b"/echo"
            writer.write(result.channel.seal(bad))
            assert await closed_by_peer(reader)
            writer.close()
            # A stream that sends past its flow-control window.
            reader, writer, result = await raw_handshake(addr)
            mux = Mux(FAST.mux, initiator=True, now=0.0)
            sid = mux.open_stream("/hold")
            mux._streams[sid].send_window = 10**9  # ignore flow control
            mux.send_data(sid, bytes(FAST.mux.stream_window + 100_000))
            for record in mux.records_to_send():
                writer.write(result.channel.seal(record))
            assert await closed_by_peer(reader)
            writer.close()
            # Bytes that do not authenticate.
            reader, writer, result = await raw_handshake(addr)
            writer.write(b"\x00\x20" + bytes(32))
            assert await closed_by_peer(reader)
            writer.close()
            await check_still_serving(server, addr)
            dropped = server.registry.value
            assert dropped("depot_transport_connections_dropped_total", reason="malformed") == 2
            assert (
                dropped("depot_transport_connections_dropped_total", reason="protocol_violation")
                == 1
            )
        finally:
            await server.close()

    with caplog.at_level(logging.INFO, logger="node.transport"):
        run(main())
    assert "data frame crosses its record" in caplog.text
    assert "exceeded its window" in caplog.text
    assert "does not authenticate" in caplog.text


def test_half_open_connection_is_detected_by_ping_timeout(caplog):
    async def main():
        server, addr = await make_server()
        try:
            reader, writer, _ = await raw_handshake(addr)
            # Then silence: we never answer the server's keepalive pings.
            assert await closed_by_peer(reader)
            writer.close()
            assert (
                server.registry.value("depot_transport_connections_dropped_total", reason="timeout")
                == 1
            )
            await check_still_serving(server, addr)
        finally:
            await server.close()

    with caplog.at_level(logging.INFO, logger="node.transport"):
        run(main())
    assert "half-open" in caplog.text


def test_handshake_timeout(caplog):
    async def main():
        server, addr = await make_server()
        try:
            reader, writer = await asyncio.open_connection(*addr)
            assert await closed_by_peer(reader)  # we said nothing at all
            writer.close()
            assert (
                server.registry.value("depot_transport_handshake_failures_total", reason="timeout")
                == 1
            )
            await check_still_serving(server, addr)
        finally:
            await server.close()

    with caplog.at_level(logging.INFO, logger="node.transport"):
        run(main())
    assert "handshake timed out" in caplog.text


def test_peer_that_stops_reading_the_socket_is_dropped(caplog):
    """A peer grants a huge window, then never reads: the server's write times out."""

    async def flood(stream):
        await stream.write(bytes(64 * 1024 * 1024))

    async def main():
        # Keepalive off the path: the write timeout alone must catch this peer.
        config = FAST.replace(mux=MuxConfig(keepalive_interval=60.0))
        server, addr = await make_server(config, **{"/flood": flood})
        try:
            _reader, writer, result = await raw_handshake(addr)
            sid = 1
            opening = HEADER.pack(0, FrameType.DATA, Flag.SYN, sid, 6) + b"/flood"
            grant = HEADER.pack(0, FrameType.WINDOW_UPDATE, 0, sid, 2**31 - 1 - 256 * 1024)
            writer.write(result.channel.seal(opening + grant))
            # ...and now we do not read: the server's socket buffer fills up.
            await until(
                lambda: (
                    server.registry.value(
                        "depot_transport_connections_dropped_total", reason="write_timeout"
                    )
                    == 1
                ),
                limit=10,
            )
            writer.close()
            await check_still_serving(server, addr)
        finally:
            await server.close()

    with caplog.at_level(logging.INFO, logger="node.transport"):
        run(main())
    assert "peer stopped reading" in caplog.text


def test_per_ip_connection_limit(caplog):
    async def main():
        config = FAST.replace(max_connections_per_ip=1)
        server, addr = await make_server(config)
        first = Host(NodeKey.generate(), FAST)
        second = Host(NodeKey.generate(), FAST)
        try:
            await first.request(server.node_id, [addr], "/reply", Echo("a", 0))
            with pytest.raises(errors.RemoteError):
                await second.request(server.node_id, [addr], "/reply", Echo("b", 0))
            # The first connection is unaffected.
            assert await first.request(server.node_id, [addr], "/reply", Echo("a", 1)) == Echo(
                "A", 2
            )
            assert (
                server.registry.value("depot_transport_connections_dropped_total", reason="limit")
                == 1
            )
        finally:
            await first.close()
            await second.close()
            await server.close()

    with caplog.at_level(logging.INFO, logger="node.transport"):
        run(main())
    assert "per-IP limit" in caplog.text


def test_close_cancels_handlers_and_leaves_no_task():
    async def main():
        started = asyncio.Event()

        async def forever(stream):
            started.set()
            await asyncio.sleep(3600)

        server, addr = await make_server(**{"/forever": forever})
        client = Host(NodeKey.generate(), FAST)
        s = await client.open_stream(server.node_id, [addr], "/forever")
        await s.write(b"x")
        await started.wait()
        assert len(server._tasks) == 1
        await server.close()
        assert not server._tasks
        with pytest.raises(errors.RemoteError):
            await s.read()
        await client.close()
        with pytest.raises(errors.LocalError):
            await client.open_stream(server.node_id, [addr], "/echo")
        leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("handler")]
        assert leftover == []

    run(main())


def test_dial_failures_are_typed():
    async def main():
        client = Host(NodeKey.generate(), FAST)
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        try:
            with pytest.raises(errors.ConnectionClosed):
                await client.open_stream(None, [("127.0.0.1", port)], "/echo")
            with pytest.raises(errors.LocalError):
                await client.open_stream(None, [], "/echo")
        finally:
            await client.close()

    run(main())


def test_readinto_and_read_sizes():
    async def talk(stream):
        await stream.write(bytes(range(256)) * 1000)

    async def main():
        server, addr = await make_server(**{"/talk": talk})
        client = Host(NodeKey.generate(), FAST)
        try:
            s = await client.open_stream(server.node_id, [addr], "/talk")
            got = bytearray()
            buf = bytearray(7000)
            while n := await s.readinto(buf):
                got += buf[:n]
            assert bytes(got) == bytes(range(256)) * 1000
            assert await s.read(10) == b""
        finally:
            await client.close()
            await server.close()

    run(main())


def test_config_validation():
    with pytest.raises(errors.LocalError):
        Host(NodeKey.generate(), TransportConfig(max_connections=0))
    with pytest.raises(errors.LocalError):
        Host(NodeKey.generate(), TransportConfig(mux=MuxConfig(stream_window=1000)))
    with pytest.raises(errors.LocalError):
        Host(NodeKey.generate(), TransportConfig(read_buffer=1000))


def test_runtime_runs_on_either_loop(monkeypatch):
    async def which():
        return type(asyncio.get_running_loop()).__module__

    assert runtime.run(which(), use_uvloop=True).startswith("uvloop")
    monkeypatch.setenv("DEPOT_UVLOOP", "0")
    assert not runtime.uvloop_enabled()
    assert runtime.run(which()).startswith("asyncio")


def test_idle_connection_closes_cleanly():
    async def main():
        config = FAST.replace(mux=MuxConfig(idle_timeout=0.3, keepalive_interval=0.1))
        server, addr = await make_server(config)
        client = Host(NodeKey.generate(), config)
        gone = []
        client.on_peer_disconnected(lambda peer, a: gone.append(peer))
        try:
            await client.request(server.node_id, [addr], "/reply", Echo("i", 0))
            await until(lambda: gone == [server.node_id])
            for host in (client, server):
                dropped = host.registry.metrics()
                assert not any(
                    m.name == "depot_transport_connections_dropped_total" and list(m.children())
                    for m in dropped
                )
            # A new request dials again.
            assert await client.request(server.node_id, [addr], "/reply", Echo("j", 0))
        finally:
            await client.close()
            await server.close()

    run(main())


@message(protocol="test-transport", tag=2)
@dataclass(frozen=True)
class Blob:
    data: bytes


def test_message_larger_than_the_stream_window():
    """readexactly of more than half the window must not wait for credit it never gave."""
    config = FAST.replace(
        max_message=2 * 1024 * 1024, mux=MuxConfig(stream_window=256 * 1024), write_timeout=5.0
    )

    async def blob_echo(stream):
        msg = await stream.recv_msg("test-transport")
        await stream.send_msg(msg)

    async def main():
        server, addr = await make_server(config, **{"/blob": blob_echo})
        client = Host(NodeKey.generate(), config)
        try:
            big = Blob(bytes(range(256)) * 4000)  # ~1 MiB, four windows
            assert await client.request(server.node_id, [addr], "/blob", big) == big
        finally:
            await client.close()
            await server.close()

    run(main())


def test_concurrent_dials_to_one_peer_share_one_connection():
    async def main():
        server, addr = await make_server()
        client = Host(NodeKey.generate(), FAST)
        try:
            streams = await asyncio.gather(
                *(client.open_stream(server.node_id, [addr], "/echo") for _ in range(10))
            )
            assert len({id(s._conn) for s in streams}) == 1
            assert len(client._conns) == 1
            # A cancelled dial does not poison later ones.
            other, other_addr = await make_server()
            task = asyncio.ensure_future(client.open_stream(other.node_id, [other_addr], "/echo"))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            s = await client.open_stream(other.node_id, [other_addr], "/echo")
            await s.close()
            assert await s.read() == b""
            await other.close()
        finally:
            await client.close()
            await server.close()

    run(main())


def test_a_dial_given_up_by_its_owner_does_not_cancel_the_callers_that_joined_it():
    """The owner of a shared dial times out first; the caller that joined it keeps its own
    deadline and gets a typed error, never a CancelledError it did not ask for."""

    async def main():
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # never answers
        addr = silent.sockets[0].getsockname()[:2]
        client = Host(NodeKey.generate(), FAST)
        peer = NodeKey.generate().node_id
        try:
            owner = asyncio.ensure_future(
                asyncio.wait_for(client.open_stream(peer, [addr], "/echo"), 0.2)
            )
            await asyncio.sleep(0.05)
            joined = asyncio.ensure_future(client.open_stream(peer, [addr], "/echo"))
            with pytest.raises(TimeoutError):
                await owner
            with pytest.raises(errors.RemoteError):
                await joined
        finally:
            await client.close()
            silent.close()

    run(main())
