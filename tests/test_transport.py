"""The sealed UDP/TCP transport on 127.0.0.1 ephemeral ports: good traffic passes, hostile bytes are counted.

Real sockets mean real time, so nothing here waits on a clock: each wait is for an event, bounded by a
generous ``fail_after`` that only turns a hang into a failure.
"""

from __future__ import annotations

import socket as _stdsocket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.net.drive import drive
from engramp2p.net.framing import seal_frame
from engramp2p.net.seal import Keyring, generate_key
from engramp2p.net.transport import Counters, NetTransport
from engramp2p.net.wire import encode_packet
from engramp2p.sansio import Action, Addr, SendPacket, SendStream
from engramp2p.swim.messages import Ack, Nack, Ping

KEY = generate_key()
NODE_A = b"a" * 16
NODE_B = b"b" * 16
GUARD = 10.0  # only turns a hang into a failure


def ping(seq: int) -> Ping:
    return Ping(seq=seq, target=NODE_B, source=NODE_A, source_host="127.0.0.1", source_port=1)


@pytest.fixture
async def pair(nursery: trio.Nursery) -> AsyncIterator[tuple[NetTransport, NetTransport]]:
    a = NetTransport(Keyring([KEY]), tcp_timeout=5.0)
    b = NetTransport(Keyring([KEY]), packet_size=1400, max_frame=4096, tcp_timeout=5.0)
    await nursery.start(a.serve)
    await nursery.start(b.serve)
    yield a, b


async def udp_socket() -> trio.socket.SocketType:
    sock = trio.socket.socket(_stdsocket.AF_INET, _stdsocket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    return sock


async def wait_counters(t: NetTransport, good: NetTransport, pred: Callable[[Counters], bool]) -> None:
    """Keep ``t`` receiving (with ``good`` sending sentinels) until its counters satisfy ``pred``."""
    n = 1000
    with trio.fail_after(GUARD):
        while not pred(t.counters):
            n += 1
            await good.send_packet(t.local_addr, [ping(n)])
            got = await t.receive()
            assert got.src == good.local_addr


async def test_binds_one_port_for_udp_and_tcp(pair: tuple[NetTransport, NetTransport]) -> None:
    a, b = pair
    assert a.local_addr[0] == "127.0.0.1" and a.local_addr[1] > 0
    assert a.local_addr != b.local_addr
    with trio.fail_after(GUARD):
        stream = await trio.open_tcp_stream(*a.local_addr)  # TCP is listening on the UDP port
    await stream.aclose()


async def test_sealed_datagram_round_trip(pair: tuple[NetTransport, NetTransport]) -> None:
    a, b = pair
    with trio.fail_after(GUARD):
        await a.send_packet(b.local_addr, [ping(1), Ack(seq=1), Nack(seq=2)])
        got = await b.receive()
    assert got.src == a.local_addr
    assert got.msgs == (ping(1), Ack(seq=1), Nack(seq=2))
    assert a.counters.packets_out == 1 and b.counters.packets_in == 1
    assert a.counters.bytes_out == b.counters.bytes_in > 0
    # What went over the wire is sealed: the plaintext does not appear in it.
    sniff = await udp_socket()
    await a.send_packet(sniff.getsockname(), [ping(2)])
    with trio.fail_after(GUARD):
        raw, _ = await sniff.recvfrom(2048)
    assert encode_packet([ping(2)]) not in raw and b"127.0.0.1" not in raw
    sniff.close()


async def test_stream_request_response(pair: tuple[NetTransport, NetTransport]) -> None:
    a, b = pair
    seen: list[tuple[Addr, Any]] = []

    async def handler(src: Addr, msg: Any) -> Any | None:
        seen.append((src, msg))
        return Ack(seq=msg.seq) if msg.seq < 100 else None

    b.stream_handler = handler
    with trio.fail_after(GUARD):
        assert await a.request(b.local_addr, ping(7)) == Ack(seq=7)
        assert await a.request(b.local_addr, ping(100)) is None  # handler had no answer
    assert [m for _, m in seen] == [ping(7), ping(100)]
    assert seen[0][0][0] == "127.0.0.1"
    assert a.counters.streams_out == 2 and b.counters.streams_in == 2
    assert a.counters.stream_failures == 1
    b.stream_handler = None
    with trio.fail_after(GUARD):
        assert await a.request(b.local_addr, ping(8)) is None


async def test_stream_connections_are_reused(pair: tuple[NetTransport, NetTransport]) -> None:
    """Sequential exchanges share one pooled connection; a reply-less one closes it, the next reconnects."""
    a, b = pair
    peers: set[Addr] = set()

    async def handler(src: Addr, msg: Any) -> Any | None:
        peers.add(src)
        return Ack(seq=msg.seq) if msg.seq < 100 else None

    b.stream_handler = handler
    with trio.fail_after(GUARD):
        for i in range(5):
            assert await a.request(b.local_addr, ping(i)) == Ack(seq=i)
        assert len(peers) == 1  # one source port: one connection carried all five
        assert len(a._pool[b.local_addr]) == 1
        assert await a.request(b.local_addr, ping(100)) is None  # no reply: that connection is closed
        assert not a._pool.get(b.local_addr)
        assert await a.request(b.local_addr, ping(7)) == Ack(seq=7)
    assert len(peers) == 2
    assert b.counters.streams_in == 7 and a.counters.streams_out == 7
    assert a.counters.stream_failures == 1 and b.counters.stream_failures == 0


async def test_pooled_connection_closed_by_the_server_is_not_used(nursery: trio.Nursery) -> None:
    """The server drops idle connections after ``idle_timeout``; the requester notices before sending."""
    a = NetTransport(Keyring([KEY]), tcp_timeout=5.0)
    b = NetTransport(Keyring([KEY]), tcp_timeout=5.0, idle_timeout=0.05)
    await nursery.start(a.serve)
    await nursery.start(b.serve)
    b.stream_handler = _ack_handler
    with trio.fail_after(GUARD):
        assert await a.request(b.local_addr, ping(1)) == Ack(seq=1)
        [(stream, _)] = a._pool[b.local_addr]
        while b._open_inbound:  # the server gives up on the idle connection
            await trio.sleep(0.01)
        assert await a.request(b.local_addr, ping(2)) == Ack(seq=2)
        [(fresh, _)] = a._pool[b.local_addr]
    assert fresh is not stream
    assert a.counters.stream_failures == 0 and b.counters.stream_failures == 0


async def test_stream_to_closed_port_and_slow_peer_fail_cleanly(nursery: trio.Nursery) -> None:
    a = NetTransport(Keyring([KEY]), tcp_timeout=0.2)
    b = NetTransport(Keyring([KEY]))
    await nursery.start(a.serve)
    await nursery.start(b.serve)

    async def never(src: Addr, msg: Any) -> Any | None:
        await trio.sleep_forever()

    b.stream_handler = never
    closed = trio.socket.socket(_stdsocket.AF_INET, _stdsocket.SOCK_STREAM)
    await closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with trio.fail_after(GUARD):
        assert await a.request(("127.0.0.1", port), ping(1)) is None
        assert await a.request(b.local_addr, ping(2)) is None  # gives up after tcp_timeout
    assert a.counters.stream_failures == 2


async def test_different_key_is_an_auth_failure(
    pair: tuple[NetTransport, NetTransport], nursery: trio.Nursery
) -> None:
    a, b = pair
    stranger = NetTransport(Keyring([generate_key()]), tcp_timeout=5.0)
    await nursery.start(stranger.serve)
    await stranger.send_packet(b.local_addr, [ping(1)])
    await wait_counters(b, a, lambda c: c.auth_failures == 1)
    assert b.counters.decode_failures == 0

    async def handler(src: Addr, msg: Any) -> Any | None:
        return Ack(seq=1)

    b.stream_handler = handler
    with trio.fail_after(GUARD):
        assert await stranger.request(b.local_addr, ping(1)) is None
    assert b.counters.auth_failures == 2
    assert b.counters.stream_failures == 1
    # A rotation in progress: a keyring holding both keys opens both, seals with its primary.
    both = NetTransport(Keyring([KEY, stranger.keyring.primary or b""]))
    await nursery.start(both.serve)
    with trio.fail_after(GUARD):
        await stranger.send_packet(both.local_addr, [ping(5)])
        assert (await both.receive()).msgs == (ping(5),)


async def test_hostile_datagrams_are_dropped_and_counted(pair: tuple[NetTransport, NetTransport]) -> None:
    a, b = pair
    evil = await udp_socket()
    good = a.keyring.seal(encode_packet([ping(1)]))
    flipped = [
        bytes(good[:i]) + bytes([good[i] ^ (1 << (i % 8))]) + bytes(good[i + 1 :]) for i in range(len(good))
    ]
    auth_bad = [b"", b"\x00", b"garbage" * 10, good[:20], good[:-1], good + b"x", *flipped]
    decode_bad = [
        a.keyring.seal(b"\xc1"),  # sealed but not msgpack
        a.keyring.seal(b"\x91\xa3abc"),  # a list holding something that is not a message
        a.keyring.seal(b"\xdd\xff\xff\xff\xff"),  # array header claiming 4 G items
    ]
    oversized = [a.keyring.seal(b"\x90" + b"\x00" * 1500), b"\x00" * 4000]
    for data in [*auth_bad, *decode_bad, *oversized]:
        await evil.sendto(data, b.local_addr)
    await wait_counters(
        b,
        a,
        lambda c: (
            (c.auth_failures, c.decode_failures, c.oversize)
            == (len(auth_bad), len(decode_bad), len(oversized))
        ),
    )
    evil.close()


async def test_oversized_frame_header_is_rejected_before_the_body(
    pair: tuple[NetTransport, NetTransport],
) -> None:
    """The server must close after the 4-byte header alone; waiting for the body would hang till the guard."""
    a, b = pair
    b.stream_handler = _unreachable_handler
    with trio.fail_after(GUARD):
        stream = await trio.open_tcp_stream(*b.local_addr)
        async with stream:
            await stream.send_all(struct.pack(">I", b.max_frame + 1))
            assert await _read_to_eof(stream) == b""
    assert b.counters.oversize == 1 and b.counters.stream_failures == 1


async def test_hostile_stream_frames_are_counted(pair: tuple[NetTransport, NetTransport]) -> None:
    a, b = pair
    b.stream_handler = _unreachable_handler
    frames = [
        struct.pack(">I", 10) + b"0123456789",  # not sealed
        struct.pack(">I", 10) + b"01234",  # truncated, then EOF
        seal_frame(a.keyring, ping(1))[:-1] + b"\x00",  # bit-flipped tag
        struct.pack(">I", 5) + b"EP\x01\x01x",  # right magic, too short
    ]
    with trio.fail_after(GUARD):
        for data in frames:
            stream = await trio.open_tcp_stream(*b.local_addr)
            async with stream:
                await stream.send_all(data)
                await stream.send_eof()
                assert await _read_to_eof(stream) == b""
        sealed_junk = a.keyring.seal(b"\xc1")
        stream = await trio.open_tcp_stream(*b.local_addr)
        async with stream:
            await stream.send_all(struct.pack(">I", len(sealed_junk)) + sealed_junk)
            assert await _read_to_eof(stream) == b""
    assert b.counters.auth_failures == 3
    assert b.counters.decode_failures == 1
    assert b.counters.stream_failures == 5
    # ... and the transport still serves a well-behaved peer.
    b.stream_handler = _ack_handler
    with trio.fail_after(GUARD):
        assert await a.request(b.local_addr, ping(3)) == Ack(seq=3)


async def test_reply_frame_over_max_frame_is_refused(nursery: trio.Nursery) -> None:
    big = NetTransport(Keyring([KEY]))
    small = NetTransport(Keyring([KEY]), max_frame=64)
    await nursery.start(big.serve)
    await nursery.start(small.serve)

    async def huge(src: Addr, msg: Any) -> Any | None:
        return Ping(seq=1, target=NODE_B, source=NODE_A, source_host="h" * 200, source_port=1)

    big.stream_handler = huge
    with trio.fail_after(GUARD):
        assert await small.request(big.local_addr, ping(1)) is None
    assert small.counters.oversize == 1


async def test_overfull_packet_is_a_local_error(pair: tuple[NetTransport, NetTransport]) -> None:
    a, b = pair
    with pytest.raises(ValueError):
        await a.send_packet(b.local_addr, [ping(i) for i in range(60)])


async def test_drive_on_real_sockets(pair: tuple[NetTransport, NetTransport], nursery: trio.Nursery) -> None:
    """The driver over the real transport: a ping answered by datagram, a stream answered by frame."""
    a, b = pair

    class Pinger:
        def __init__(self, peer: Addr) -> None:
            self.peer = peer
            self.deadline: float | None = trio.current_time()
            self.got: list[Any] = []
            self.done = trio.Event()

        def next_deadline(self) -> float | None:
            return self.deadline

        def tick(self, now: float) -> list[Action]:
            self.deadline = None
            return [SendPacket(self.peer, (ping(1),)), SendStream(self.peer, ping(2), token=9)]

        def handle_packet(self, now: float, src: Addr, msgs: Any) -> list[Action]:
            self.got.extend(msgs)
            if len(self.got) == 2:
                self.done.set()
            return []

        def handle_stream_request(self, now: float, src: Addr, msg: Any) -> tuple[Any, list[Action]]:
            return None, []

        def handle_stream_reply(self, now: float, token: int, reply: Any) -> list[Action]:
            self.got.append((token, reply))
            if len(self.got) == 2:
                self.done.set()
            return []

    class Ponger(Pinger):
        def handle_packet(self, now: float, src: Addr, msgs: Any) -> list[Action]:
            return [SendPacket(src, tuple(Ack(seq=m.seq) for m in msgs))]

        def handle_stream_request(self, now: float, src: Addr, msg: Any) -> tuple[Any, list[Action]]:
            return Ack(seq=msg.seq), []

    pinger, ponger = Pinger(b.local_addr), Ponger(a.local_addr)
    ponger.deadline = None
    await nursery.start(drive, pinger, a)
    await nursery.start(drive, ponger, b)
    with trio.fail_after(GUARD):
        await pinger.done.wait()
    assert sorted(map(repr, pinger.got)) == sorted(map(repr, [Ack(seq=1), (9, Ack(seq=2))]))


async def _unreachable_handler(src: Addr, msg: Any) -> Any | None:
    raise AssertionError(f"hostile frame reached the handler: {msg!r}")


async def _ack_handler(src: Addr, msg: Any) -> Any | None:
    return Ack(seq=msg.seq)


async def _read_to_eof(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(4096):
        data += chunk
    return bytes(data)


# -- properties of the datagram gate (no sockets: ``accept`` is the sans-IO half of ``receive``) ----------

GATE = NetTransport(Keyring([KEY]), packet_size=1400)
GOOD = GATE.keyring.seal(encode_packet([ping(1), Ack(seq=2)]))


def _reasons(c: Counters) -> int:
    return c.oversize + c.auth_failures + c.decode_failures


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=1600))
def test_arbitrary_bytes_are_counted_once_and_never_raise(data: bytes) -> None:
    before = GATE.counters.snapshot()
    assert GATE.accept(data) is None
    after = GATE.counters
    assert after.packets_in == before["packets_in"] + 1
    assert after.bytes_in == before["bytes_in"] + len(data)
    assert _reasons(after) == before["oversize"] + before["auth_failures"] + before["decode_failures"] + 1


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(0, len(GOOD) - 1), bit=st.integers(0, 7))
def test_any_bit_flip_is_an_auth_failure(pos: int, bit: int) -> None:
    flipped = bytearray(GOOD)
    flipped[pos] ^= 1 << bit
    before = GATE.counters.auth_failures
    assert GATE.accept(bytes(flipped)) is None
    assert GATE.counters.auth_failures == before + 1
    assert GATE.accept(GOOD) == (ping(1), Ack(seq=2))


@settings(max_examples=200, deadline=None)
@given(plain=st.binary(max_size=1300))
def test_authentic_garbage_is_a_decode_failure(plain: bytes) -> None:
    before = GATE.counters.snapshot()
    got = GATE.accept(GATE.keyring.seal(plain))
    if got is None:
        assert GATE.counters.decode_failures == before["decode_failures"] + 1
        assert GATE.counters.auth_failures == before["auth_failures"]


async def test_idle_pooled_connections_to_a_silent_peer_are_closed(nursery: trio.Nursery) -> None:
    """Pooled connections to a peer we no longer talk to are closed once too old to reuse (any later
    exchange sweeps the whole pool), instead of holding a file descriptor for as long as we run."""
    a = NetTransport(Keyring([KEY]), tcp_timeout=5.0, idle_timeout=0.2)
    b = NetTransport(Keyring([KEY]), tcp_timeout=5.0)
    c = NetTransport(Keyring([KEY]), tcp_timeout=5.0)
    for t in (a, b, c):
        await nursery.start(t.serve)
    b.stream_handler = c.stream_handler = _ack_handler
    with trio.fail_after(GUARD):
        assert await a.request(b.local_addr, ping(1)) == Ack(seq=1)
        [(stream, _)] = a._pool[b.local_addr]
        await trio.sleep(0.15)  # older than idle_timeout / 2: never reused, so not worth keeping
        assert await a.request(c.local_addr, ping(2)) == Ack(seq=2)
    assert b.local_addr not in a._pool
    assert stream.socket.fileno() == -1  # closed
    assert len(a._pool[c.local_addr]) == 1
