"""UDP and TCP on one port, every byte sealed: the real network under a driver.

The interface (``Transport``) is what ``drive`` needs and what ``memnet`` imitates: ``receive`` returns
the next good datagram, ``send_packet`` sends one, ``request`` performs a request/response exchange
over TCP, and inbound stream requests go to ``stream_handler``.

Stream connections are reused: a connection carries one exchange at a time (request frame, reply
frame), and after a good exchange the requester keeps it in a small per-peer pool for the next
request to that peer, while the server waits on it for another request frame. Opening, accepting and
closing a TCP connection per exchange cost more CPU than the exchange itself for small requests (a
single replicated write). Reuse changes nothing else: every frame is still sealed, bounded by
``max_frame`` from its header and timed by ``tcp_timeout``; any failure, a handler with no reply
(``None``) or a fault-filtered exchange closes the connection, exactly as before; a pooled connection
the server closed while idle is noticed before it is used (the socket reads as ready), and a request is
never sent twice, so a non-idempotent request (a forwarded write) cannot be applied twice by a retry.

Everything from the network is hostile. A datagram is checked for size (we ask the OS for one byte
more than ``packet_size``, so an oversized one shows itself), then opened, then decoded; a stream
frame's length is checked from its header before any of its body is read. Whatever fails is dropped
and counted in ``counters`` -- ``receive`` and the TCP handler never raise for a remote fault, so a
peer cannot stop our receive loop. Our own faults (a core that over-fills a packet) do raise.

``receive`` reads the UDP socket directly rather than through a queue task: trio's socket calls are
cancel-safe, so the driver can wrap ``receive`` in a deadline and lose nothing, and the kernel buffer
is the queue.
"""

from __future__ import annotations

import select
import socket as _stdsocket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import trio

from engramp2p.net.framing import (
    _LENGTH,
    DEFAULT_MAX_FRAME,
    DEFAULT_PACKET_SIZE,
    LENGTH_PREFIX,
    FrameTooLarge,
    _receive_exactly,
    frame,
    open_frame,
    pack_datagram,
    read_frame,
    seal_frame,
)
from engramp2p.net.seal import Keyring, SealError
from engramp2p.net.wire import WireError, decode_packet, encode_frame
from engramp2p.sansio import Addr

StreamHandler = Callable[[Addr, Any], Awaitable[Any | None]]
"""Answers one inbound stream request; ``None`` means "no reply" and the connection is just closed."""


class TrafficFilter(Protocol):
    """Fault injection hook (``repl.faults``): traffic to or from an address it names is dropped.

    Checked on every send, receive and stream exchange when set; ``None`` (the default) costs one test.
    """

    def drops(self, addr: Addr) -> bool: ...


@dataclass(slots=True)
class Counters:
    """What crossed the wire and what was refused; reported by ``info`` and asserted by tests.

    ``packets_in``/``bytes_in`` count every datagram received, good or bad; each bad one is also counted
    under exactly one reason (``oversize``, ``auth_failures``, ``decode_failures``).
    """

    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    auth_failures: int = 0
    decode_failures: int = 0
    oversize: int = 0
    stream_failures: int = 0
    streams_in: int = 0
    streams_out: int = 0
    send_errors: int = 0
    queue_drops: int = 0
    fault_drops: int = 0

    def snapshot(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Datagram:
    """One received, authenticated and decoded datagram."""

    src: Addr
    msgs: tuple[Any, ...]


class Transport(Protocol):
    """What a driver needs from a network (real sockets or ``memnet``)."""

    local_addr: Addr
    counters: Counters
    stream_handler: StreamHandler | None
    traffic_filter: TrafficFilter | None
    handler_timeout: float

    async def receive(self) -> Datagram: ...

    async def send_packet(self, addr: Addr, msgs: Sequence[Any]) -> None: ...

    async def request(self, addr: Addr, msg: Any, timeout: float | None = None) -> Any | None: ...


class NetTransport:
    """Sealed UDP datagrams and sealed TCP request/response exchanges on one host/port.

    Start it with ``await nursery.start(transport.serve)``, which binds both sockets (``port=0`` picks
    an ephemeral port free for both protocols) and returns the bound address.
    """

    def __init__(
        self,
        keyring: Keyring,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        packet_size: int = DEFAULT_PACKET_SIZE,
        max_frame: int = DEFAULT_MAX_FRAME,
        tcp_timeout: float = 10.0,
        max_inbound_streams: int = 32,
        pool_per_peer: int = 8,
        idle_timeout: float = 60.0,
        max_idle_inbound: int = 128,
    ) -> None:
        self.keyring = keyring
        self.host = host
        self.local_addr: Addr = (host, port)
        self.packet_size = packet_size
        self.max_frame = max_frame
        self.tcp_timeout = tcp_timeout
        self.counters = Counters()
        self.stream_handler: StreamHandler | None = None
        self.traffic_filter: TrafficFilter | None = None
        self.handler_timeout = tcp_timeout
        """How long an inbound request's handler may take once its frame is read (a service whose
        answers wait for a disk commit or for other hosts raises it; reading stays ``tcp_timeout``)."""
        self._port = port
        self._udp: trio.socket.SocketType | None = None
        self._send_lock = trio.Lock()
        # Each inbound stream may buffer up to max_frame bytes: bound how many run at once.
        self._inbound = trio.CapacityLimiter(max_inbound_streams)
        # Connection reuse (module doc). The requester keeps at most ``pool_per_peer`` idle connections
        # per peer and reuses one only while it has been idle for less than half the server's
        # ``idle_timeout``, after which the server would close it; the server keeps at most
        # ``max_idle_inbound`` connections open between exchanges (beyond that it closes after replying).
        self.pool_per_peer = pool_per_peer
        self.idle_timeout = idle_timeout
        self.max_idle_inbound = max_idle_inbound
        self._pool: dict[Addr, list[tuple[trio.SocketStream, float]]] = {}
        self._next_sweep = 0.0
        self._open_inbound = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[Addr] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind UDP and TCP, report the address, and serve inbound streams until cancelled."""
        listener, udp = await self._bind()
        self._udp = udp
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._handle_stream, [listener])
                task_status.started(self.local_addr)
        finally:
            self._udp = None
            udp.close()
            listener.socket.close()
            self.close_pool()

    def close_pool(self) -> None:
        """Close every idle pooled connection (the transport is stopping, or a test wants fresh ones)."""
        pool, self._pool = self._pool, {}
        for conns in pool.values():
            for stream, _ in conns:
                stream.socket.close()

    async def _bind(self) -> tuple[trio.SocketListener, trio.socket.SocketType]:
        infos = await trio.socket.getaddrinfo(self.host, self._port, type=_stdsocket.SOCK_DGRAM)
        family, _, _, _, sockaddr = infos[0]
        host = sockaddr[0]
        # With port 0 the TCP port the OS picks may be taken for UDP: retry a few times.
        attempts = 50 if self._port == 0 else 1
        for attempt in range(attempts):
            tcp = trio.socket.socket(family, _stdsocket.SOCK_STREAM)
            udp = trio.socket.socket(family, _stdsocket.SOCK_DGRAM)
            try:
                tcp.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
                await tcp.bind((host, self._port))
                port = tcp.getsockname()[1]
                await udp.bind((host, port))
                tcp.listen(128)
            except OSError:
                tcp.close()
                udp.close()
                if attempt == attempts - 1:
                    raise
                continue
            self.local_addr = (host, port)
            return trio.SocketListener(tcp), udp
        raise AssertionError("unreachable")

    # -- datagrams ------------------------------------------------------------------------------

    async def receive(self) -> Datagram:
        """The next datagram that passes size, authentication and decoding; the rest are counted."""
        udp = self._udp
        if udp is None:
            raise RuntimeError("transport is not serving; start it with nursery.start(transport.serve)")
        while True:
            try:
                data, addr = await udp.recvfrom(self.packet_size + 1)
            except OSError:
                # e.g. ICMP errors reported on some platforms: not a datagram, not fatal.
                self.counters.send_errors += 1
                await trio.lowlevel.checkpoint()
                continue
            flt = self.traffic_filter
            if flt is not None and flt.drops((addr[0], addr[1])):
                self.counters.fault_drops += 1
                continue
            msgs = self.accept(data)
            if msgs is not None:
                return Datagram((addr[0], addr[1]), msgs)

    def accept(self, data: bytes) -> tuple[Any, ...] | None:
        """The sans-IO half of ``receive``: a datagram's messages, or ``None`` with the reason counted.

        Checks run cheapest first -- size, then authentication, then decoding -- so a flood of forged
        packets costs no decode work.
        """
        c = self.counters
        c.packets_in += 1
        c.bytes_in += len(data)
        if len(data) > self.packet_size:
            c.oversize += 1
            return None
        try:
            return tuple(decode_packet(self.keyring.open(data)))
        except SealError:
            c.auth_failures += 1
        except WireError:
            c.decode_failures += 1
        return None

    async def send_packet(self, addr: Addr, msgs: Sequence[Any]) -> None:
        """Seal and send one datagram; network errors are counted (UDP is lossy anyway)."""
        data = pack_datagram(self.keyring, msgs, self.packet_size)  # PacketTooLarge: our bug, raise
        if self.traffic_filter is not None and self.traffic_filter.drops(addr):
            self.counters.fault_drops += 1
            return
        udp = self._udp
        if udp is None:
            raise RuntimeError("transport is not serving")
        try:
            async with self._send_lock:
                await udp.sendto(data, addr)
        except OSError:
            self.counters.send_errors += 1
            return
        self.counters.packets_out += 1
        self.counters.bytes_out += len(data)

    # -- streams --------------------------------------------------------------------------------

    async def request(self, addr: Addr, msg: Any, timeout: float | None = None) -> Any | None:
        """Send ``msg`` to ``addr`` and return the reply, or ``None`` on any failure.

        Uses an idle pooled connection to ``addr`` when one is usable, else opens one; ``timeout``
        bounds the whole exchange, connecting included (default ``tcp_timeout``). The request is sent at
        most once: a failure after sending is reported as ``None``, never retried here.
        """
        c = self.counters
        c.streams_out += 1
        if self.traffic_filter is not None and self.traffic_filter.drops(addr):
            c.fault_drops += 1
            c.stream_failures += 1
            return None
        request = seal_frame(self.keyring, msg)
        stream = self._take(addr)
        reusable = False
        try:
            with trio.fail_after(self.tcp_timeout if timeout is None else timeout):
                if stream is None:
                    stream = await trio.open_tcp_stream(addr[0], addr[1])
                await stream.send_all(request)
                c.bytes_out += len(request)
                body = await read_frame(stream, self.max_frame)
                if body is None:
                    c.stream_failures += 1  # closed without a reply
                    return None
                c.bytes_in += LENGTH_PREFIX + len(body)
                reply = self._open(body)
                reusable = True
                return reply
        except trio.TooSlowError:
            pass
        except FrameTooLarge:
            c.oversize += 1
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, WireError):
            pass
        finally:
            if stream is not None:
                if reusable:
                    self._give(addr, stream)
                else:
                    stream.socket.close()  # any failure or cancellation: the stream's state is unknown
        c.stream_failures += 1
        return None

    def _take(self, addr: Addr) -> trio.SocketStream | None:
        """An idle pooled connection to ``addr`` that is still open and quiet, or ``None``."""
        conns = self._pool.get(addr)
        if not conns:
            return None
        fresh_after = trio.current_time() - self.idle_timeout / 2
        while conns:
            stream, since = conns.pop()
            if since >= fresh_after and not _readable(stream):
                return stream
            # Idle too long (the server may be closing it), or readable: an EOF or bytes nobody asked for.
            stream.socket.close()
        return None

    def _give(self, addr: Addr, stream: trio.SocketStream) -> None:
        if self._udp is None:  # not serving (stopped, or never started): keep nothing open
            stream.socket.close()
            return
        now = trio.current_time()
        if now >= self._next_sweep:
            self._sweep(now)
        conns = self._pool.setdefault(addr, [])
        if len(conns) >= self.pool_per_peer:
            stream.socket.close()
            return
        conns.append((stream, now))

    def _sweep(self, now: float) -> None:
        """Close pooled connections too old to be reused, for every peer (at most every half idle time).

        ``_take`` only looks at the peer it is asked about, so without this a peer we stop talking to
        (it failed, or came back on another port) would keep its idle connections -- file descriptors
        the server closed long ago -- for as long as we run.
        """
        self._next_sweep = now + self.idle_timeout / 2
        stale_before = now - self.idle_timeout / 2
        for addr in list(self._pool):
            conns = self._pool[addr]
            keep = [(stream, since) for stream, since in conns if since >= stale_before]
            for stream, since in conns:
                if since < stale_before:
                    stream.socket.close()
            if keep:
                self._pool[addr] = keep
            else:
                del self._pool[addr]

    def _open(self, body: bytes) -> Any:
        """Open and decode a frame body, counting which check failed before re-raising."""
        try:
            return open_frame(self.keyring, body)
        except SealError:
            self.counters.auth_failures += 1
            raise
        except WireError:
            self.counters.decode_failures += 1
            raise

    async def _handle_stream(self, stream: trio.SocketStream) -> None:
        """Serve exchanges on one inbound connection: per request frame at most one reply frame.

        The connection stays open for the next request while replies go out, for up to
        ``idle_timeout`` between requests; any failure or a request without a reply closes it. Each
        exchange holds one of ``max_inbound_streams`` slots from its frame header until its reply is
        sent (only then may it buffer a frame); an idle connection holds none.
        """
        async with stream:
            self._open_inbound += 1
            try:
                try:
                    name = stream.socket.getpeername()
                except OSError:  # already reset by the peer
                    self.counters.streams_in += 1
                    self.counters.stream_failures += 1
                    return
                peer: Addr = (name[0], name[1])
                first = True
                while True:
                    keep = await self._serve_one(stream, peer, first)
                    first = False
                    if not keep or self._open_inbound > self.max_idle_inbound:
                        return
            finally:
                self._open_inbound -= 1

    async def _serve_one(self, stream: trio.SocketStream, peer: Addr, first: bool) -> bool:
        """One exchange on an inbound connection; ``True`` when the connection may carry another."""
        c = self.counters
        header: int | WireError | None = None
        if first:
            c.streams_in += 1
            with trio.move_on_after(self.tcp_timeout) as idle:
                header = await _read_header(stream)
            if idle.cancelled_caught:
                c.stream_failures += 1
                return False
        else:
            with trio.move_on_after(self.idle_timeout):
                header = await _read_header(stream)
            if header is None:
                return False  # the requester closed it, or it sat idle too long: a clean end either way
            c.streams_in += 1
        if header is None:
            return False  # connected and closed: a port scan or a health check
        if isinstance(header, WireError):
            c.stream_failures += 1
            return False
        try:
            self._inbound.acquire_on_behalf_of_nowait(stream)
        except trio.WouldBlock:
            c.stream_failures += 1
            return False
        try:
            with trio.move_on_after(self.tcp_timeout) as scope:
                replied = await self._exchange(stream, peer, header, scope)
            if scope.cancelled_caught:
                c.stream_failures += 1
                return False
            return replied
        except FrameTooLarge:
            c.oversize += 1
            c.stream_failures += 1
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, WireError):
            c.stream_failures += 1
        finally:
            self._inbound.release_on_behalf_of(stream)
        return False

    async def _exchange(self, stream: trio.SocketStream, peer: Addr, length: int,
                        scope: trio.CancelScope) -> bool:
        """Read the body of a frame whose header announced ``length``, answer it; ``True`` if answered."""
        if length > self.max_frame:
            raise FrameTooLarge(f"frame header claims {length} bytes, max_frame {self.max_frame}")
        body = await _receive_exactly(stream, length, allow_eof=False) if length else b""
        assert body is not None
        self.counters.bytes_in += LENGTH_PREFIX + len(body)
        if self.handler_timeout > self.tcp_timeout:
            scope.deadline = trio.current_time() + self.handler_timeout
        msg = self._open(body)
        if self.traffic_filter is not None and self.traffic_filter.drops(peer):
            self.counters.fault_drops += 1
            return False
        handler = self.stream_handler
        reply = await handler(peer, msg) if handler is not None else None
        if reply is None:
            return False
        sealed = self.keyring.seal(encode_frame(reply))
        await stream.send_all(frame(sealed))
        self.counters.bytes_out += LENGTH_PREFIX + len(sealed)
        return True


async def _read_header(stream: trio.SocketStream) -> int | WireError | None:
    """The next frame's announced length; ``None`` on a clean close between frames, or the error."""
    try:
        header = await _receive_exactly(stream, LENGTH_PREFIX, allow_eof=True)
    except WireError as exc:
        return exc
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        return WireError("connection failed")
    if header is None:
        return None
    (length,) = _LENGTH.unpack(header)
    return int(length)


def _readable(stream: trio.SocketStream) -> bool:
    """Whether an idle connection has something to read: EOF or an error, since no reply is due."""
    poller = select.poll()
    poller.register(stream.socket.fileno(), select.POLLIN)
    return bool(poller.poll(0))
