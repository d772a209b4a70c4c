"""``engramp2p demo``: starts real agents, waits for convergence, and leaves nothing behind.

The demo runs as a subprocess exactly as a user runs it; its stderr progress lines name the temporary
root and every agent's pid, which is how these tests check that each process is gone and the root is
deleted afterwards. Waits are deadline-bounded reads of that stream, never sleeps.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engramp2p.commands.demo import any_free_port, pick_ports, port_free

REPO = Path(__file__).resolve().parents[1]


class DemoRun:
    """A running ``engramp2p demo`` whose stderr lines arrive in a queue (read by a thread)."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engramp2p", "demo", "--no-top", "--nodes", "3",
             "--base-port", str(any_free_port()), *args],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_line(self, needle: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line containing {needle!r} within {timeout} s:\n" + "\n".join(self.lines))
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"demo ended before {needle!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if needle in line:
                return line

    def finish(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        while (line := self._q.get(timeout=5)) is not None:
            self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def root(self) -> Path:
        line = next(ln for ln in self.lines if " under " in ln)
        return Path(line.rsplit(" under ", 1)[1])

    def pids(self) -> dict[str, int]:
        out = {}
        for ln in self.lines:
            if " up at " in ln and "(pid " in ln:
                name = ln.split("agent ", 1)[1].split(" ", 1)[0]
                out[name] = int(ln.rsplit("(pid ", 1)[1].rstrip(")"))
        return out


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _kill_leftovers(pids: dict[str, int]) -> None:
    for pid in pids.values():
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_demo_converges_and_cleans_up() -> None:
    demo = DemoRun("--exit-after-converge")
    try:
        demo.wait_line("3/3 agents see all 3 members alive")
        assert demo.finish() == 0, "\n".join(demo.lines)
        pids = demo.pids()
        assert sorted(pids) == ["n1", "n2", "n3"]
        assert all(gone(pid) for pid in pids.values())
        assert not demo.root().exists()
        assert any("stopped; removed" in ln for ln in demo.lines)
    finally:
        demo.kill()
        _kill_leftovers(demo.pids())


@pytest.mark.slow
def test_demo_survives_a_killed_agent_and_ctrl_c_stops_the_rest() -> None:
    demo = DemoRun()
    try:
        demo.wait_line("running; Ctrl-C stops every agent")
        pids = demo.pids()
        os.kill(pids["n3"], signal.SIGKILL)
        demo.wait_line("agent n3 exited")
        demo.proc.send_signal(signal.SIGINT)
        assert demo.finish() == 0, "\n".join(demo.lines)
        assert all(gone(pid) for pid in pids.values())
        assert not demo.root().exists()
    finally:
        demo.kill()
        _kill_leftovers(demo.pids())


def test_busy_ports_are_replaced_by_free_ones() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        assert not port_free(taken)
        ports = pick_ports(3, taken)
    assert taken not in ports
    assert len(set(ports)) == 3
