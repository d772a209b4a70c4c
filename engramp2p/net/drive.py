"""The generic trio driver: one short loop around a sans-IO core, plus a router for several cores.

``drive(core, transport)`` is the only place where a core meets time and sockets. It waits for the
earlier of ``core.next_deadline()`` and an inbound datagram, calls ``tick``/``handle_packet``, and
performs the returned actions. Stream exchanges run as child tasks (a slow peer must not stall probing);
their replies, and inbound stream requests, call into the core from those tasks -- safe because every
core call is synchronous -- and then re-arm the main loop's wait, since the call may have moved the
core's next deadline earlier. This is the ``wire()`` pattern from the stack notes: a cancel scope whose
deadline other tasks may pull in, rather than a second inbox to merge.

``Router`` lets one transport feed several cores (SWIM now, anti-entropy and spreading later): messages
are dispatched by their type, and stream tokens are renamed so cores cannot collide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import trio

from engramp2p.net.transport import Datagram, Transport
from engramp2p.sansio import Action, Addr, Core, Emit, SendPacket, SendStream

MAX_TICKS_WITHOUT_PROGRESS = 10_000
"""Consecutive due ticks with no wait in between before the driver calls the core broken."""

EventSink = Callable[[Any], None] | trio.MemorySendChannel[Any]
Clock = Callable[[], float]


class Driver:
    """Runs one core on one transport; ``stats`` says what it did (useful in ``info`` and tests)."""

    def __init__(
        self,
        core: Core,
        transport: Transport,
        clock: Clock = trio.current_time,
        events: EventSink | None = None,
    ) -> None:
        self.core = core
        self.transport = transport
        self.clock = clock
        self.events = events
        self.stats: dict[str, int] = {
            "ticks": 0,
            "packets": 0,
            "stream_requests": 0,
            "stream_replies": 0,
            "events": 0,
            "events_dropped": 0,
        }
        self._wait: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drive until cancelled. A core that raises is our bug (a local error) and ends the driver."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.transport.stream_handler = self._on_stream_request
            task_status.started()
            try:
                await self._loop()
            finally:
                if self.transport.stream_handler == self._on_stream_request:
                    self.transport.stream_handler = None
                self._nursery = None

    async def _loop(self) -> None:
        stuck = 0
        while True:
            now = self.clock()
            deadline = self.core.next_deadline()
            if deadline is not None and deadline <= now:
                stuck += 1
                if stuck > MAX_TICKS_WITHOUT_PROGRESS:
                    # Under MockClock this would otherwise hang silently; it is the core's bug.
                    raise RuntimeError(
                        f"{type(self.core).__name__} keeps its deadline at or before now={now}"
                    )
                self.stats["ticks"] += 1
                await self._perform(self.core.tick(now))
                await trio.lowlevel.checkpoint()
                continue
            stuck = 0
            datagram: Datagram | None = None
            with trio.CancelScope(deadline=self._trio_deadline(deadline, now)) as scope:
                self._wait = scope
                try:
                    datagram = await self.transport.receive()
                finally:
                    self._wait = None
            if datagram is None:
                continue  # the deadline fired (or was re-armed): look again
            self.stats["packets"] += 1
            await self._perform(self.core.handle_packet(self.clock(), datagram.src, datagram.msgs))

    def _trio_deadline(self, deadline: float | None, now: float) -> float:
        """Translate a core deadline (in ``clock`` time) to trio's clock."""
        if deadline is None:
            return math.inf
        if self.clock is trio.current_time:
            return deadline  # exact: no float drift under MockClock
        return trio.current_time() + (deadline - now)

    def _rearm(self) -> None:
        """A core call from another task may have moved the deadline: make the main wait honour it."""
        scope = self._wait
        if scope is not None:
            scope.deadline = self._trio_deadline(self.core.next_deadline(), self.clock())

    async def _perform(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, SendPacket):
                await self.transport.send_packet(action.addr, action.msgs)
            elif isinstance(action, SendStream):
                assert self._nursery is not None
                self._nursery.start_soon(self._exchange, action)
            elif isinstance(action, Emit):
                self._emit(action.event)
            else:
                raise TypeError(f"core returned an unknown action {action!r}")

    def _emit(self, event: Any) -> None:
        """Hand an event up without ever blocking the protocol: a full channel drops and counts."""
        sink = self.events
        if sink is None:
            return
        if isinstance(sink, trio.MemorySendChannel):
            try:
                sink.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.stats["events_dropped"] += 1
                return
        else:
            sink(event)
        self.stats["events"] += 1

    async def _exchange(self, action: SendStream) -> None:
        reply = await self.transport.request(action.addr, action.msg)  # None on any failure
        self.stats["stream_replies"] += 1
        actions = self.core.handle_stream_reply(self.clock(), action.token, reply)
        self._rearm()
        await self._perform(actions)

    async def _on_stream_request(self, src: Addr, msg: Any) -> Any | None:
        self.stats["stream_requests"] += 1
        reply, actions = self.core.handle_stream_request(self.clock(), src, msg)
        self._rearm()
        await self._perform(actions)
        return reply


async def drive(
    core: Core,
    transport: Transport,
    clock: Clock = trio.current_time,
    events: EventSink | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``core`` on ``transport`` until cancelled; ``events`` receives every ``Emit``."""
    await Driver(core, transport, clock, events).run(task_status=task_status)


class Router:
    """A ``Core`` that fans one transport out to several cores by message type.

    A datagram may carry messages for several cores (piggybacking); each core gets its own messages in
    their original order. Message types nobody claimed are dropped and counted in ``unrouted``: after
    decoding they are well-formed, so this is a peer speaking a feature we do not run, not an attack.
    """

    def __init__(self) -> None:
        self._cores: list[Core] = []
        self._routes: dict[type, int] = {}
        self._tokens: dict[int, tuple[int, int]] = {}
        self._next_token = 0
        self.unrouted = 0

    def add(self, core: Core, types: Iterable[type]) -> None:
        """Route every message of ``types`` to ``core``; claiming a type twice is a local error."""
        index = len(self._cores)
        self._cores.append(core)
        for t in types:
            if t in self._routes:
                raise ValueError(f"{t.__name__} is already routed")
            self._routes[t] = index

    def handle_packet(self, now: float, src: Addr, msgs: Sequence[Any]) -> list[Action]:
        groups: dict[int, list[Any]] = {}
        for msg in msgs:
            index = self._routes.get(type(msg))
            if index is None:
                self.unrouted += 1
            else:
                groups.setdefault(index, []).append(msg)
        actions: list[Action] = []
        for index, mine in groups.items():
            actions += self._wrap(index, self._cores[index].handle_packet(now, src, mine))
        return actions

    def handle_stream_request(self, now: float, src: Addr, msg: Any) -> tuple[Any | None, list[Action]]:
        index = self._routes.get(type(msg))
        if index is None:
            self.unrouted += 1
            return None, []
        reply, actions = self._cores[index].handle_stream_request(now, src, msg)
        return reply, self._wrap(index, actions)

    def handle_stream_reply(self, now: float, token: int, reply: Any | None) -> list[Action]:
        try:
            index, inner = self._tokens.pop(token)
        except KeyError:
            raise ValueError(f"no stream exchange has token {token}") from None
        return self._wrap(index, self._cores[index].handle_stream_reply(now, inner, reply))

    def tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for index, core in enumerate(self._cores):
            deadline = core.next_deadline()
            if deadline is not None and deadline <= now:
                actions += self._wrap(index, core.tick(now))
        return actions

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (core.next_deadline() for core in self._cores) if d is not None]
        return min(deadlines) if deadlines else None

    def _wrap(self, index: int, actions: list[Action]) -> list[Action]:
        """Rename stream tokens so that two cores may both use token 1."""
        out: list[Action] = []
        for action in actions:
            if isinstance(action, SendStream):
                self._next_token += 1
                self._tokens[self._next_token] = (index, action.token)
                action = SendStream(action.addr, action.msg, self._next_token)
            out.append(action)
        return out
