"""Where `engramp2p top` gets its data: a small interface, so the UI runs against a fake cluster in tests
and in ``--demo-data`` exactly as it runs against a live agent.

A source answers polls with a ``Snapshot`` and streams ``Event``s. Any failure to reach the agent is a
``SourceError`` (or an ``OSError``/trio stream error, which the app treats the same): the app then shows
"agent unreachable — retrying" and keeps polling, so a source never needs to reconnect by itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import trio

from engramp2p.ui.shapes import Event, Snapshot


class SourceError(Exception):
    """The agent could not be reached, or broke off; the message is one line for the status bar."""


# Everything the app treats as "the agent went away" rather than as a bug in the UI.
UNREACHABLE: tuple[type[BaseException], ...] = (
    SourceError,
    OSError,
    EOFError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


class TopSource(Protocol):
    """What the UI needs from an agent."""

    label: str  # shown in the status bar: the socket path, or "demo"

    async def snapshot(self) -> Snapshot:
        """Poll the member table and the agent's info once."""
        ...

    def events(self) -> AsyncIterator[Event | None]:
        """Subscribe to the event stream; ``None`` marks an event that did not fit its shape (counted,
        not shown). The iterator ends or raises when the connection is lost; the app resubscribes."""
        ...

    async def aclose(self) -> None: ...
