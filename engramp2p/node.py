"""The composition root: one peer's subsystems, built from a ``Config`` and run in ONE trio nursery.

``Node(config).run()`` opens the store (identity: node_id, incarnation = stored + 1), the keyring, the
UDP+TCP transport, the SWIM core behind a ``Router`` and its ``Driver``, the control socket, the lag
monitor and every added service -- each a task of the same nursery, so cancelling that nursery
(``stop``) is the whole shutdown and nothing outlives the node. ``leave`` is the graceful part: it
gossips our departure and waits (bounded) until it has spread.

**Services** (replication, spreading: later issues) plug in through ``add_service`` before ``run``
and see the node through a narrow surface (``Service`` below): a sans-IO ``core`` fed the wire
message types it claims, control commands it answers, membership events it is told about, and a task
of its own. Nothing else of the node is theirs to change except member metadata (``update_meta``).

**Commands into a core.** A core's actions must be performed by its driver, and a stream exchange a
core starts must come back to it through the ``Router``'s token map. So a local command (join, leave,
start, a service's "sync now") travels the path an inbound stream request takes: the node hands the
driver a local-only message (``_Command``, never on the wire) that the core's ``_Port`` answers by
running the command. The driver then re-arms its deadline and performs the actions, exactly as for a
request from a peer -- no second way into the core.
"""

from __future__ import annotations

import logging
import os
import random
import socket as _stdsocket
import sys
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from engramp2p import agent_log
from engramp2p.api.messages import (
    Event,
    Join,
    KeyList,
    KeyMemberResult,
    KeyResults,
    KeysInstall,
    KeysRemove,
    KeysUse,
    MemberList,
    MemberRow,
    Members,
    NodeInfo,
)
from engramp2p.api.server import CommandError, ControlServer, Handler
from engramp2p.config import Config, key_fingerprint, parse_host_port
from engramp2p.keyfile import KeyringPlan, plan_keyring, write_key_file
from engramp2p.loopmon import LagMonitor, TimerLagTap
from engramp2p.net.drive import Driver, Router
from engramp2p.net.keymsgs import KeyOp, KeyOpReply
from engramp2p.net.keyops import KeyCore, KeyringChanged, apply_key_op
from engramp2p.net.replay import ReplayGuardKeyring
from engramp2p.net.seal import SEAL_OVERHEAD, Keyring, encode_key
from engramp2p.net.transport import NetTransport, StreamHandler, Transport
from engramp2p.sansio import Action, Addr, Core
from engramp2p.store import AsyncStore, open_store
from engramp2p.swim.core import Swim
from engramp2p.swim.events import IncarnationChanged, MemberRefuted, MemberSuspected
from engramp2p.swim.messages import State, SwimMessage
from engramp2p.swim.meta import MemberMeta, MetaPublisher, decode_meta
from engramp2p.swim.state import LocalNode, MemberView

log = logging.getLogger("engramp2p.node")

SWIM_TYPES: tuple[type, ...] = typing.get_args(SwimMessage)
HEAVY_MODULES = ("numpy", "scipy", "sklearn", "numba", "llvmlite", "pynndescent")
"""Modules an idle agent on a device should not pay for; ``info`` reports which are loaded."""
STATUS = {State.ALIVE: "alive", State.SUSPECT: "suspect", State.DEAD: "failed", State.LEFT: "left"}
STOP_GRACE = 0.2
"""Seconds between answering ``leave`` on the control socket and cancelling the node."""
KEY_FANOUT = 16
"""Key operations sent to members at once."""


class Service(Protocol):
    """A subsystem run by the node. Keep it to these five members; the node offers no other hooks.

    - ``message_types``: wire message types (from ``net.wire.Message``) routed to ``core``.
    - ``core``: the service's sans-IO core (``sansio.Core``), or None when it claims no messages.
    - ``control_handlers()``: control-socket request tag -> async handler (``api.server.Handler``).
    - ``on_member_event(event)``: every event a core emits -- the ``swim.events`` membership events,
      and the services' own core events (ignore types you do not know) -- called synchronously from
      the driver task; it must not block (queue work for ``run``), e.g. ``MemberRecovered`` -> sync now.
      To act on a core from ``run``, use ``node.command(core, fn)``.
    - ``run(node, task_status=...)``: the service's task; call ``task_status.started()`` when ready.
    """

    message_types: Sequence[type]
    core: Core | None

    def control_handlers(self) -> Mapping[str, Handler]: ...

    def on_member_event(self, event: Any) -> None: ...

    async def run(self, node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...


@dataclass(frozen=True, slots=True)
class _Command:
    """A local command for one core (never on the wire: it is not in ``net.wire.Message``)."""

    fn: Callable[[float], list[Action]]


class _Port:
    """A core as the Router sees it, plus ``command_type`` requests that run a local command on it."""

    def __init__(self, core: Core, command_type: type[_Command]) -> None:
        self.core = core
        self.command_type = command_type

    def handle_packet(self, now: float, src: Addr, msgs: Sequence[Any]) -> list[Action]:
        return self.core.handle_packet(now, src, msgs)

    def handle_stream_request(self, now: float, src: Addr, msg: Any) -> tuple[Any | None, list[Action]]:
        if isinstance(msg, _Command):
            return None, msg.fn(now)
        return self.core.handle_stream_request(now, src, msg)

    def handle_stream_reply(self, now: float, token: int, reply: Any | None) -> list[Action]:
        return self.core.handle_stream_reply(now, token, reply)

    def tick(self, now: float) -> list[Action]:
        return self.core.tick(now)

    def next_deadline(self) -> float | None:
        return self.core.next_deadline()


def heavy_modules_loaded() -> list[str]:
    return [name for name in HEAVY_MODULES if name in sys.modules]


def _rss_kb() -> int:
    """Resident set size now (Linux ``/proc``), else the peak from ``getrusage``."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _guess_advertise() -> str:
    """The address of the interface with a route out, for a node bound to the wildcard address."""
    sock = _stdsocket.socket(_stdsocket.AF_INET, _stdsocket.SOCK_DGRAM)
    try:
        sock.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
        return str(sock.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        sock.close()


async def resolve(text: str) -> Addr:
    """``host[:port]`` as an ``(ip, port)`` the cores can compare with packet sources; ValueError if bad."""
    host, port = parse_host_port(text)
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=_stdsocket.SOCK_DGRAM)
    except OSError as exc:
        raise ValueError(f"cannot resolve {host!r}: {exc}") from None
    v4 = [i for i in infos if i[0] == _stdsocket.AF_INET]
    sockaddr = (v4 or infos)[0][4]
    return str(sockaddr[0]), int(sockaddr[1])


class Node:
    """One peer. ``await nursery.start(node.run)`` returns once it is up and announced; ``stop`` ends it.

    ``transport`` replaces the real sockets (``net.memnet`` in tests); ``rng`` seeds SWIM; ``control``
    turns the control socket off (in-process tests of many nodes); ``wall`` is the wall clock used only
    for timestamps people read (event times, ``last_change``); ``lag`` replaces the default lag monitor.
    """

    def __init__(
        self,
        config: Config,
        *,
        transport: Transport | None = None,
        rng: random.Random | None = None,
        control: bool = True,
        wall: Callable[[], float] = time.time,
        lag: LagMonitor | None = None,
    ) -> None:
        self.config = config
        self.data_dir: Path = config.node.data_path()
        self.swim_config = config.swim.resolve()
        self.services: list[Service] = []
        self.rng = rng if rng is not None else random.Random(int.from_bytes(os.urandom(8), "big"))
        self.wall = wall
        self.lag = lag if lag is not None else LagMonitor()
        self.meta = MetaPublisher(MemberMeta(roles=list(config.node.roles)))
        self.control_enabled = control
        self.started = trio.Event()
        self.stopped = trio.Event()  # set when ``run`` has returned: the store is closed, the lock free
        self.counters: dict[str, int] = {"suspicions": 0, "members_refuted": 0, "events_published": 0}
        # Set in run():
        self.key_plan: KeyringPlan | None = None
        self.keyring: Keyring | None = None
        self.keys_core: KeyCore | None = None
        self.store: AsyncStore | None = None
        self.transport: Transport | None = transport
        self.swim: Swim | None = None
        self.driver: Driver | None = None
        self.timer_lag: TimerLagTap | None = None
        self.control: ControlServer | None = None
        self.router = Router()
        self.addr: Addr = ("", 0)
        self._ports: dict[int, type[_Command]] = {}
        self._driver_handler: StreamHandler | None = None
        self._nursery: trio.Nursery | None = None
        self._started_at = 0.0
        self._event_seq = 0
        self._dirty = trio.Event()
        self._pending_incarnation = 0
        self._keys_dirty = False
        self._stopping = False
        self._ran = False

    # ------------------------------------------------------------------ wiring

    def add_service(self, service: Service) -> None:
        """Plug a subsystem in; only before ``run``."""
        if self._nursery is not None:
            raise RuntimeError("add_service must be called before run")
        self.services.append(service)

    @property
    def node_id(self) -> bytes:
        if self.store is None:
            raise RuntimeError("the node is not running")
        return self.store.node_id

    async def run(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        """Build and run everything until cancelled (``stop``); reports the node when it is up."""
        if self._ran:
            raise RuntimeError("a Node runs once; build a new one to restart")
        self._ran = True
        try:
            await self._run_store(task_status)
        finally:
            self.stopped.set()

    async def _run_store(self, task_status: trio.TaskStatus[Node]) -> None:
        cfg = self.config
        async with open_store(
            self.data_dir,
            name=cfg.node.name,
            durability=cfg.storage.synchronous,
            group_commit_ms=cfg.storage.group_commit_ms,
        ) as store:
            # The data directory is ours now (the store holds its lock): safe to create the key file.
            if cfg.net.insecure:
                self.keyring = Keyring.insecure(cfg.net.label)
            else:
                self.key_plan = plan_keyring(cfg)
                self.keyring = ReplayGuardKeyring(self.key_plan.keys, cfg.net.label)
            self.keys_core = KeyCore(self.keyring)
            self.store = store
            incarnation = await store.bump_incarnation()
            self._pending_incarnation = incarnation
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await self._start(nursery, store, incarnation)
                    task_status.started(self)
                    self.started.set()
            finally:
                self._nursery = None
                with trio.CancelScope(shield=True):
                    await self._flush()

    async def _start(self, nursery: trio.Nursery, store: AsyncStore, incarnation: int) -> None:
        cfg, swim_cfg = self.config, self.swim_config
        assert self.keyring is not None and self.keys_core is not None
        transport = self.transport
        if transport is None:
            net = NetTransport(
                self.keyring,
                host=cfg.net.bind,
                port=cfg.net.port,
                packet_size=cfg.net.packet_size,
                max_frame=cfg.net.max_frame,
                tcp_timeout=swim_cfg.tcp_timeout,
            )
            await nursery.start(net.serve)
            transport = self.transport = net
        bound_host, port = transport.local_addr
        host = cfg.net.advertise or bound_host
        if host in ("0.0.0.0", "::"):
            host = _guess_advertise()
        self.addr = (host, port)
        seeds = [await resolve(s) for s in cfg.node.seeds]
        me = LocalNode(store.node_id, cfg.node.name, host, port, incarnation, self.meta.encoded)
        self.swim = Swim(swim_cfg, me, self.rng, seeds=seeds, packet_budget=cfg.net.packet_size - SEAL_OVERHEAD)
        self._route(self.swim, SWIM_TYPES)
        self._route(self.keys_core, KeyCore.message_types)
        for svc in self.services:
            if svc.core is not None and svc.message_types:
                self._route(svc.core, svc.message_types)
        self.timer_lag = TimerLagTap(self.router)
        self.driver = Driver(self.timer_lag, transport, events=self._on_event)
        await nursery.start(self.driver.run)
        # The driver's own handler, captured before a service may wrap ``transport.stream_handler``.
        self._driver_handler = transport.stream_handler
        await nursery.start(self._persister)
        await nursery.start(self.lag.run)
        if self.control_enabled:
            self.control = ControlServer.for_data_dir(self.data_dir)
            for name, handler in self._handlers().items():
                self.control.register(name, handler)
            for svc in self.services:
                for name, handler in svc.control_handlers().items():
                    self.control.register(name, handler)
            await nursery.start(self.control.serve)
        for svc in self.services:
            await nursery.start(svc.run, self)
        self._started_at = trio.current_time()
        await self.command(self.swim, self.swim.start)
        log.info(
            "agent started: %s (%s) %s:%d incarnation %d, %d seed(s), profile %s",
            cfg.node.name, store.node_id.hex()[:8], host, port, incarnation, len(seeds), cfg.swim.profile,
        )

    def _route(self, core: Core, types: Sequence[type]) -> None:
        command_type = type(f"_Command{len(self._ports)}", (_Command,), {"__slots__": ()})
        self._ports[id(core)] = command_type
        self.router.add(_Port(core, command_type), [*types, command_type])

    async def command(self, core: Core, fn: Callable[[float], list[Action]]) -> None:
        """Run ``fn(now)`` on ``core`` inside its driver and perform the actions it returns."""
        handler = self._driver_handler
        if handler is None:
            raise RuntimeError("the node's driver is not running")
        await handler(self.addr, self._ports[id(core)](fn))

    async def update_meta(self, **fields: Any) -> None:
        """Change our member metadata (e.g. hosted spaces) and announce it under a new incarnation."""
        assert self.swim is not None
        data = self.meta.update(**fields)
        swim = self.swim
        await self.command(swim, lambda now: swim.set_meta(now, data))

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Cancel the node's nursery: every subsystem stops, the store is flushed and closed."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def leave(self, timeout: float | None = None) -> bool:
        """Announce a graceful leave and wait until it has spread (or ``timeout``); True if it did."""
        swim = self.swim
        if swim is None:
            return False
        if timeout is None:
            timeout = self.swim_config.leave_propagate_delay + 2 * self.swim_config.gossip_interval + 1.0
        if not swim.leaving:
            log.info("leaving the cluster")
            await self.command(swim, swim.leave)
        step = max(0.01, self.swim_config.gossip_interval / 2)
        with trio.move_on_after(timeout):
            while not swim.left_done(trio.current_time()):
                await trio.sleep(step)
            return True
        return False

    async def _stop_soon(self) -> None:
        await trio.sleep(STOP_GRACE)  # let the control server send the answer to ``leave`` first
        self.stop()

    # ------------------------------------------------------------------ events and persistence

    def _on_event(self, event: Any) -> None:
        """Every ``Emit`` of every core, synchronously from the driver: log, count, publish, persist."""
        if isinstance(event, IncarnationChanged):
            self._pending_incarnation = max(self._pending_incarnation, event.incarnation)
            self._dirty.set()
        elif isinstance(event, KeyringChanged):
            log.info("keyring changed by a peer: %s %s", event.op, _fingerprint(event.key))
            self._keys_dirty = True
            self._dirty.set()
            self._publish("keyring_changed", detail=f"{event.op} {_fingerprint(event.key)}")
            return
        if isinstance(event, MemberSuspected):
            self.counters["suspicions"] += 1
        elif isinstance(event, MemberRefuted):
            self.counters["members_refuted"] += 1
        line = agent_log.member_line(event)
        if line is not None:
            log.log(line[0], line[1])
        name = agent_log.event_name(event)
        if name is not None:
            m: MemberView = event.member
            self._publish(name, m, detail=f"{m.addr[0]}:{m.addr[1]} incarnation {m.incarnation}")
        for svc in self.services:
            svc.on_member_event(event)

    def _publish(self, kind: str, m: MemberView | None = None, detail: str = "") -> None:
        if self.control is None:
            return
        self._event_seq += 1
        self.counters["events_published"] += 1
        self.control.publish(
            Event(
                seq=self._event_seq,
                at_ms=int(self.wall() * 1000),
                type=kind,
                node=m.node_id if m else None,
                name=m.name if m else None,
                host=m.addr[0] if m else None,
                detail=detail,
            )
        )

    async def _persister(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write the incarnation and the keyring when they change, off the driver's task."""
        task_status.started()
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            await self._flush()

    async def _flush(self) -> None:
        if self.store is not None:
            await self.store.save_incarnation(self._pending_incarnation)
        if self._keys_dirty and self.key_plan is not None and self.keyring is not None:
            self._keys_dirty = False
            keys = self.keyring.keys()
            try:
                await trio.to_thread.run_sync(write_key_file, self.key_plan.path, keys)
            except Exception as exc:  # a full disk must not stop the agent; the operator sees it
                log.error("cannot save the keyring: %s", exc)

    # ------------------------------------------------------------------ reading

    def member_rows(self, status: str | None = None) -> list[MemberRow]:
        assert self.swim is not None
        now, wall = trio.current_time(), self.wall()
        me = self.node_id
        rows = []
        for m in self.swim.members():
            state = STATUS[m.state]
            if status is not None and state != status:
                continue
            meta = decode_meta(m.meta)
            changed = m.last_change if m.last_change > 0 else self._started_at
            rows.append(
                MemberRow(
                    name=m.name,
                    node_id=m.node_id,
                    addr=f"{m.addr[0]}:{m.addr[1]}",
                    state=state,
                    incarnation=m.incarnation,
                    roles=list(meta.roles) if meta is not None else [],
                    rtt_ms=round(m.rtt * 1000.0, 3) if m.rtt is not None and m.node_id != me else None,
                    last_change_ms=max(0, int((wall - (now - changed)) * 1000)),
                )
            )
        return rows

    def info(self) -> NodeInfo:
        assert self.swim is not None and self.transport is not None and self.store is not None
        counters: dict[str, int] = dict(self.transport.counters.snapshot())
        if isinstance(self.keyring, ReplayGuardKeyring):
            counters["replays"] = self.keyring.replays
        swim_counters = self.swim.counters
        counters["refutations"] = swim_counters.get("refutes", 0)
        counters.update(self.counters)
        for key in ("probes", "join_ok", "join_failed", "push_pull_ok", "push_pull_failed", "msg_unexpected"):
            counters[f"swim_{key}"] = swim_counters.get(key, 0)
        counters["unrouted"] = self.router.unrouted
        if self.driver is not None:
            counters["events_dropped"] = self.driver.stats["events_dropped"]
        if self.keys_core is not None:
            counters.update(self.keys_core.counters)
        counters["members_alive"] = self.swim.alive_count
        counters["rss_kb"] = _rss_kb()
        counters["cpu_ms"] = int(time.process_time() * 1000)
        return NodeInfo(
            name=self.config.node.name,
            node_id=self.store.node_id,
            addr=f"{self.addr[0]}:{self.addr[1]}",
            health=self.swim.health_score,
            uptime_s=max(0.0, trio.current_time() - self._started_at),
            counters={k: max(0, int(v)) for k, v in counters.items()},
            loop_lag_ms=self._lag_summary(),
            heavy_modules=heavy_modules_loaded(),
        )

    def _lag_summary(self) -> dict[str, float]:
        """The sleep-overshoot monitor's figures, plus ``timer_*``: lateness of protocol deadlines."""
        out = self.lag.histogram.summary()
        if self.timer_lag is not None:
            timers = self.timer_lag.histogram.summary()
            out.update({f"timer_{k}": v for k, v in timers.items() if k != "mean_ms"})
        return out

    # ------------------------------------------------------------------ control commands

    def _handlers(self) -> dict[str, Handler]:
        return {
            "members": self._h_members,
            "join": self._h_join,
            "leave": self._h_leave,
            "info": self._h_info,
            "keys_list": self._h_keys_list,
            "keys_install": self._h_keys_op,
            "keys_use": self._h_keys_op,
            "keys_remove": self._h_keys_op,
        }

    async def _h_members(self, req: Any) -> MemberList:
        assert isinstance(req, Members)
        return MemberList(members=self.member_rows(req.status))

    async def _h_info(self, req: Any) -> NodeInfo:
        return self.info()

    async def _h_join(self, req: Any) -> None:
        assert isinstance(req, Join) and self.swim is not None
        addrs: list[Addr] = []
        for text in req.addrs:
            try:
                addrs.append(await resolve(text))
            except ValueError as exc:
                raise CommandError(f"{text}: {exc}") from None
        addrs = [a for a in addrs if a != self.addr]
        if not addrs:
            raise CommandError("nothing to join: every address given is this agent's own")
        await self.join(addrs)

    async def join(self, addrs: Sequence[Addr]) -> int:
        """Push-pull with each address; returns how many answered (CommandError when none did)."""
        swim = self.swim
        assert swim is not None
        c = swim.counters
        ok0, failed0 = c.get("join_ok", 0), c.get("join_failed", 0)
        await self.command(swim, lambda now: swim.join(now, addrs))
        with trio.move_on_after(self.swim_config.tcp_timeout + 1.0):
            while c.get("join_ok", 0) - ok0 + c.get("join_failed", 0) - failed0 < len(addrs):
                await trio.sleep(0.01)
        joined = c.get("join_ok", 0) - ok0
        if joined == 0:
            raise CommandError(f"could not join: none of {len(addrs)} address(es) answered a push-pull")
        log.info("joined through %d of %d address(es)", joined, len(addrs))
        return joined

    async def _h_leave(self, req: Any) -> None:
        if self._stopping:
            raise CommandError("the agent is already leaving")
        self._stopping = True
        await self.leave()
        assert self._nursery is not None
        self._nursery.start_soon(self._stop_soon)

    async def _h_keys_list(self, req: Any) -> KeyList:
        assert self.keyring is not None
        if self.keyring.is_insecure:
            raise CommandError("this agent runs insecure (no keys)")
        keys = self.keyring.keys()
        members = await self._fan_out(KeyOp("list"))
        return KeyList(primary=keys[0], keys=keys, members=members)

    async def _h_keys_op(self, req: Any) -> KeyResults:
        assert self.keyring is not None and self.store is not None
        op = {KeysInstall: "install", KeysUse: "use", KeysRemove: "remove"}[type(req)]
        key: bytes = req.key
        if self.keyring.is_insecure:
            raise CommandError("this agent runs insecure (no keys)")
        local = apply_key_op(self.keyring, op, key)
        if not local.ok:
            raise CommandError(local.error)
        log.info("keyring: %s %s", op, _fingerprint(key))
        self._keys_dirty = True
        self._dirty.set()
        self._publish("keyring_changed", detail=f"{op} {_fingerprint(key)}")
        me = KeyMemberResult(
            name=self.config.node.name,
            node_id=self.store.node_id,
            addr=f"{self.addr[0]}:{self.addr[1]}",
            ok=True,
            keys=local.keys,
        )
        return KeyResults(op=op, members=[me, *await self._fan_out(KeyOp(op, key))])

    async def _fan_out(self, msg: KeyOp) -> list[KeyMemberResult]:
        """Send ``msg`` over sealed TCP to every alive member at once; one result row per member."""
        assert self.swim is not None and self.transport is not None
        transport = self.transport
        targets = [m for m in self.swim.members()[1:] if m.state == State.ALIVE]
        results: list[KeyMemberResult | None] = [None] * len(targets)
        limiter = trio.CapacityLimiter(KEY_FANOUT)

        async def one(i: int, m: MemberView) -> None:
            async with limiter:
                reply = await transport.request(m.addr, msg)
            ok, error, keys = False, "no reply (unreachable, or it cannot open our key)", []
            if isinstance(reply, KeyOpReply):
                ok, error, keys = reply.ok, reply.error, list(reply.keys)
            elif reply is not None:
                error = f"unexpected reply {type(reply).__name__}"
            results[i] = KeyMemberResult(
                name=m.name, node_id=m.node_id, addr=f"{m.addr[0]}:{m.addr[1]}", ok=ok, error=error, keys=keys
            )

        async with trio.open_nursery() as nursery:
            for i, m in enumerate(targets):
                nursery.start_soon(one, i, m)
        return [r for r in results if r is not None]


def _fingerprint(key: bytes) -> str:
    """The same non-secret key name ``check-config`` shows."""
    return key_fingerprint(encode_key(key))


__all__ = ["HEAVY_MODULES", "Node", "Service", "heavy_modules_loaded", "resolve"]
