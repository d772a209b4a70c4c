"""The trio side of `engramp2p top`: poll, subscribe, fold, and render off the event loop.

Four tasks share one ``TopModel``: the poller (a snapshot every refresh period; its failures decide the
"agent unreachable" banner), the event subscriber (resubscribes after a loss), the renderer and the
keyboard/signal watchers. Only the event loop mutates the model; the renderer hands an immutable
``View`` to ``Live.refresh`` in a worker thread, because rich spends ~30 ms laying out a 50-row table
and that must not stall the loop (reference/stack.md §5: ``auto_refresh=False`` + ``to_thread`` keeps
loop lag ~14 ms where rich's own refresh thread costs 80+ ms).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Sequence

import trio
from rich.console import Console
from rich.live import Live

from engramp2p.ui.model import TopModel
from engramp2p.ui.render import DEFAULT_PANELS, Dashboard, SidePanel
from engramp2p.ui.source import UNREACHABLE, TopSource

MIN_HZ, MAX_HZ = 0.5, 10.0
MAX_BACKOFF = 2.0  # while the agent is away, retry at least this often so recovery shows quickly


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


class TopApp:
    """One `top` session over one source; ``run()`` returns when the user quits or ``quit()`` is called."""

    def __init__(
        self,
        source: TopSource,
        *,
        refresh_hz: float = 4.0,
        console: Console | None = None,
        wall: Callable[[], float] = time.time,
        panels: Sequence[SidePanel] = DEFAULT_PANELS,
        poll_timeout: float = 2.0,
    ) -> None:
        if not MIN_HZ <= refresh_hz <= MAX_HZ:
            raise ValueError(f"refresh rate must be between {MIN_HZ} and {MAX_HZ} Hz")
        self.source = source
        self.period = 1.0 / refresh_hz
        self.console = console or Console()
        self.wall = wall
        self.panels = tuple(panels)
        self.poll_timeout = poll_timeout
        self.model = TopModel(target=source.label, refresh_hz=refresh_hz)
        self.frames = 0
        self._scope: trio.CancelScope | None = None
        self._quit_requested = False

    def frame(self) -> Dashboard:
        return Dashboard(self.model.view(self.wall()), self.panels)

    def quit(self) -> None:
        self._quit_requested = True
        if self._scope is not None:
            self._scope.cancel()

    def _backoff(self) -> float:
        return min(MAX_BACKOFF, self.period * 2 ** min(self.model.link.failures, 5))

    async def run(self, *, screen: bool = True, keyboard: bool = True, signals: bool = True) -> None:
        """Run until quit. ``keyboard`` reads q from a tty stdin; ``signals`` turns SIGINT/SIGTERM/SIGHUP
        into a clean quit (so the terminal is restored instead of a traceback)."""
        with trio.CancelScope() as scope:
            self._scope = scope
            if self._quit_requested:
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._poll_loop)
                nursery.start_soon(self._event_loop)
                if keyboard:
                    nursery.start_soon(self._keys)
                if signals:
                    nursery.start_soon(self._signals)
                await self._render_loop(screen)
        self._scope = None

    async def _poll_loop(self) -> None:
        while True:
            try:
                with trio.fail_after(self.poll_timeout):
                    snap = await self.source.snapshot()
            except UNREACHABLE as exc:
                reason = "no answer in time" if isinstance(exc, trio.TooSlowError) else _reason(exc)
                self.model.mark_down(self.wall(), reason)
                await trio.sleep(self._backoff())
                continue
            self.model.apply_snapshot(self.wall(), snap)
            await trio.sleep(self.period)

    async def _event_loop(self) -> None:
        failures = 0
        while True:
            try:
                async for ev in self.source.events():
                    failures = 0
                    if ev is None:
                        self.model.count_dropped()
                    else:
                        self.model.apply_event(ev)
            except UNREACHABLE:
                pass  # the poller owns the banner; missed events are covered by the next snapshot
            failures += 1
            await trio.sleep(min(MAX_BACKOFF, self.period * 2 ** min(failures, 5)))

    async def _render_loop(self, screen: bool) -> None:
        # No renderable yet: Live would otherwise lay out its first frame here, on the event loop.
        live = Live(
            None,
            console=self.console,
            screen=screen,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        with live:
            due = trio.current_time()
            while True:
                live.update(self.frame(), refresh=False)
                await trio.to_thread.run_sync(live.refresh)
                self.frames += 1
                # A fixed cadence, but never back to back: a slow frame (a loaded device) costs frames,
                # not the event loop's share of the CPU.
                due = max(due + self.period, trio.current_time() + self.period / 2)
                await trio.sleep_until(due)

    async def _keys(self) -> None:
        """q quits. cbreak keeps ISIG, so Ctrl-C still arrives as SIGINT (handled by ``_signals``)."""
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):
            return
        if not os.isatty(fd):
            return
        import termios
        import tty

        saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            while True:
                await trio.lowlevel.wait_readable(fd)
                data = os.read(fd, 64)
                if not data or b"q" in data.lower():
                    self.quit()
                    return
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as received:
            async for _ in received:
                self.quit()
                return
