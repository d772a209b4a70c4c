"""The contract between a sans-IO protocol core and whatever drives it.

A core (SWIM, anti-entropy, the spreading coordinator) never reads a clock, sleeps or touches a socket.
Its driver -- the trio agent, the discrete-event simulator, or a unit test -- feeds it ``(now, input)``
and performs the actions it returns. ``now`` is seconds on a monotonic clock chosen by the driver.

Reliable exchanges (push-pull, anti-entropy ranges) are request/response over a stream: the core emits
``SendStream`` with a token of its choosing; the driver delivers the request to the remote core's
``handle_stream_request`` and later calls ``handle_stream_reply(now, token, reply)`` on the sender,
with ``reply=None`` when the exchange failed (timeout, refused, undecodable).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

Addr = tuple[str, int]

# Actions are frozen msgspec Structs rather than frozen dataclasses: a core builds one per packet and per
# event (millions in a simulation), and a frozen dataclass's ``__init__`` costs several times more.
# ``gc=False``: they hold messages and events, never a reference back to anything that holds them.


class SendPacket(msgspec.Struct, frozen=True, gc=False):
    """Send ``msgs`` as one unreliable datagram; the core already kept them within the packet budget."""

    addr: Addr
    msgs: tuple[Any, ...]


class SendStream(msgspec.Struct, frozen=True, gc=False):
    """Open a reliable request/response exchange; the answer comes back through ``handle_stream_reply``."""

    addr: Addr
    msg: Any
    token: int


class Emit(msgspec.Struct, frozen=True, gc=False):
    """Tell the layers above about something (a membership change, a fork, a finished sync)."""

    event: Any


Action = SendPacket | SendStream | Emit


class Core(Protocol):
    """What every sans-IO core offers its driver."""

    def handle_packet(self, now: float, src: Addr, msgs: Sequence[Any]) -> list[Action]: ...

    def handle_stream_request(self, now: float, src: Addr, msg: Any) -> tuple[Any | None, list[Action]]: ...

    def handle_stream_reply(self, now: float, token: int, reply: Any | None) -> list[Action]: ...

    def tick(self, now: float) -> list[Action]: ...

    def next_deadline(self) -> float | None: ...
