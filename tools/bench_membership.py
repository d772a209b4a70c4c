"""Membership benchmark: N engramp2p agents against N Serf agents, same profile, same loopback, one run.

Each system is run twice on 127.0.0.1, one system at a time (never both at once, so neither steals the
other's CPU), with one fresh 32-byte key (both encrypt):

1. **warm join**: N agents started alone; once all answer, every one but the first is told to join
   the first at the same instant (engramp2p ``join``, Serf RPC ``join``): time until every agent sees
   all N alive. This is the protocol's convergence, without interpreter start-up.
2. **cold start** (the main cluster): the first agent, then N-1 agents spawned with ``--join`` /
   ``-join`` it: time from spawn until all see all, and from the moment the last agent answered.
   Then on the same cluster:
   - **load** (engramp2p only; Serf exposes no loop-lag figure): each agent receives ``--load-pps``
     UDP datagrams/s of 1,400 bytes sealed with a foreign key (each costs a trial decryption and an
     auth-failure count) and ``members`` requests at 10 Hz, for ``--load-seconds``. The agent's
     event-loop lag histogram (``info``: ``loop_lag_ms``, cumulative since start, so it includes the
     start-up and join -- pessimistic) is read at the end, with the suspicions raised meanwhile
     (false positives: no member was down).
   - **idle** window of ``--idle`` seconds with no request to the agents at all: CPU % of one core
     from ``/proc/PID/stat`` (utime+stime, all threads), RSS from ``/proc/PID/status`` at the end,
     and bytes per second per agent. Bytes are counted the same way for both systems by an
     ``AF_PACKET`` socket on ``lo`` (root only): UDP and TCP payload bytes of every outgoing packet
     whose source or destination is a gossip port of the cluster, divided by N (every packet has one
     sender, so this is the mean sent per agent). engramp2p's own ``info`` counters (``bytes_out``
     deltas) are shown beside it as a cross-check. Without root, Serf's bytes are not measured.
   - **kill -9 trials**: a non-seed agent is killed with SIGKILL; every survivor is polled (20 Hz;
     engramp2p over the control socket, Serf over its RPC socket, a persistent connection each) until
     it reports the victim ``failed``: detection time = first poll showing it minus the kill. Then the
     victim is restarted (same name, port and, for engramp2p, data directory) and the time until every
     agent sees it alive again is the rejoin time.

Serf's agent coalesces member events for ~1-3 s before handlers see them, so event handlers cannot
time it; polling its RPC ``members`` is the honest equivalent of polling ``engramp2p members``.
Everything started is killed (SIGTERM, then SIGKILL) on exit, on Ctrl-C and at ``--max-seconds``.

    sudo /work/venv/bin/python tools/bench_membership.py --nodes 5 --profile local --trials 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import msgspec  # noqa: E402

from engramp2p.api.client import Client, ClientError, control_path  # noqa: E402
from engramp2p.commands.demo import LocalAgent, LocalCluster, any_free_port  # noqa: E402
from engramp2p.net.seal import Keyring, encode_key, generate_key  # noqa: E402

POLL = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")
View = dict[str, str]  # member name -> status, as one agent sees it


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchTimeout(Exception):
    """The whole run passed ``--max-seconds``."""


# ---------------------------------------------------------------------------------------------------
# /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), seconds."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------------
# loopback byte counter


class LoopbackCounter:
    """Counts payload bytes of outgoing IPv4 UDP/TCP packets on ``lo`` touching the given ports.

    An ``AF_PACKET`` socket sees each loopback packet twice (outgoing, then incoming); only the
    outgoing copy is counted. Needs CAP_NET_RAW; ``available`` is False without it.
    """

    PACKET_OUTGOING = 4

    def __init__(self) -> None:
        self.ports: frozenset[int] = frozenset()
        self.udp = self.tcp = self.packets = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self.sock: socket.socket | None = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            self.sock.bind(("lo", 0))
            self.sock.settimeout(0.2)
        except (OSError, AttributeError):
            self.sock = None

    @property
    def available(self) -> bool:
        return self.sock is not None

    def start(self) -> None:
        if self.sock is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self.sock is not None
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] != self.PACKET_OUTGOING or len(data) < 34 or data[12:14] != b"\x08\x00":
                continue
            ihl = (data[14] & 0x0F) * 4
            total = int.from_bytes(data[16:18], "big")
            proto = data[23]
            l4 = 14 + ihl
            if proto not in (6, 17) or len(data) < l4 + 4:
                continue
            sport, dport = struct.unpack("!HH", data[l4:l4 + 4])
            if sport not in self.ports and dport not in self.ports:
                continue
            header = 8 if proto == 17 else (data[l4 + 12] >> 4) * 4  # UDP header, or TCP's data offset
            payload = total - ihl - header
            with self._lock:
                self.packets += 1
                if proto == 17:
                    self.udp += payload
                else:
                    self.tcp += payload

    def snapshot(self) -> tuple[int, int, int]:
        with self._lock:
            return self.udp, self.tcp, self.packets

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self.sock is not None:
            self.sock.close()


# ---------------------------------------------------------------------------------------------------
# Serf's RPC: msgpack objects back to back on a TCP stream


class Incomplete(Exception):
    pass


def msgpack_end(buf: bytes | bytearray, pos: int = 0) -> int:
    """Offset just past the msgpack object starting at ``pos``; ``Incomplete`` if it is not all there.

    Serf's RPC frames nothing: a response is a header object followed by a body object. msgspec decodes
    one complete object, so the stream is split here first.
    """

    def need(n: int) -> None:
        if pos + n > len(buf):
            raise Incomplete

    need(1)
    b = buf[pos]
    pos += 1
    if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return pos
    if 0x80 <= b <= 0x8F:
        return _skip_items(buf, pos, 2 * (b & 0x0F))
    if 0x90 <= b <= 0x9F:
        return _skip_items(buf, pos, b & 0x0F)
    if 0xA0 <= b <= 0xBF:
        need(b & 0x1F)
        return pos + (b & 0x1F)
    fixed = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
             0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
    if b in fixed:
        need(fixed[b])
        return pos + fixed[b]
    sized = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC7: 1, 0xC8: 2, 0xC9: 4}
    if b in sized:
        w = sized[b]
        need(w)
        n = int.from_bytes(buf[pos:pos + w], "big")
        pos += w + (1 if b in (0xC7, 0xC8, 0xC9) else 0)  # ext: a type byte follows the length
        need(n)
        return pos + n
    counted = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}
    if b in counted:
        w, per = counted[b]
        need(w)
        n = int.from_bytes(buf[pos:pos + w], "big")
        return _skip_items(buf, pos + w, per * n)
    raise ValueError(f"not msgpack: byte 0x{b:02x}")


def _skip_items(buf: bytes | bytearray, pos: int, n: int) -> int:
    for _ in range(n):
        pos = msgpack_end(buf, pos)
    return pos


class SerfRpc:
    """A persistent connection to one Serf agent's RPC port (handshake, members, join)."""

    def __init__(self, port: int, timeout: float = 2.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()
        self.seq = 0
        self.request("handshake", {"Version": 1})

    def close(self) -> None:
        self.sock.close()

    def _read_obj(self) -> Any:
        while True:
            try:
                end = msgpack_end(self.buf)
            except Incomplete:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("serf closed the RPC connection") from None
                self.buf += chunk
                continue
            obj = msgspec.msgpack.decode(bytes(self.buf[:end]))
            del self.buf[:end]
            return obj

    def request(self, command: str, body: dict[str, Any] | None = None, *, reply: bool = False) -> Any:
        self.seq += 1
        out = msgspec.msgpack.encode({"Command": command, "Seq": self.seq})
        if body is not None:
            out += msgspec.msgpack.encode(body)
        self.sock.sendall(out)
        header = self._read_obj()
        if header.get("Error"):
            raise ConnectionError(f"serf {command}: {header['Error']}")
        return self._read_obj() if reply else None

    def members(self) -> View:
        body = self.request("members", reply=True)
        return {m["Name"]: m["Status"] for m in body["Members"]}


# ---------------------------------------------------------------------------------------------------
# the two systems behind one interface


class Fleet:
    """N agents of one system: start, ask each for its view, kill, restart, stop."""

    system = ""
    names: list[str]

    def gossip_ports(self) -> list[int]: ...
    def pid(self, i: int) -> int | None: ...
    def spawn(self, i: int) -> None: ...
    def ready(self, i: int) -> bool: ...
    def view(self, i: int) -> View | None: ...
    def join_first(self, i: int) -> None: ...
    def kill9(self, i: int) -> None: ...
    def stop(self) -> None: ...

    def running(self, i: int) -> bool:
        pid = self.pid(i)
        return pid is not None and os.path.exists(f"/proc/{pid}")


class EngramFleet(Fleet):
    system = "engramp2p"

    def __init__(self, n: int, profile: str, key: str, seeded: bool) -> None:
        self.cluster = LocalCluster(n, profile=profile, key=key, base_port=None, seeded=seeded, say=lambda m: None)
        self.names = [a.name for a in self.cluster.agents]
        self.clients: dict[int, Client] = {}

    def agent(self, i: int) -> LocalAgent:
        return self.cluster.agents[i]

    def gossip_ports(self) -> list[int]:
        return [a.port for a in self.cluster.agents]

    def pid(self, i: int) -> int | None:
        a = self.agent(i)
        return a.pid if a.running() else None

    def spawn(self, i: int) -> None:
        self._drop_client(i)
        self.cluster.spawn(self.agent(i))

    def client(self, i: int) -> Client:
        if i not in self.clients:
            self.clients[i] = Client(control_path(self.agent(i).data_dir), timeout=2.0)
        return self.clients[i]

    def _drop_client(self, i: int) -> None:
        c = self.clients.pop(i, None)
        if c is not None:
            c.close()

    def ready(self, i: int) -> bool:
        a = self.agent(i)
        if not a.running():
            raise RuntimeError(f"engramp2p agent {a.name} exited; its log ends:\n{a.log_tail()}")
        try:
            return bool(self.client(i).info().name == self.names[i])
        except ClientError:
            self._drop_client(i)
            return False

    def view(self, i: int) -> View | None:
        try:
            return {m.name: m.state for m in self.client(i).members()}
        except ClientError:
            self._drop_client(i)
            return None

    def info(self, i: int) -> Any:
        return self.client(i).info()

    def join_first(self, i: int) -> None:
        with Client(control_path(self.agent(i).data_dir), timeout=30.0) as c:
            c.join([self.agent(0).addr])

    def kill9(self, i: int) -> None:
        self._drop_client(i)
        self.cluster.kill9(self.agent(i))

    def stop(self) -> None:
        for i in list(self.clients):
            self._drop_client(i)
        self.cluster.close()


class SerfFleet(Fleet):
    system = "serf"

    def __init__(self, n: int, profile: str, key: str, seeded: bool, serf: str) -> None:
        self.serf, self.profile, self.key, self.seeded = serf, profile, key, seeded
        self.root = Path(tempfile.mkdtemp(prefix="bench-serf-"))
        self.names = [f"s{i + 1}" for i in range(n)]
        ports: list[int] = []
        for _ in range(2 * n):
            ports.append(any_free_port(avoid=ports))
        self.ports, self.rpc_ports = ports[:n], ports[n:]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.rpcs: dict[int, SerfRpc] = {}

    def gossip_ports(self) -> list[int]:
        return list(self.ports)

    def pid(self, i: int) -> int | None:
        p = self.procs.get(i)
        return p.pid if p is not None and p.poll() is None else None

    def spawn(self, i: int) -> None:
        self._drop_rpc(i)
        argv = [self.serf, "agent", "-node", self.names[i], "-bind", f"127.0.0.1:{self.ports[i]}",
                "-rpc-addr", f"127.0.0.1:{self.rpc_ports[i]}", "-profile", self.profile, "-encrypt", self.key]
        if self.seeded and i > 0:
            argv += ["-join", f"127.0.0.1:{self.ports[0]}"]
        with open(self.root / f"{self.names[i]}.log", "ab") as log:
            self.procs[i] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)

    def rpc(self, i: int) -> SerfRpc:
        if i not in self.rpcs:
            self.rpcs[i] = SerfRpc(self.rpc_ports[i])
        return self.rpcs[i]

    def _drop_rpc(self, i: int) -> None:
        r = self.rpcs.pop(i, None)
        if r is not None:
            r.close()

    def ready(self, i: int) -> bool:
        if self.pid(i) is None:
            log = (self.root / f"{self.names[i]}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"serf agent {self.names[i]} exited; its log ends:\n{log}")
        return self.view(i) is not None

    def view(self, i: int) -> View | None:
        try:
            return self.rpc(i).members()
        except (OSError, ConnectionError, msgspec.DecodeError, ValueError, KeyError):
            self._drop_rpc(i)
            return None

    def join_first(self, i: int) -> None:
        r = SerfRpc(self.rpc_ports[i], timeout=30.0)
        try:
            r.request("join", {"Existing": [f"127.0.0.1:{self.ports[0]}"], "Replay": False}, reply=True)
        finally:
            r.close()

    def kill9(self, i: int) -> None:
        self._drop_rpc(i)
        p = self.procs.get(i)
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()

    def stop(self) -> None:
        for i in list(self.rpcs):
            self._drop_rpc(i)
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for p in self.procs.values():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# measurements


def wait_until(pred: Callable[[], bool], timeout: float, what: str, step: float = POLL) -> float:
    """Poll ``pred``; the monotonic time it first held. RuntimeError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


def all_see_all(fleet: Fleet, idx: Sequence[int] | None = None) -> bool:
    n = len(fleet.names)
    for i in idx if idx is not None else range(n):
        v = fleet.view(i)
        if v is None or sum(1 for s in v.values() if s == "alive") != n:
            return False
    return True


def start_alone(fleet: Fleet) -> None:
    for i in range(len(fleet.names)):
        fleet.spawn(i)
    for i in range(len(fleet.names)):
        wait_until(lambda i=i: fleet.ready(i), 60, f"{fleet.system} {fleet.names[i]} to answer")


def warm_join(fleet: Fleet, timeout: float) -> float:
    """Agents already running alone; all but the first join it at once: seconds until all see all."""
    start_alone(fleet)
    errors: list[BaseException] = []

    def join(i: int) -> None:
        try:
            fleet.join_first(i)
        except BaseException as exc:  # reported below, on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=join, args=(i,), daemon=True) for i in range(1, len(fleet.names))]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    done = wait_until(lambda: all_see_all(fleet), timeout, f"{fleet.system} warm join", step=0.02)
    for t in threads:
        t.join(30)
    if errors:
        raise RuntimeError(f"{fleet.system} join failed: {errors[0]}")
    return done - t0


def cold_start(fleet: Fleet, timeout: float) -> tuple[float, float]:
    """Seed up first; the others spawned with a seed: (from spawn, from the last one answering)."""
    n = len(fleet.names)
    fleet.spawn(0)
    wait_until(lambda: fleet.ready(0), 60, f"{fleet.system} seed to answer")
    t0 = time.monotonic()
    for i in range(1, n):
        fleet.spawn(i)
    answered: dict[int, float] = {}

    def check() -> bool:
        now = time.monotonic()
        ok = True
        for i in range(n):
            v = fleet.view(i)
            if v is not None:
                answered.setdefault(i, now)
            if v is None or sum(1 for s in v.values() if s == "alive") != n:
                ok = False
        return ok

    done = wait_until(check, timeout, f"{fleet.system} cold start", step=0.02)
    last_ready = max(answered.get(i, done) for i in range(1, n))
    return done - t0, max(0.0, done - last_ready)


def idle_window(fleet: Fleet, seconds: float, counter: LoopbackCounter) -> dict[str, Any]:
    """CPU %, RSS and bytes/s per agent over ``seconds`` in which nothing talks to the agents."""
    n = len(fleet.names)
    pids = [fleet.pid(i) for i in range(n)]
    if any(p is None for p in pids):
        raise RuntimeError(f"{fleet.system}: an agent is not running before the idle window")
    info0 = [fleet.info(i).counters for i in range(n)] if isinstance(fleet, EngramFleet) else None
    if isinstance(fleet, EngramFleet):
        for i in list(fleet.clients):
            fleet._drop_client(i)  # not even an open idle connection during the window
    if isinstance(fleet, SerfFleet):
        for i in list(fleet.rpcs):
            fleet._drop_rpc(i)
    counter.ports = frozenset(fleet.gossip_ports())
    cap0 = counter.snapshot()
    cpu0 = [cpu_seconds(p) for p in pids if p]
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    cpu1 = [cpu_seconds(p) for p in pids if p]
    cap1 = counter.snapshot()
    out: dict[str, Any] = {
        "cpu_pct": [100.0 * (b - a) / elapsed for a, b in zip(cpu0, cpu1, strict=True)],
        "rss_mb": [status_kb(p, "VmRSS") / 1024 for p in pids if p],
        "hwm_mb": [status_kb(p, "VmHWM") / 1024 for p in pids if p],
        "seconds": elapsed,
    }
    if counter.available:
        out["capture_bps"] = (cap1[0] - cap0[0] + cap1[1] - cap0[1]) / elapsed / n
        out["capture_udp_bps"] = (cap1[0] - cap0[0]) / elapsed / n
        out["capture_pps"] = (cap1[2] - cap0[2]) / elapsed / n
    if info0 is not None:
        assert isinstance(fleet, EngramFleet)
        info1 = [fleet.info(i).counters for i in range(n)]
        out["counter_out_bps"] = [(b["bytes_out"] - a["bytes_out"]) / elapsed for a, b in zip(info0, info1, strict=True)]
        out["counter_in_bps"] = [(b["bytes_in"] - a["bytes_in"]) / elapsed for a, b in zip(info0, info1, strict=True)]
        out["heavy_modules"] = sorted({m for i in range(n) for m in fleet.info(i).heavy_modules})
    return out


BASELINE_LAG = """
import json, sys, trio
from engramp2p.loopmon import LagMonitor
async def main(seconds):
    mon = LagMonitor(burst=1.0, every=1.0)
    with trio.move_on_after(seconds):
        await mon.run()
    print(json.dumps(mon.histogram.summary()))
trio.run(main, float(sys.argv[1]))
"""
"""An empty trio process sampling its own lag like the agent does: what the host alone inflicts."""


def load_lag(fleet: EngramFleet, seconds: float, pps: int) -> dict[str, Any]:
    """Foreign-key datagrams at ``pps`` per agent plus ``members`` at 10 Hz; then the lag histograms."""
    n = len(fleet.names)
    before = [fleet.info(i).counters for i in range(n)]
    foreign = Keyring([generate_key()])
    packets = [foreign.seal(os.urandom(1400 - 60)) for _ in range(64)]
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        ports = fleet.gossip_ports()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            t0 = time.monotonic()
            k = 0
            while not stop.is_set():
                due = int((time.monotonic() - t0) * pps)
                while k < due:
                    pkt = packets[k % len(packets)]
                    for port in ports:
                        with contextlib.suppress(OSError):
                            s.sendto(pkt, ("127.0.0.1", port))
                    k += 1
                time.sleep(0.005)
            sent[0] = k * len(ports)

    def poll_members() -> None:
        clients = [Client(control_path(fleet.agent(i).data_dir), timeout=2.0) for i in range(n)]
        try:
            while not stop.is_set():
                for c in clients:
                    with contextlib.suppress(ClientError):
                        c.members()
                stop.wait(0.1)
        finally:
            for c in clients:
                c.close()

    baseline = subprocess.Popen(
        [sys.executable, "-c", BASELINE_LAG, str(seconds)], stdout=subprocess.PIPE, text=True,
        env=fleet.cluster.env,
    )
    threads = [threading.Thread(target=flood, daemon=True), threading.Thread(target=poll_members, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(10)
    infos = [fleet.info(i) for i in range(n)]
    try:
        out, _ = baseline.communicate(timeout=30)
        base = json.loads(out)
    except (subprocess.TimeoutExpired, ValueError):
        baseline.kill()
        baseline.wait()
        base = None
    return {
        "baseline_lag": base,
        "seconds": seconds,
        "pps_per_agent": pps,
        "datagrams_sent": sent[0],
        "auth_failures": sum(i.counters.get("auth_failures", 0) - b.get("auth_failures", 0) for i, b in zip(infos, before, strict=True)),
        "false_suspicions": sum(i.counters.get("suspicions", 0) - b.get("suspicions", 0) for i, b in zip(infos, before, strict=True)),
        "lag": [dict(i.loop_lag_ms) for i in infos],
    }


def kill_trials(fleet: Fleet, trials: int, timeout: float) -> dict[str, Any]:
    """Kill a non-seed agent, time its ``failed`` at every survivor, restart it, time its return."""
    n = len(fleet.names)
    detections: list[float] = []
    suspects: list[float] = []
    rejoins: list[float] = []
    missed = 0
    for trial in range(trials):
        victim = 1 + trial % (n - 1)
        vname = fleet.names[victim]
        survivors = [i for i in range(n) if i != victim]
        for i in survivors:
            fleet.view(i)  # open the polling connections before the clock starts
        fleet.kill9(victim)
        t_kill = time.monotonic()
        failed_at: dict[int, float] = {}
        suspect_at: dict[int, float] = {}
        deadline = t_kill + timeout
        while len(failed_at) < len(survivors) and time.monotonic() < deadline:
            for i in survivors:
                if i in failed_at:
                    continue
                v = fleet.view(i)
                now = time.monotonic()
                state = (v or {}).get(vname)
                if state == "suspect":
                    suspect_at.setdefault(i, now)
                if state == "failed":
                    failed_at[i] = now
                    suspect_at.setdefault(i, now)
            time.sleep(POLL)
        missed += len(survivors) - len(failed_at)
        det = sorted(t - t_kill for t in failed_at.values())
        detections += det
        suspects += [t - t_kill for t in suspect_at.values()]
        fleet.spawn(victim)
        t_spawn = time.monotonic()
        back = wait_until(lambda: all_see_all(fleet), 120, f"{fleet.system} {vname} back everywhere")
        rejoins.append(back - t_spawn)
        say(f"  {fleet.system} trial {trial + 1}: killed {vname}; failed at survivors after "
            f"{', '.join(f'{d:.2f}' for d in det)} s; back everywhere {back - t_spawn:.2f} s after restart")
    return {"detections": detections, "suspects": suspects, "rejoins": rejoins, "missed": missed}


# ---------------------------------------------------------------------------------------------------
# one system, end to end


@contextlib.contextmanager
def fleet_of(make: Callable[[], Fleet]) -> Iterator[Fleet]:
    fleet = make()
    try:
        yield fleet
    finally:
        fleet.stop()


def bench(make: Callable[[bool], Fleet], args: argparse.Namespace, counter: LoopbackCounter) -> dict[str, Any]:
    """``--join-trials`` warm joins and cold starts (fresh agents each); the last cold cluster runs on."""
    res: dict[str, Any] = {"warm_join_s": [], "cold_from_spawn_s": [], "cold_from_ready_s": []}
    for k in range(args.join_trials):
        with fleet_of(lambda: make(False)) as fleet:
            res["warm_join_s"].append(warm_join(fleet, args.converge_timeout))
            say(f"{fleet.system}: warm join {k + 1}: all see all {res['warm_join_s'][-1]:.2f} s after the joins")
    for k in range(args.join_trials):
        with fleet_of(lambda: make(True)) as fleet:
            spawn_s, ready_s = cold_start(fleet, args.converge_timeout)
            res["cold_from_spawn_s"].append(spawn_s)
            res["cold_from_ready_s"].append(ready_s)
            say(f"{fleet.system}: cold start {k + 1}: all see all {spawn_s:.2f} s from spawn, "
                f"{ready_s:.2f} s after the last agent answered")
            if k == args.join_trials - 1:
                measure_running(fleet, args, counter, res)
    return res


def measure_running(fleet: Fleet, args: argparse.Namespace, counter: LoopbackCounter, res: dict[str, Any]) -> None:
    """Load (engramp2p), idle window and kill trials on one converged cluster."""
    if isinstance(fleet, EngramFleet) and args.load_seconds > 0:
        say(f"{fleet.system}: load for {args.load_seconds:.0f} s ({args.load_pps} foreign datagrams/s per agent)")
        res["load"] = load_lag(fleet, args.load_seconds, args.load_pps)
        wait_until(lambda: all_see_all(fleet), args.converge_timeout, "all alive after the load")
    time.sleep(2.0)
    say(f"{fleet.system}: idle window {args.idle:.0f} s")
    res["idle"] = idle_window(fleet, args.idle, counter)
    say(f"{fleet.system}: {args.trials} kill -9 trials")
    res["kills"] = kill_trials(fleet, args.trials, args.detect_timeout)


# ---------------------------------------------------------------------------------------------------
# report


def med(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def mx(xs: Sequence[float]) -> float | None:
    return max(xs) if xs else None


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def rows(e: dict[str, Any], s: dict[str, Any] | None) -> list[tuple[str, float | None, float | None, str, str]]:
    """(metric, engramp2p, serf, format, target) for the table."""
    def g(d: dict[str, Any] | None, fn: Callable[[dict[str, Any]], float | None]) -> float | None:
        if d is None:
            return None
        try:
            return fn(d)
        except (KeyError, TypeError, ValueError):
            return None

    lag = e.get("load", {}).get("lag", [])
    out = [
        ("join: warm, all see all, median (s)", g(e, lambda d: med(d["warm_join_s"])), g(s, lambda d: med(d["warm_join_s"])), ".2f", "<= serf"),
        ("join: warm, all see all, max (s)", g(e, lambda d: mx(d["warm_join_s"])), g(s, lambda d: mx(d["warm_join_s"])), ".2f", ""),
        ("join: warm, trials over 1 s (count)", g(e, lambda d: sum(x > 1.0 for x in d["warm_join_s"])), g(s, lambda d: sum(x > 1.0 for x in d["warm_join_s"])), ".0f", ""),
        ("join: cold, from spawn, median (s)", g(e, lambda d: med(d["cold_from_spawn_s"])), g(s, lambda d: med(d["cold_from_spawn_s"])), ".2f", "<= serf"),
        ("join: cold, from spawn, max (s)", g(e, lambda d: mx(d["cold_from_spawn_s"])), g(s, lambda d: mx(d["cold_from_spawn_s"])), ".2f", ""),
        ("join: cold, after last answered, median (s)", g(e, lambda d: med(d["cold_from_ready_s"])), g(s, lambda d: med(d["cold_from_ready_s"])), ".2f", ""),
        ("kill -9 -> failed, median (s)", g(e, lambda d: med(d["kills"]["detections"])), g(s, lambda d: med(d["kills"]["detections"])), ".2f", "<= serf"),
        ("kill -9 -> failed, max (s)", g(e, lambda d: mx(d["kills"]["detections"])), g(s, lambda d: mx(d["kills"]["detections"])), ".2f", ""),
        ("kill -9 -> suspect, median (s)", g(e, lambda d: med(d["kills"]["suspects"])), None, ".2f", ""),
        ("survivor detections missed", g(e, lambda d: d["kills"]["missed"]), g(s, lambda d: d["kills"]["missed"]), ".0f", "0"),
        ("restart -> alive everywhere, median (s)", g(e, lambda d: med(d["kills"]["rejoins"])), g(s, lambda d: med(d["kills"]["rejoins"])), ".2f", ""),
        ("idle CPU % of a core, median", g(e, lambda d: med(d["idle"]["cpu_pct"])), g(s, lambda d: med(d["idle"]["cpu_pct"])), ".2f", "<= 1"),
        ("idle CPU % of a core, max", g(e, lambda d: mx(d["idle"]["cpu_pct"])), g(s, lambda d: mx(d["idle"]["cpu_pct"])), ".2f", "<= 1"),
        ("RSS MB per agent, median", g(e, lambda d: med(d["idle"]["rss_mb"])), g(s, lambda d: med(d["idle"]["rss_mb"])), ".1f", "<= 60"),
        ("RSS MB per agent, max", g(e, lambda d: mx(d["idle"]["rss_mb"])), g(s, lambda d: mx(d["idle"]["rss_mb"])), ".1f", "<= 60"),
        ("bytes/s sent per agent, idle (lo capture)", g(e, lambda d: d["idle"]["capture_bps"]), g(s, lambda d: d["idle"]["capture_bps"]), ".0f", ""),
        ("packets/s sent per agent, idle (lo capture)", g(e, lambda d: d["idle"]["capture_pps"]), g(s, lambda d: d["idle"]["capture_pps"]), ".1f", ""),
        ("bytes/s out per agent, idle (info counters)", g(e, lambda d: med(d["idle"]["counter_out_bps"])), None, ".0f", ""),
        ("loop lag p99 under load, median agent (ms)", med([x["p99_ms"] for x in lag]) if lag else None, None, ".1f", "< 10"),
        ("loop lag p99 under load, worst agent (ms)", mx([x["p99_ms"] for x in lag]) if lag else None, None, ".1f", "< 10"),
        ("loop lag max under load, worst agent (ms)", mx([x["max_ms"] for x in lag]) if lag else None, None, ".1f", ""),
        ("timer lateness p99 under load, worst (ms)", mx([x.get("timer_p99_ms", 0.0) for x in lag]) if lag else None, None, ".1f", ""),
        ("empty trio process lag p99, same window (ms)", g(e, lambda d: d["load"]["baseline_lag"]["p99_ms"]), None, ".1f", ""),
        ("false suspicions during load", g(e, lambda d: d["load"]["false_suspicions"]), None, ".0f", "0"),
    ]
    return out


def render(results: dict[str, Any], args: argparse.Namespace, argv: Sequence[str]) -> str:
    e, s = results["engramp2p"], results.get("serf")
    head = ("metric", "engramp2p", "serf" if s is not None else "serf (absent)", "ratio e/s", "target")
    body = [(m, fmt(a, f), fmt(b, f), ratio(a, b), t) for m, a, b, f, t in rows(e, s)]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = [
        f"membership benchmark: {args.nodes} agents per system, profile {args.profile}, {args.join_trials} warm joins "
        f"and cold starts, {args.trials} kill trials, "
        f"idle window {args.idle:.0f} s, load {args.load_pps} datagrams/s per agent for {args.load_seconds:.0f} s",
        f"host: {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
        f"serf {results.get('serf_version', '-')}, load average before {results['loadavg_before']}, after {results['loadavg_after']}",
        "",
    ]
    for i, r in enumerate([head, *body]):
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    det_e = e.get("kills", {}).get("detections", [])
    det_s = (s or {}).get("kills", {}).get("detections", [])
    lines += [
        "",
        f"engramp2p detections (s): {' '.join(f'{d:.2f}' for d in sorted(det_e))}",
        f"serf detections (s):      {' '.join(f'{d:.2f}' for d in sorted(det_s)) or '-'}",
        f"engramp2p heavy modules loaded when idle: {', '.join(e.get('idle', {}).get('heavy_modules', [])) or 'none'}",
        f"bytes counted by: {'AF_PACKET capture on lo (UDP+TCP payload, outgoing copies)' if results['capture'] else 'engramp2p counters only (no CAP_NET_RAW)'}",
        "",
        "command: " + " ".join(shlex.quote(a) for a in argv),
    ]
    return "\n".join(lines)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "-"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--profile", choices=("lan", "wan", "local"), default="local")
    p.add_argument("--trials", type=int, default=5, help="kill -9 trials per system (default 5)")
    p.add_argument("--join-trials", type=int, default=3, help="warm joins and cold starts per system (default 3)")
    p.add_argument("--idle", type=float, default=25.0, help="idle window, seconds (default 25)")
    p.add_argument("--load-seconds", type=float, default=20.0, help="engramp2p load phase, seconds (0: skip)")
    p.add_argument("--load-pps", type=int, default=500, help="foreign datagrams per second per agent under load")
    p.add_argument("--converge-timeout", type=float, default=60.0)
    p.add_argument("--detect-timeout", type=float, default=90.0)
    p.add_argument("--serf", default=shutil.which("serf"), help="serf binary (default: serf on PATH)")
    p.add_argument("--no-serf", action="store_true", help="benchmark engramp2p alone")
    p.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    p.add_argument("--max-seconds", type=float, default=1200.0, help="hard bound on the whole run")
    args = p.parse_args(argv)
    if args.nodes < 2:
        p.error("--nodes must be at least 2")

    def alarm(signum: int, frame: Any) -> None:
        raise BenchTimeout(f"the run passed --max-seconds={args.max_seconds:.0f}")

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds through every fleet's cleanup

    signal.signal(signal.SIGALRM, alarm)
    signal.signal(signal.SIGTERM, terminate)
    signal.alarm(int(args.max_seconds))
    key = encode_key(generate_key())
    counter = LoopbackCounter()
    counter.start()
    results: dict[str, Any] = {"loadavg_before": loadavg(), "capture": counter.available}
    try:
        results["engramp2p"] = bench(lambda seeded: EngramFleet(args.nodes, args.profile, key, seeded), args, counter)
        serf = None if args.no_serf else args.serf
        if serf:
            out = subprocess.run([serf, "version"], capture_output=True, text=True, timeout=10)
            results["serf_version"] = out.stdout.split("\n")[0].replace("Serf ", "").strip()
            results["serf"] = bench(lambda seeded: SerfFleet(args.nodes, args.profile, key, seeded, serf), args, counter)
        else:
            say("serf: not found on PATH (or --no-serf): engramp2p only")
    except (BenchTimeout, RuntimeError) as exc:
        say(f"benchmark stopped: {exc}")
        return 1
    finally:
        signal.alarm(0)
        counter.close()
    results["loadavg_after"] = loadavg()
    shown = [os.path.relpath(sys.argv[0]) if argv is None else "tools/bench_membership.py",
             *(sys.argv[1:] if argv is None else argv)]
    print(render(results, args, ["python", *shown]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
