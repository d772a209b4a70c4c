"""Real ``python -m engramp2p agent`` processes on 127.0.0.1 for the multi-process tests.

Ports are chosen by binding port 0 (TCP and UDP on the same number) and releasing it just before the
agent starts; every wait polls with a deadline; every process started here is killed by ``kill_all``
(the fixtures' teardown), whatever the test did.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from engramp2p.commands.demo import any_free_port

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 right now."""
    return any_free_port()


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.pop("ENGRAMP2P_CONFIG", None)
    return e


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run one ``engramp2p`` command in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "engramp2p", *args],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout,
    )


def wait_for(pred: Callable[[], T], timeout: float, what: str, step: float = 0.1) -> T:
    """Poll ``pred`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = pred()
        except Exception as exc:  # an agent not up yet, a socket not there yet
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(step)


class Agent:
    def __init__(
        self,
        name: str,
        data_dir: Path,
        key: str,
        join: list[str] | None = None,
        *,
        config: Path | None = None,
        client_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.key = key
        self.join = join or []
        self.config = config
        self.client_timeout = client_timeout
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{name}.log"

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Agent:
        argv = [sys.executable, "-m", "engramp2p", "agent", "--name", self.name, "--bind", self.addr,
                "--data-dir", str(self.data_dir), "--profile", "local", "--key", self.key, "--log-level", "debug"]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        for seed in self.join:
            argv += ["--join", seed]
        log = open(self.log_path, "ab")  # noqa: SIM115 -- owned by the child for its lifetime
        try:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env(), stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        return self

    def client(self, timeout: float | None = None) -> Any:
        from engramp2p.api.client import Client, control_path

        return Client(control_path(self.data_dir), timeout=self.client_timeout if timeout is None else timeout)

    def call(self, fn: Callable[[Any], T]) -> T:
        with self.client() as c:
            return fn(c)

    def wait_ready(self, timeout: float = 30.0) -> Agent:
        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"agent {self.name} exited with {self.proc.returncode}:\n{self.log()}")
            return self.call(lambda c: c.info()).name == self.name

        deadline = time.monotonic() + timeout
        while True:
            try:
                if up():
                    return self
            except AssertionError:
                raise
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"agent {self.name} not up after {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def states(self) -> dict[str, tuple[str, int]]:
        return {m.name: (m.state, m.incarnation) for m in self.call(lambda c: c.members())}

    def info(self) -> Any:
        return self.call(lambda c: c.info())

    def info_json(self) -> dict[str, Any]:
        out = cli("info", "--data-dir", str(self.data_dir), "--json")
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"
