import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.config import INITIAL_WINDOW, MuxConfig
from node.errors import DecodeError, FrameTooLarge, LocalError, ProtocolViolation, RemoteError
from node.mux import (
    HEADER,
    HEADER_LEN,
    ConnectionTerminated,
    DataReceived,
    Flag,
    FrameType,
    GoAwayReceived,
    Mux,
    PingAcknowledged,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowIncreased,
)

CFG = MuxConfig(stream_window=INITIAL_WINDOW * 2, max_streams=4)


def pair(config=CFG, now=0.0):
    return Mux(config, initiator=True, now=now), Mux(config, initiator=False, now=now)


def pump(src, dst, now=0.0):
    """Move every queued record from src to dst; return dst's events."""
    for record in src.records_to_send():
        assert len(record) <= src.config.max_record
        dst.receive_record(bytes(record), now)
    events = []
    while (ev := dst.next_event()) is not None:
        events.append(ev)
    return events


def data_of(events, sid):
    return b"".join(
        bytes(e.data) for e in events if isinstance(e, DataReceived) and e.stream_id == sid
    )


def test_open_send_fin_both_ways():
    a, b = pair()
    sid = a.open_stream("/depot/test/1")
    assert sid % 2 == 1
    assert a.send_data(sid, b"hello") == 5
    a.end_stream(sid)
    events = pump(a, b)
    assert events[0] == StreamOpened(sid, "/depot/test/1")
    assert data_of(events, sid) == b"hello"
    assert events[-1] == StreamEnded(sid)
    # The accepter's ACK raised our window to its configured size.
    events = pump(b, a)
    assert a.send_window(sid) == 0  # we half-closed: no more writing
    b.send_data(sid, b"world")
    b.end_stream(sid)
    events = pump(b, a)
    assert data_of(events, sid) == b"world" and events[-1] == StreamEnded(sid)
    assert not a._streams and not b._streams


def test_window_grows_once_the_reader_reads():
    a, b = pair()
    sid = a.open_stream("/p")
    assert a.send_window(sid) == INITIAL_WINDOW
    pump(a, b)
    pump(b, a)
    assert a.send_window(sid) == INITIAL_WINDOW  # accepted, but nobody reads yet
    b.consumed(sid, 0)  # the application starts reading
    events = pump(b, a)
    assert WindowIncreased(sid, CFG.stream_window) in events
    assert a.send_window(sid) == CFG.stream_window


def test_flow_control_blocks_until_consumed():
    a, b = pair()
    sid = a.open_stream("/p")
    pump(a, b)
    b.consumed(sid, 0)
    pump(b, a)
    window = a.send_window(sid)
    assert window == CFG.stream_window
    payload = bytes(range(256)) * (window // 256 + 10)
    sent = a.send_data(sid, payload)
    assert sent == window
    assert a.send_data(sid, payload[sent:]) == 0
    events = pump(a, b)
    assert data_of(events, sid) == payload[:sent]
    # Nothing is returned until the application consumes.
    assert pump(b, a) == []
    b.consumed(sid, sent // 4)  # below the update threshold (half the window)
    assert pump(b, a) == []
    b.consumed(sid, sent - sent // 4)
    events = pump(b, a)
    assert any(isinstance(e, WindowIncreased) for e in events)
    assert a.send_window(sid) == sent
    assert a.send_data(sid, payload[sent:]) == len(payload) - sent


def test_stalled_stream_does_not_block_others():
    a, b = pair()
    slow = a.open_stream("/slow")
    fast = a.open_stream("/fast")
    pump(a, b)
    pump(b, a)
    a.send_data(slow, bytes(a.send_window(slow)))  # fills slow's window, never consumed
    total = 0
    for _ in range(10):
        n = a.send_data(fast, bytes(100_000))
        total += n
        events = pump(a, b)
        b.consumed(fast, len(data_of(events, fast)))
        pump(b, a)
    assert total == 1_000_000
    assert a.send_window(slow) == 0


def test_sender_exceeding_window_is_protocol_violation():
    a, b = pair()
    sid = a.open_stream("/p")
    pump(a, b)
    a._streams[sid].send_window = 10**9  # a peer that ignores flow control
    a.send_data(sid, bytes(CFG.stream_window + 1))
    with pytest.raises(ProtocolViolation, match="exceeded its window"):
        pump(a, b)


def test_records_never_exceed_max_record_and_frames_stay_whole():
    cfg = MuxConfig(stream_window=INITIAL_WINDOW, max_record=1000)
    a, b = pair(cfg)
    sid = a.open_stream("/p")
    blob = bytes(range(256)) * 40
    a.send_data(sid, blob)
    a.ping(0.0)
    events = pump(a, b)
    assert data_of(events, sid) == blob


def test_reset_with_reason_and_late_frames_ignored():
    a, b = pair()
    sid = a.open_stream("/p")
    pump(a, b)
    a.send_data(sid, b"in flight")
    b.reset_stream(sid, "unknown protocol /p")
    assert pump(b, a)[-1] == StreamReset(sid, "unknown protocol /p")
    # a's data was sent before it saw the RST: b ignores it instead of failing.
    assert pump(a, b) == []
    with pytest.raises(LocalError):
        a.send_data(sid, b"x")


def test_max_streams_resets_excess():
    a, b = pair()
    sids = [a.open_stream("/p") for _ in range(CFG.max_streams + 1)]
    events = pump(a, b)
    assert [e.stream_id for e in events if isinstance(e, StreamOpened)] == sids[:-1]
    events = pump(b, a)
    assert StreamReset(sids[-1], "too many streams") in events


def test_protocol_id_too_long_or_not_utf8_resets():
    a, b = pair(MuxConfig(max_protocol_len=8))
    with pytest.raises(LocalError):
        a.open_stream("/a-very-long-protocol")
    assert a.open_stream("/p") == 1
    a.records_to_send()  # replaced by a hand-made opening frame:
    frame = HEADER.pack(0, FrameType.DATA, Flag.SYN, 1, 2) + b"\xff\xfe"
    b.receive_record(frame, 0.0)
    assert b.next_event() is None
    a.receive_record(bytes(b.records_to_send()[0]), 0.0)
    assert a.next_event() == StreamReset(1, "protocol id is not UTF-8")


def test_peer_stream_id_rules():
    _, b = pair()
    with pytest.raises(ProtocolViolation):  # even id from the dialer
        b.receive_record(HEADER.pack(0, FrameType.DATA, Flag.SYN, 2, 1) + b"p", 0.0)
    _, b = pair()
    b.receive_record(HEADER.pack(0, FrameType.DATA, Flag.SYN, 5, 1) + b"p", 0.0)
    with pytest.raises(ProtocolViolation):  # ids must grow
        b.receive_record(HEADER.pack(0, FrameType.DATA, Flag.SYN, 3, 1) + b"p", 0.0)
    _, b = pair()
    with pytest.raises(ProtocolViolation):  # data on a stream never opened
        b.receive_record(HEADER.pack(0, FrameType.DATA, 0, 7, 1) + b"x", 0.0)


def test_malformed_records():
    _, b = pair()
    with pytest.raises(DecodeError):
        b.receive_record(b"\x00" * 5, 0.0)
    with pytest.raises(DecodeError):
        b.receive_record(HEADER.pack(1, 0, 0, 0, 0), 0.0)
    with pytest.raises(DecodeError):
        b.receive_record(HEADER.pack(0, 9, 0, 0, 0), 0.0)
    with pytest.raises(DecodeError):
        b.receive_record(HEADER.pack(0, 0, Flag.SYN, 1, 100) + b"short", 0.0)
    with pytest.raises(FrameTooLarge):
        b.receive_record(bytes(CFG.max_record + 1), 0.0)


def test_ping_keepalive_and_half_open_detection():
    cfg = MuxConfig(keepalive_interval=5.0, ping_timeout=2.0, idle_timeout=1000.0)
    a, b = pair(cfg)
    assert a.get_timer() == 5.0
    a.handle_timer(5.0)
    assert a.get_timer() == 7.0
    pump(a, b, now=5.5)
    events = pump(b, a, now=5.5)
    assert events == [PingAcknowledged(0.5)]
    assert a.get_timer() == 10.5
    # Now the peer goes silent: the next ping is never answered.
    a.handle_timer(10.5)
    a.records_to_send()
    a.handle_timer(12.5)
    assert a.next_event() == ConnectionTerminated(
        "ping timeout: the peer stopped answering (half-open connection)", idle=False
    )
    assert a.get_timer() is None


def test_idle_timeout_sends_go_away():
    cfg = MuxConfig(keepalive_interval=100.0, idle_timeout=30.0)
    a, b = pair(cfg)
    sid = a.open_stream("/p")
    assert a.get_timer() == 100.0  # a stream is open: not idle
    a.reset_stream(sid)
    a.handle_timer(a.get_timer())
    assert a.next_event() == ConnectionTerminated("idle timeout", idle=True)
    assert pump(a, b)[-1] == GoAwayReceived(0)
    assert b.peer_going_away
    with pytest.raises(LocalError):
        b.open_stream("/p")


def test_go_away_refuses_new_inbound_streams():
    a, b = pair()
    b.go_away()
    pump(b, a)
    with pytest.raises(LocalError):
        a.open_stream("/p")


def test_second_fin_and_data_after_fin_are_violations():
    a, b = pair()
    sid = a.open_stream("/p")
    a.end_stream(sid)
    pump(a, b)
    with pytest.raises(ProtocolViolation):
        b.receive_record(HEADER.pack(0, FrameType.DATA, 0, sid, 1) + b"x", 0.0)
    a2, b2 = pair()
    sid = a2.open_stream("/p")
    a2.end_stream(sid)
    pump(a2, b2)
    with pytest.raises(ProtocolViolation):
        b2.receive_record(HEADER.pack(0, FrameType.DATA, Flag.FIN, sid, 0), 0.0)


def test_window_overflow_is_violation():
    a, b = pair()
    sid = a.open_stream("/p")
    pump(a, b)
    with pytest.raises(ProtocolViolation):
        a.receive_record(HEADER.pack(0, FrameType.WINDOW_UPDATE, 0, sid, 2**31 - 1), 0.0)


# -- fuzz ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6))
def test_fuzz_random_records_only_remote_errors(records):
    _, b = pair()
    try:
        for r in records:
            b.receive_record(r, 0.0)
            while b.next_event() is not None:
                pass
            b.records_to_send()
    except RemoteError:
        pass


frame_strategy = st.builds(
    lambda t, f, sid, length, payload: (
        HEADER.pack(0, t, f, sid, length if t else len(payload)) + (payload if t == 0 else b"")
    ),
    st.integers(0, 3),
    st.integers(0, 15),
    st.integers(0, 8),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(frame_strategy, max_size=4).map(b"".join), max_size=8))
def test_fuzz_wellformed_frames_only_remote_errors(records):
    _, b = pair()
    try:
        for r in records:
            b.receive_record(r, 1.0)
            while b.next_event() is not None:
                pass
            b.records_to_send()
            b.handle_timer(2.0)
    except RemoteError:
        pass
    assert b.config.max_streams >= b._peer_streams >= 0


def test_header_len():
    assert HEADER_LEN == 12


# -- property: two muxes under random operations deliver every stream's bytes in order ----

ops = st.lists(
    st.tuples(
        st.sampled_from(["open", "send", "consume", "fin", "reset", "pump_ab", "pump_ba"]),
        st.integers(0, 7),
        st.integers(1, 300_000),
        st.booleans(),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_random_operations_keep_streams_intact(operations):
    cfg = MuxConfig(stream_window=INITIAL_WINDOW * 2, max_streams=6, max_record=4096)
    a, b = pair(cfg)
    sent = {}  # stream id -> bytes sent by a
    got = {}  # stream id -> bytes received by b
    unread = {}  # stream id -> bytes b has not consumed
    ended, was_reset = set(), set()
    muxes = {"a": a, "b": b}

    def pump_to(src, dst_name):
        dst = muxes[dst_name]
        for record in src.records_to_send():
            dst.receive_record(bytes(record), 0.0)
        while (ev := dst.next_event()) is not None:
            if dst_name == "b" and isinstance(ev, DataReceived):
                got[ev.stream_id] = got.get(ev.stream_id, b"") + bytes(ev.data)
                unread[ev.stream_id] = unread.get(ev.stream_id, 0) + len(ev.data)
            elif isinstance(ev, StreamEnded):
                ended.add(ev.stream_id)
            elif isinstance(ev, StreamReset):
                was_reset.add(ev.stream_id)

    for op, index, size, flag in operations:
        ids = sorted(sent)
        sid = ids[index % len(ids)] if ids else None
        if op == "open":
            sid = a.open_stream("/p")
            sent[sid] = b""
        elif op == "send" and sid is not None and a.send_window(sid):
            data = bytes([sid % 251]) * size
            n = a.send_data(sid, data)
            sent[sid] += data[:n]
        elif op == "consume" and sid is not None:
            n = unread.get(sid, 0) if flag else unread.get(sid, 0) // 2
            unread[sid] = unread.get(sid, 0) - n
            b.consumed(sid, n)
        elif op == "fin" and sid is not None and a.send_window(sid) and sid not in was_reset:
            a.end_stream(sid)
        elif op == "reset" and sid is not None and flag:
            b.reset_stream(sid, "test")
            was_reset.add(sid)
        elif op == "pump_ab":
            pump_to(a, "b")
        elif op == "pump_ba":
            pump_to(b, "a")
    pump_to(a, "b")
    for sid, data in sent.items():
        if sid in was_reset:
            assert data.startswith(got.get(sid, b""))  # a prefix arrived, then the reset
        elif sid in b._streams or sid in ended:
            assert got.get(sid, b"") == data
