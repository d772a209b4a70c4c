"""``engramp2p demo``: a throwaway cluster of real agents on 127.0.0.1, watched through ``top``.

The demo is the quickest honest look at the system: N ordinary ``python -m engramp2p agent``
processes (nothing simulated), each with a temporary data directory, one freshly generated shared key
and the first agent as everyone's seed. It waits until every agent sees every other one alive
(progress on stderr), then runs the ``top`` command in this process against the first agent. Quitting
``top`` (q, Ctrl-C) or a SIGTERM/SIGHUP to the demo stops every agent it started -- SIGTERM (a
graceful leave), then SIGKILL after ``STOP_GRACE`` seconds -- and deletes the temporary directories.

The agents run in sessions of their own so that a Ctrl-C typed at the terminal reaches the demo
only; the demo then shuts them down in order rather than all of them racing to leave at once. Their
logs go to files beside their data directories (tail shown when one fails to start).

``LocalCluster`` is the process manager behind it, also used by ``tools/bench_membership.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

DEFAULT_NODES = 5
MAX_NODES = 32
DEFAULT_BASE_PORT = 7946
READY_TIMEOUT = 30.0
"""Seconds for one agent to answer on its control socket (a cold Python start on a Pi takes a few)."""
CONVERGE_TIMEOUT = 60.0
STOP_GRACE = 10.0
"""Seconds the agents get to leave gracefully after SIGTERM before they are killed."""
START_ATTEMPTS = 3
"""Starts of one agent tried on fresh ports when its port was taken between the check and the bind."""
POLL = 0.05
LOG_TAIL = 2000


def progress(msg: str) -> None:
    print(f"engramp2p demo: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# ports


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if both TCP and UDP ``port`` can be bound on ``host`` right now (the agent needs both)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            # As the agent's listener does: a port whose last connections linger in TIME_WAIT is free.
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, port))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind((host, port))
    except OSError:
        return False
    return True


def any_free_port(host: str = "127.0.0.1", avoid: Sequence[int] = ()) -> int:
    """An ephemeral port free for TCP and UDP alike; the kernel picks it, we check the other protocol."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            if port in avoid:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            return port
    raise OSError("no free port for both TCP and UDP on 127.0.0.1")


def pick_ports(n: int, base: int | None) -> list[int]:
    """``base, base+1, ...`` where free, an ephemeral free port for each one that is taken."""
    ports: list[int] = []
    for i in range(n):
        want = base + i if base is not None and base + i <= 65535 else None
        if want is not None and want not in ports and port_free(want):
            ports.append(want)
        else:
            ports.append(any_free_port(avoid=ports))
    return ports


# ---------------------------------------------------------------------------------------------------
# the processes


def child_env() -> dict[str, str]:
    """The demo's environment, with this engramp2p first on the path so the agents run the same code."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("ENGRAMP2P_CONFIG", None)
    return env


class LocalAgent:
    """One agent process of a ``LocalCluster``: name, port, data directory and log file."""

    def __init__(self, name: str, port: int, data_dir: Path, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, limit: int = LOG_TAIL) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-limit:].rstrip() or "(empty log)"

    def client(self, timeout: float = 2.0) -> Any:
        from engramp2p.api.client import Client, control_path

        return Client(control_path(self.data_dir), timeout=timeout)


class LocalCluster:
    """N agents on 127.0.0.1 under one temporary root; ``close`` stops them and deletes the root.

    Agent 0 is the seed every other agent joins at start (``seeded=False``: each starts alone, to be
    joined later). ``extra_args`` go to every agent's command line (e.g. ``--log-level debug``).
    Use as a context manager: whatever happens, nothing is left behind.
    """

    def __init__(
        self,
        nodes: int,
        *,
        profile: str = "local",
        base_port: int | None = DEFAULT_BASE_PORT,
        key: str | None = None,
        root: Path | None = None,
        extra_args: Sequence[str] = (),
        seeded: bool = True,
        say: Callable[[str], None] = progress,
    ) -> None:
        from engramp2p.net.seal import encode_key, generate_key

        if not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"nodes must be between 1 and {MAX_NODES}")
        self.profile = profile
        self.key = key if key is not None else encode_key(generate_key())
        self.extra_args = list(extra_args)
        self.seeded = seeded
        self.say = say
        ports = pick_ports(nodes, base_port)  # before the root exists: an OSError here leaves nothing
        self.owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="engramp2p-demo-")) if root is None else root
        self.agents = [
            LocalAgent(f"n{i + 1}", port, self.root / f"n{i + 1}", self.root / f"n{i + 1}.log")
            for i, port in enumerate(ports)
        ]
        self.env = child_env()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def seed(self) -> LocalAgent:
        return self.agents[0]

    # -- starting

    def argv(self, agent: LocalAgent) -> list[str]:
        argv = [
            sys.executable, "-m", "engramp2p", "agent",
            "--name", agent.name,
            "--bind", agent.addr,
            "--data-dir", str(agent.data_dir),
            "--profile", self.profile,
            "--key", self.key,
            *self.extra_args,
        ]
        if self.seeded and agent is not self.seed:
            argv += ["--join", self.seed.addr]
        return argv

    def spawn(self, agent: LocalAgent) -> None:
        """Start ``agent``'s process (not waiting for it); in its own session, logging to its file."""
        if agent.running():
            raise RuntimeError(f"agent {agent.name} is already running")
        agent.data_dir.mkdir(parents=True, exist_ok=True)
        with open(agent.log_path, "ab") as log:
            agent.proc = subprocess.Popen(
                self.argv(agent),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        agent.starts += 1

    def ready(self, agent: LocalAgent) -> bool:
        """True once the agent answers ``info`` on its control socket; RuntimeError if it has exited."""
        from engramp2p.api.client import ClientError

        if agent.proc is None or agent.proc.poll() is not None:
            code = None if agent.proc is None else agent.proc.returncode
            raise RuntimeError(f"agent {agent.name} exited with status {code}")
        try:
            with agent.client() as c:
                return bool(c.info().name == agent.name)
        except ClientError:
            return False

    def wait_ready(self, agents: Sequence[LocalAgent], timeout: float = READY_TIMEOUT) -> None:
        """Wait until each agent answers; an agent that lost its port to a race is moved and restarted."""
        pending = list(agents)
        deadline = time.monotonic() + timeout
        while pending:
            for agent in list(pending):
                try:
                    if self.ready(agent):
                        pending.remove(agent)
                        self.say(f"agent {agent.name} up at {agent.addr} (pid {agent.pid})")
                except RuntimeError as exc:
                    tail = agent.log_tail()
                    if "in use" in tail and agent.starts < START_ATTEMPTS:
                        agent.port = any_free_port(avoid=[a.port for a in self.agents])
                        self.say(f"port taken: moving agent {agent.name} to {agent.addr}")
                        self.spawn(agent)
                        continue
                    raise RuntimeError(f"{exc}; its log ends:\n{tail}") from None
            if pending and time.monotonic() > deadline:
                names = ", ".join(a.name for a in pending)
                raise RuntimeError(f"agent(s) {names} did not answer within {timeout:.0f} s")
            if pending:
                time.sleep(POLL)

    def start(self) -> None:
        """The seed first (so the joins find it), then every other agent at once."""
        self.say(f"starting {len(self.agents)} agents (profile {self.profile}) under {self.root}")
        self.spawn(self.seed)
        self.wait_ready([self.seed])
        for agent in self.agents[1:]:
            self.spawn(agent)
        self.wait_ready(self.agents[1:])

    # -- watching

    def alive_counts(self) -> dict[str, int]:
        """How many members each running agent sees alive (itself included); -1 if it does not answer."""
        from engramp2p.api.client import ClientError

        out: dict[str, int] = {}
        for agent in self.agents:
            if not agent.running():
                continue
            try:
                with agent.client() as c:
                    out[agent.name] = sum(1 for m in c.members() if m.state == "alive")
            except ClientError:
                out[agent.name] = -1
        return out

    def wait_converged(self, timeout: float = CONVERGE_TIMEOUT) -> float:
        """Wait until every agent sees all N alive; returns the seconds it took. Reports progress."""
        n = len(self.agents)
        start = time.monotonic()
        last = ""
        while True:
            counts = self.alive_counts()
            for agent in self.agents:
                if not agent.running():
                    raise RuntimeError(f"agent {agent.name} exited; its log ends:\n{agent.log_tail()}")
            done = sum(1 for v in counts.values() if v == n)
            line = f"{done}/{n} agents see all {n} members alive"
            if line != last:
                self.say(line)
                last = line
            if done == n:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"no convergence within {timeout:.0f} s ({line})")
            time.sleep(POLL * 2)

    # -- stopping

    def kill9(self, agent: LocalAgent) -> None:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.send_signal(signal.SIGKILL)
            agent.proc.wait()

    def stop(self, grace: float = STOP_GRACE) -> list[str]:
        """SIGTERM every running agent, SIGKILL what is left after ``grace``; returns the killed names."""
        running = [a for a in self.agents if a.running()]
        for agent in running:
            assert agent.proc is not None
            with contextlib.suppress(ProcessLookupError):
                agent.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        killed: list[str] = []
        for agent in running:
            assert agent.proc is not None
            try:
                agent.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(agent.name)
                with contextlib.suppress(ProcessLookupError):
                    agent.proc.kill()
                agent.proc.wait()
        return killed

    def close(self) -> None:
        """Stop every agent and, if the root is ours, delete it. Safe to call twice."""
        killed = self.stop()
        if killed:
            self.say(f"killed after {STOP_GRACE:.0f} s without exiting: {', '.join(killed)}")
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# the command


def _nodes(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= n <= MAX_NODES:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_NODES}")
    return n


def _port(text: str) -> int:
    try:
        p = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 1 <= p <= 65535:
        raise argparse.ArgumentTypeError("must be between 1 and 65535")
    return p


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="start a local cluster of real agents and watch it live",
        description="Start N agent processes on 127.0.0.1 (temporary data directories, one shared key, "
        "the first agent as seed), wait until they all see each other, and open `top` on the first. "
        "Quitting top (q or Ctrl-C) stops every agent and removes the temporary files. Try killing "
        "one agent (its pid is printed) and watch it turn suspect, then failed.",
    )
    parser.add_argument("--nodes", type=_nodes, default=DEFAULT_NODES, help="agents to start (default 5)")
    parser.add_argument(
        "--base-port", type=_port, default=DEFAULT_BASE_PORT, metavar="P",
        help="first port to try (default 7946); a busy port is replaced by a free one",
    )
    parser.add_argument(
        "--profile", choices=("lan", "wan", "local"), default="local", help="SWIM timing profile (default local)"
    )
    parser.add_argument("--no-top", action="store_true", help="do not open top; run until Ctrl-C")
    parser.add_argument("--exit-after-converge", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=_demo)


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP all stop the demo through the cleanup; the old handlers come back after.

    SIGINT is set explicitly because a shell starts background jobs with it ignored, and Python then
    leaves it ignored: ``kill -INT`` would do nothing.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    saved = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _demo(args: argparse.Namespace) -> int:
    from engramp2p.cli import CliError

    with _signals_as_interrupt():
        cluster: LocalCluster | None = None
        try:
            try:
                cluster = LocalCluster(args.nodes, profile=args.profile, base_port=args.base_port)
                cluster.start()
                took = cluster.wait_converged()
            except (RuntimeError, OSError) as exc:
                raise CliError(str(exc)) from None
            progress(f"converged in {took:.1f} s")
            _print_hints(cluster)
            if args.exit_after_converge:
                return 0
            if args.no_top:
                _wait_for_interrupt(cluster)
            else:
                _run_top(cluster)
            return 0
        except KeyboardInterrupt:
            return 0
        finally:
            if cluster is not None:
                # A second Ctrl-C must not cut the cleanup short and orphan agents.
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    progress(f"stopping {sum(a.running() for a in cluster.agents)} agent(s)")
                    cluster.close()
                    progress(f"stopped; removed {cluster.root}")
                finally:
                    signal.signal(signal.SIGINT, previous)


def _print_hints(cluster: LocalCluster) -> None:
    for agent in cluster.agents:
        progress(f"  {agent.name}  {agent.addr}  pid {agent.pid}  data {agent.data_dir}")
    progress(f"try: engramp2p members --data-dir {cluster.seed.data_dir}")
    if len(cluster.agents) > 1:
        progress(f"     kill -9 {cluster.agents[-1].pid}   # watch {cluster.agents[-1].name} turn suspect, then failed")


def _wait_for_interrupt(cluster: LocalCluster) -> None:
    """Run until Ctrl-C, reporting an agent that exits behind our back (e.g. ``kill -9``)."""
    progress("running; Ctrl-C stops every agent")
    reported: set[str] = set()
    while True:
        for agent in cluster.agents:
            if agent.name not in reported and not agent.running():
                reported.add(agent.name)
                code = agent.proc.returncode if agent.proc is not None else None
                progress(f"agent {agent.name} exited (status {code})")
        time.sleep(0.5)


def _run_top(cluster: LocalCluster) -> None:
    """The ``top`` command's own entry, in this process, on the first agent."""
    from engramp2p.cli import build_parser

    top_args = build_parser().parse_args(["top", "--data-dir", str(cluster.seed.data_dir)])
    top_args.func(top_args)
