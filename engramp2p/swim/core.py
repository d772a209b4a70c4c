"""The SWIM + Lifeguard membership protocol as one sans-IO object, ``Swim``.

It follows hashicorp/memberlist (probe cycle, nacks, awareness, dynamic suspicion, buddy system,
piggybacked broadcasts, push-pull) plus Serf's handling of failed members (tombstones retried until
``reconnect_timeout``). Where we depart from memberlist, on purpose:

- fast confirmations (``SwimConfig.fast_confirm``): a member that learns of a suspicion probes the
  suspect next with probability ``min(1, 2k/n)``; its failed probe confirms;
- stall guard: a timer handled more than a probe interval late (a paused process, a starved loop)
  does not condemn anyone at once: the indirect probes get their full window and a suspicion one more
  probe interval, so refutations waiting in the receive buffer are read first;
- dead re-tell: a peer that asks us to relay a ping to a member we hold dead, or sends a suspicion
  about it, missed the Dead broadcast (its retransmit limit is small); we tell it again rather than
  let it wait out a maximal suspicion alone (local profile, 5 peers: the slowest survivor's detection
  fell from 20.7 s to 8.1 s over 20 seeds);
- ``n`` in memberlist's formulas counts live members (alive + suspect + us), since our dead
  tombstones live for a day and would inflate it.

The driver feeds it packets, stream exchanges and ``tick(now)`` at ``next_deadline()``; it returns
actions. Nothing here reads a clock or touches a socket, and nothing a peer sends can make it raise:
bad or misrouted input is counted in ``counters`` and dropped.

Cost model: per packet and per timer the work is O(messages) plus O(log n) heap operations. O(n) work
happens only when the probe list is reshuffled (once per round) and for push-pull state exchange.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from engramp2p.bounds import MAX_MEMBERS, MAX_META_BYTES
from engramp2p.sansio import Action, Addr, Emit, SendPacket, SendStream
from engramp2p.swim.awareness import Awareness
from engramp2p.swim.broadcast import (
    MAX_PACKET_MESSAGES,
    PACKET_OVERHEAD,
    BroadcastQueue,
    encoded_size,
    retransmit_limit,
)
from engramp2p.swim.config import SwimConfig
from engramp2p.swim.events import (
    IncarnationChanged,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberRecovered,
    MemberRefuted,
    MemberSuspected,
    MemberUpdated,
)
from engramp2p.swim.messages import (
    Ack,
    Alive,
    Dead,
    IndirectPing,
    MemberState,
    Nack,
    Ping,
    PushPull,
    State,
    Suspect,
    SwimMessage,
)
from engramp2p.swim.state import IndexedSet, LocalNode, Member, MemberView, plausible
from engramp2p.swim.suspicion import Suspicion, required_confirmations, suspicion_timeout

U64_MAX = 2**64 - 1
SEQ_MOD = 2**32
MAX_RELAYS = 1024
"""Indirect probes we relay at once; more are dropped (a flood of ping-reqs must not grow memory)."""
RTT_ALPHA = 0.125
"""Weight of a new sample in the smoothed RTT (TCP's SRTT gain)."""
_INF = math.inf

_SUSPICION_TIMER = 0
_RELAY_TIMER = 1


def push_pull_scale(interval: float, n: int) -> float:
    """memberlist's ``pushPullScale``: full-state syncs slow down beyond 32 members."""
    if n <= 32:
        return interval
    return interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)


class _Probe:
    """The one probe in flight: direct ping sent at ``sent``, indirect at ``timeout_at``, verdict at ``deadline``."""

    __slots__ = (
        "seq",
        "target",
        "addr",
        "sent",
        "timeout_at",
        "deadline",
        "indirect",
        "expected_nacks",
        "nacks",
    )

    def __init__(self, seq: int, target: bytes, addr: Addr, sent: float, timeout_at: float, deadline: float):
        self.seq = seq
        self.target = target
        self.addr = addr
        self.sent = sent
        self.timeout_at = timeout_at
        self.deadline = deadline
        self.indirect = False
        self.expected_nacks = 0
        self.nacks = 0


class _Relay:
    """A ping we send on behalf of ``source`` (an indirect probe): forward its ack, or nack at ``deadline``."""

    __slots__ = ("source_seq", "source", "nack", "deadline")

    def __init__(self, source_seq: int, source: Addr, nack: bool, deadline: float) -> None:
        self.source_seq = source_seq
        self.source = source
        self.nack = nack
        self.deadline = deadline


class Swim:
    """One peer's membership state machine (see the module docstring)."""

    def __init__(
        self,
        config: SwimConfig,
        me: LocalNode,
        rng: random.Random,
        *,
        seeds: Sequence[Addr] = (),
        packet_budget: int = 1400 - 40,
    ) -> None:
        if len(me.node_id) != 16:
            raise ValueError("node_id must be 16 bytes")
        if len(me.meta) > MAX_META_BYTES:
            raise ValueError(f"member metadata exceeds {MAX_META_BYTES} bytes")
        self.config = config
        self.me = me
        self._id = me.node_id
        self._addr: Addr = (me.host, me.port)
        self._name = me.name
        self._meta = me.meta
        self.incarnation = me.incarnation
        self._rng = rng
        self._seeds: list[Addr] = [(s[0], s[1]) for s in seeds if (s[0], s[1]) != self._addr]
        self._budget = packet_budget
        self._counts: dict[str, int] = {}
        # The two counts bumped for nearly every packet live outside the dict (see ``counters``).
        self._packets_in = 0
        self._stale_claims = 0

        self._members: dict[bytes, Member] = {}
        self._alive: IndexedSet[bytes] = IndexedSet()  # ALIVE others: indirect helpers, push-pull partners
        self._gossipable: IndexedSet[bytes] = IndexedSet()  # alive, suspect, and recently dead/left
        self._dead: IndexedSet[bytes] = IndexedSet()  # DEAD (not left) tombstones: reconnect candidates
        self._n_suspect = 0
        self._queue = BroadcastQueue()
        self._pending = self._queue.pending
        self._awareness = Awareness(config.awareness_max_multiplier)

        self._probe_list: list[bytes] = []
        self._probe_index = 0
        self._urgent: deque[bytes] = deque()
        self._probe: _Probe | None = None
        self._seq = rng.randrange(SEQ_MOD)
        self._relays: dict[int, _Relay] = {}
        self._timers: list[tuple[float, int, int, Any]] = []
        self._timer_order = 0
        self._streams: dict[int, str] = {}
        self._token = 0
        # Our push-pull messages (as a reply, as a request, as a join), rebuilt only after the table
        # changed: in a formed cluster nearly every exchange sends the same thousand states again.
        self._push_pulls: tuple[PushPull, PushPull] | None = None
        # The same states as a set, built on the first merge that can use it (see ``_merge``).
        self._known_states: tuple[tuple[PushPull, PushPull], frozenset[MemberState]] | None = None
        # (expiry, node_id, last_change): timeouts are constant, so expiries arrive in order.
        self._dead_reap: deque[tuple[float, bytes, float]] = deque()
        self._left_reap: deque[tuple[float, bytes, float]] = deque()
        self._reap_due = _INF  # the earlier of the two heads, so ``tick`` tests one float

        self._started = False
        self._leaving = False
        self._leave_at = _INF
        self._leave_waited = False
        self._next_probe = _INF
        self._next_gossip = _INF
        self._next_push_pull = _INF
        self._next_reconnect = _INF
        self._next_seed = _INF
        self._fixed_due = _INF
        self._seed_backoff = config.seed_retry_min
        self._out: list[Action] = []
        self._limit_n = -1
        self._limit = 0
        # Upper bounds of our own fixed-shape messages (largest seq), so sending costs no encoding.
        self._ping_size = encoded_size(Ping(SEQ_MOD - 1, self._id, self._id, self._addr[0], self._addr[1]))
        self._ack_size = encoded_size(Ack(SEQ_MOD - 1))

    # ------------------------------------------------------------------ read side

    def members(self) -> list[MemberView]:
        """Every member we know, ourselves first; dead and left tombstones included."""
        return [self._self_view()] + [m.view() for m in self._members.values()]

    def alive_ids(self) -> set[bytes]:
        """Node ids of the other members we hold alive: what convergence checks need, without a
        snapshot per member."""
        return set(self._alive)

    def member(self, node_id: bytes) -> MemberView | None:
        if node_id == self._id:
            return self._self_view()
        m = self._members.get(node_id)
        return m.view() if m is not None else None

    @property
    def counters(self) -> dict[str, int]:
        """What was counted (packets, stale claims, drops and refusals by reason), as a fresh dict."""
        out = dict(self._counts)
        if self._packets_in:
            out["packets_in"] = self._packets_in
        stale = self._stale_claims + self._counts.get("stale_claims", 0)
        if stale:
            out["stale_claims"] = stale
        return out

    @property
    def alive_count(self) -> int:
        """Alive members including ourselves (unless we are leaving)."""
        return len(self._alive) + (0 if self._leaving else 1)

    @property
    def health_score(self) -> int:
        """Lifeguard awareness: 0 is healthy, up to ``awareness_max_multiplier - 1``."""
        return self._awareness.score

    @property
    def leaving(self) -> bool:
        return self._leaving

    def left_done(self, now: float) -> bool:
        """After ``leave``: our departure has been sent enough times, or we waited long enough."""
        if not self._leaving:
            return False
        return self._id not in self._queue or now >= self._leave_at + self.config.leave_propagate_delay

    def next_deadline(self) -> float | None:
        """When to call ``tick`` next (None: not started). Called after every input, so it is O(1)."""
        if not self._started:
            return None
        d = self._fixed_due
        timers = self._timers
        if timers and timers[0][0] < d:
            d = timers[0][0]
        p = self._probe
        if p is not None:
            t = p.deadline if p.indirect else p.timeout_at
            if t < d:
                d = t
        if self._pending and self._next_gossip < d:
            d = self._next_gossip
        return None if d == _INF else d

    def _recompute_fixed_due(self) -> None:
        """Cache the earliest of the periodic timers and reap queues (they only move in tick/start/leave)."""
        if not self._started:
            d = _INF
        elif self._leaving:
            d = _INF if self._leave_waited else self._leave_at + self.config.leave_propagate_delay
        else:
            d = min(self._next_probe, self._next_push_pull, self._next_reconnect, self._next_seed)
        if self._reap_due < d:
            d = self._reap_due
        self._fixed_due = d

    # ------------------------------------------------------------------ driver inputs

    def start(self, now: float) -> list[Action]:
        """Begin probing and gossip (staggered like memberlist's tickers) and join the seeds, if any
        (not when ``restore`` already gave us live members: a shared table is its own bootstrap)."""
        out = self._begin()
        if self._started:
            return out
        self._started = True
        cfg, rng = self.config, self._rng
        self._next_probe = now + rng.random() * cfg.probe_interval
        self._next_gossip = now + rng.random() * cfg.gossip_interval
        self._next_push_pull = now + rng.random() * cfg.push_pull_interval
        self._next_reconnect = now + rng.random() * cfg.reconnect_interval
        self._queue.put(self._id, self._alive_msg())
        if self._seeds:
            if not self._alive:
                self._send_joins(self._seeds)
            self._seed_backoff = cfg.seed_retry_min
            self._next_seed = now + self._seed_backoff
        self._recompute_fixed_due()
        return out

    def restore(self, now: float, states: Sequence[MemberState]) -> list[Action]:
        """Take alive members as already known, without announcing them to anyone.

        For a start from a membership everybody already shares: the simulator's "formed cluster"
        start, or a restart from a persisted member list (call it before ``start``, which then skips
        the seed join). Unlike a push-pull merge nothing is queued for gossip (everyone knows), so a
        thousand peers cost a thousand table rows each rather than a flood of re-announcements.
        Members we know already and non-alive entries are skipped; the probe cycle then checks every
        restored member like any other.
        """
        out = self._begin()
        members = self._members
        room = MAX_MEMBERS - len(members)
        added: list[Member] = []
        for st in states:
            nid = st.node
            if st.state != State.ALIVE or nid == self._id or nid in members:
                continue
            if len(added) >= room:
                self._count("table_full")
                break
            addr = _shared_addr(st.host, st.port)
            m = members[nid] = Member(nid, st.name, addr, st.incarnation, State.ALIVE, st.meta, now)
            m.wire = st  # exactly its wire form: no need to build another
            added.append(m)
        if not added:
            return out
        # What ``_insert_alive`` does one member at a time, in bulk (a formed start restores n² rows).
        self._push_pulls = None
        ids = [m.node_id for m in added]
        self._alive.update(ids)
        self._gossipable.update(ids)
        for m in added:
            self._add_to_probe_list(m)
        out.extend([Emit(MemberJoined(m.view())) for m in added])
        return out

    def join(self, now: float, addrs: Sequence[Addr]) -> list[Action]:
        """Push-pull with each address; the replies arrive through ``handle_stream_reply``."""
        out = self._begin()
        self._send_joins([(a[0], a[1]) for a in addrs if (a[0], a[1]) != self._addr])
        return out

    def leave(self, now: float) -> list[Action]:
        """Announce a graceful leave and stop probing; poll ``left_done(now)`` before shutting down."""
        out = self._begin()
        if self._leaving:
            return out
        self._leaving = True
        self._push_pulls = None
        self._leave_at = now
        self._probe = None
        self._urgent.clear()
        self._queue.put(self._id, Dead(self.incarnation, self._id, self._id, True))
        self._gossip(now)
        self._recompute_fixed_due()
        return out

    def set_meta(self, now: float, meta: bytes) -> list[Action]:
        """Publish new metadata under a new incarnation (too large is a local error and raises)."""
        if len(meta) > MAX_META_BYTES:
            raise ValueError(f"member metadata exceeds {MAX_META_BYTES} bytes")
        out = self._begin()
        if self._leaving:
            return out
        self._meta = meta
        self._push_pulls = None
        self._set_incarnation(self.incarnation + 1)
        self._queue.put(self._id, self._alive_msg())
        return out

    def handle_packet(self, now: float, src: Addr, msgs: Sequence[SwimMessage]) -> list[Action]:
        """Dispatch each message of one datagram.

        A stale ``Alive`` (news we already hold) is by far the most common message while a cluster forms
        (every join is re-gossiped ~16 times by every peer), so it is recognised inline, without a call.
        """
        out: list[Action] = []
        self._out = out  # ``_begin`` inlined here and in ``tick``: they run for every input
        self._packets_in += 1
        handlers = _HANDLERS
        members_get = self._members.get
        stale = 0
        for msg in msgs:
            cls = type(msg)
            if cls is Alive:
                m = members_get(msg.node)  # type: ignore[union-attr]
                if m is not None and msg.incarnation <= m.incarnation:  # type: ignore[union-attr]
                    stale += 1
                else:
                    self._on_alive(now, msg)  # type: ignore[arg-type]
                continue
            handler = handlers.get(cls)
            if handler is None:
                self._count("msg_unexpected")
                continue
            handler(self, now, src, msg)
        if stale:
            self._stale_claims += stale
        return out

    def handle_stream_request(
        self, now: float, src: Addr, msg: PushPull
    ) -> tuple[PushPull | None, list[Action]]:
        """Answer a push-pull with our state as it was before merging theirs (as memberlist does)."""
        out = self._begin()
        if not isinstance(msg, PushPull):
            self._count("stream_unexpected")
            return None, out
        self._count("push_pull_in")
        reply = self._push_pull(False)
        self._merge(now, msg.states)
        return reply, out

    def handle_stream_reply(self, now: float, token: int, reply: PushPull | None) -> list[Action]:
        out = self._begin()
        purpose = self._streams.pop(token, None)
        if purpose is None:
            self._count("stream_unknown_token")
            return out
        if not isinstance(reply, PushPull):
            self._count(f"{purpose}_failed")
            return out
        self._count(f"{purpose}_ok")
        self._merge(now, reply.states)
        return out

    def tick(self, now: float) -> list[Action]:
        """Fire every timer that is due at ``now``."""
        out: list[Action] = []
        self._out = out
        if not self._started:
            return out
        cfg = self.config
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, _, kind, key = heapq.heappop(timers)
            if kind == _SUSPICION_TIMER:
                self._suspicion_fired(now, when, key)
            else:
                self._relay_expired(when, key)

        p = self._probe
        if p is not None and not p.indirect and now >= p.timeout_at:
            self._send_indirect(now, p)
        if p is not None and p.indirect and now >= p.deadline:
            self._probe_failed(now, p)

        # The periodic timers and tombstone expiries are due together at most once a probe interval;
        # ``_fixed_due`` is never later than any of them, so most ticks (probe timeouts, gossip)
        # skip this part with one comparison.
        due = now >= self._fixed_due
        if due and not self._leaving:
            if now >= self._next_probe:
                if self._probe is not None:
                    self._next_probe = self._probe.deadline
                else:
                    self._start_probe(now)
                    self._next_probe = _advance(self._next_probe, cfg.probe_interval, now)
            if now >= self._next_push_pull:
                self._next_push_pull = now + push_pull_scale(cfg.push_pull_interval, self._live_count())
                self._periodic_push_pull()
            if now >= self._next_reconnect:
                self._next_reconnect = now + cfg.reconnect_interval
                self._reconnect(now)
            if now >= self._next_seed:
                self._retry_seeds(now)

        if now >= self._next_gossip:
            if self._pending:
                self._gossip(now)
            self._next_gossip = _advance(self._next_gossip, cfg.gossip_interval, now)

        if due:
            if self._leaving and now >= self._leave_at + cfg.leave_propagate_delay:
                self._leave_waited = True
            # Reaping is rare (tombstones expire after hours): one cached float, not a call per tick.
            if now >= self._reap_due:
                self._reap(now)
            self._recompute_fixed_due()
        return out

    # ------------------------------------------------------------------ probe cycle

    def _start_probe(self, now: float) -> None:
        target = self._pick_target()
        if target is None:
            return
        m = self._members[target]
        cfg = self.config
        seq = self._next_seq()
        msgs: list[Any] = [Ping(seq, target, self._id, self._addr[0], self._addr[1])]
        size = self._ping_size
        if m.state == State.SUSPECT:
            # Lifeguard's buddy system: tell the suspect directly, so it can refute at once.
            buddy = Suspect(m.incarnation, target, self._id)
            msgs.append(buddy)
            size += encoded_size(buddy)
        deadline = now + self._awareness.scale_timeout(cfg.probe_interval)
        self._probe = _Probe(seq, target, m.addr, now, now + cfg.probe_timeout, deadline)
        self._count("probes")
        self._send(m.addr, msgs, size)

    def _pick_target(self) -> bytes | None:
        members = self._members
        while self._urgent:
            nid = self._urgent.popleft()
            m = members.get(nid)
            if m is not None and m.state == State.SUSPECT:
                self._count("probes_fast_confirm")
                return nid
        reshuffled = False
        while True:
            if self._probe_index >= len(self._probe_list):
                if reshuffled:
                    return None
                self._reset_probe_list()
                reshuffled = True
                continue
            nid = self._probe_list[self._probe_index]
            self._probe_index += 1
            m = members.get(nid)
            if m is None:
                continue
            if m.state >= State.DEAD:
                m.in_probe_list = False
                continue
            return nid

    def _reset_probe_list(self) -> None:
        """Start a new round over a fresh shuffle of every alive or suspect member (O(n), once a round)."""
        order: list[bytes] = []
        for nid, m in self._members.items():
            live = m.state < State.DEAD
            m.in_probe_list = live
            if live:
                order.append(nid)
        self._rng.shuffle(order)
        self._probe_list = order
        self._probe_index = 0

    def _add_to_probe_list(self, m: Member) -> None:
        """Insert at a random place still ahead in this round, so it is probed before the next reshuffle."""
        if m.in_probe_list:
            return
        m.in_probe_list = True
        lst = self._probe_list
        lst.append(m.node_id)
        start = self._probe_index
        # ``int(random() * n)`` rather than ``randrange``: the same uniform pick (53 random bits for at
        # most MAX_MEMBERS slots) at a fifth of the cost; this runs for every member we learn of.
        j = start + int(self._rng.random() * (len(lst) - start))
        lst[j], lst[-1] = lst[-1], lst[j]

    def _send_indirect(self, now: float, p: _Probe) -> None:
        p.indirect = True
        if now > p.timeout_at:
            # We were stalled (a paused process, an overloaded loop): the helpers still get their full
            # window, or we would suspect the target for our own delay.
            p.deadline = max(p.deadline, now + (p.deadline - p.timeout_at))
        k = self.config.indirect_checks
        helpers = [h for h in self._alive.sample(self._rng, k + 1) if h != p.target][:k]
        for h in helpers:
            hm = self._members[h]
            req = IndirectPing(
                p.seq, p.target, p.addr[0], p.addr[1], True, self._id, self._addr[0], self._addr[1]
            )
            self._send(hm.addr, [req])
        p.expected_nacks = len(helpers)
        self._count("indirect_probes")

    def _probe_failed(self, now: float, p: _Probe) -> None:
        self._probe = None
        # Lifeguard: missing nacks mean the trouble may be ours; with nobody to ask, any failure counts.
        if p.expected_nacks > 0:
            self._awareness.apply_delta(max(0, p.expected_nacks - p.nacks))
        else:
            self._awareness.apply_delta(1)
        self._count("probes_failed")
        m = self._members.get(p.target)
        if m is not None and m.state < State.DEAD:
            self._on_suspect(now, Suspect(m.incarnation, p.target, self._id))

    def _on_ping(self, now: float, src: Addr, ping: Ping) -> None:
        if ping.target != self._id:
            # Meant for a previous occupant of our address.
            self._count("ping_misrouted")
            return
        self._send((ping.source_host, ping.source_port), [Ack(ping.seq)], self._ack_size)

    def _on_indirect_ping(self, now: float, src: Addr, req: IndirectPing) -> None:
        source = (req.source_host, req.source_port)
        if req.target == self._id:
            self._send(source, [Ack(req.seq)])
            return
        if len(self._relays) >= MAX_RELAYS:
            self._count("relay_dropped")
            return
        m = self._members.get(req.target)
        if m is not None and m.state == State.DEAD:
            # The asker still probes a member we declared dead: it missed our Dead broadcast (the
            # retransmit limit is small) and would wait out a long suspicion alone. Tell it now; we
            # still relay the ping, so a target that is in fact alive gets its ack through.
            self._send(source, [Dead(m.incarnation, req.target, self._id)])
            self._count("dead_told")
        seq = self._next_seq()
        deadline = now + self.config.probe_timeout
        self._relays[seq] = _Relay(req.seq, source, req.nack, deadline)
        self._push_timer(deadline, _RELAY_TIMER, seq)
        self._send(
            (req.target_host, req.target_port),
            [Ping(seq, req.target, self._id, self._addr[0], self._addr[1])],
        )

    def _relay_expired(self, when: float, seq: int) -> None:
        r = self._relays.get(seq)
        if r is None or r.deadline != when:
            return
        del self._relays[seq]
        if r.nack:
            self._send(r.source, [Nack(r.source_seq)])

    def _on_ack(self, now: float, src: Addr, ack: Ack) -> None:
        p = self._probe
        if p is not None and p.seq == ack.seq:
            self._probe = None
            if not p.indirect:
                if self._awareness.score:  # healthy peers (score 0) skip the call
                    self._awareness.apply_delta(-1)
                if src == p.addr:
                    m = self._members.get(p.target)
                    if m is not None:
                        rtt = now - p.sent
                        m.rtt = rtt if m.rtt is None else m.rtt + RTT_ALPHA * (rtt - m.rtt)
            return
        r = self._relays.pop(ack.seq, None)
        if r is not None:
            self._send(r.source, [Ack(r.source_seq)], self._ack_size)
            return
        self._count("ack_unknown")

    def _on_nack(self, now: float, src: Addr, nack: Nack) -> None:
        p = self._probe
        if p is not None and p.seq == nack.seq:
            p.nacks += 1
        else:
            self._count("nack_unknown")

    # ------------------------------------------------------------------ membership news

    def _on_suspect_msg(self, now: float, src: Addr, s: Suspect) -> None:
        self._on_suspect(now, s)

    def _on_dead_msg(self, now: float, src: Addr, d: Dead) -> None:
        self._on_dead(now, d)

    def _on_alive(self, now: float, a: Alive) -> None:
        """memberlist's ``aliveNode`` for another member (ourselves: ``_alive_about_self``)."""
        nid = a.node
        if nid == self._id:
            self._alive_about_self(a)
            return
        addr = _shared_addr(a.host, a.port)
        m = self._members.get(nid)
        if m is None:
            if self._insert_alive(now, nid, a.name, addr, a.incarnation, a.meta) is not None:
                self._queue.put(nid, a)
            return
        if a.incarnation <= m.incarnation:
            self._count("stale_claims")
            return
        if not plausible(m.incarnation, a.incarnation, self.config.max_incarnation_jump):
            self._count("implausible_incarnation")
            return
        old = m.state
        changed = m.meta != a.meta or m.addr != addr or m.name != a.name
        m.incarnation = a.incarnation
        m.meta = a.meta
        m.addr = addr
        m.name = a.name
        m.wire = None
        self._push_pulls = None
        if old != State.ALIVE:
            self._change_state(m, State.ALIVE, now)
        self._queue.put(nid, a)
        if old == State.DEAD:
            self._emit(MemberRecovered(m.view()))
        elif old == State.LEFT:
            self._emit(MemberJoined(m.view()))
        else:
            if old == State.SUSPECT:
                self._emit(MemberRefuted(m.view()))
            if changed:
                self._emit(MemberUpdated(m.view()))

    def _insert_alive(
        self, now: float, nid: bytes, name: str, addr: Addr, inc: int, meta: bytes
    ) -> Member | None:
        """Add a member we did not know, alive (None: the table is full). Runs n² times while a
        cluster forms, hence ``_enter_state`` for ALIVE inlined."""
        if len(self._members) >= MAX_MEMBERS:
            self._count("table_full")
            return None
        m = Member(nid, name, addr, inc, State.ALIVE, meta, now)
        self._members[nid] = m
        self._push_pulls = None
        self._alive.add(nid)
        self._gossipable.add(nid)
        self._add_to_probe_list(m)
        self._out.append(Emit(MemberJoined(m.view())))
        return m

    def _alive_about_self(self, a: Alive) -> None:
        if self._leaving or a.incarnation < self.incarnation:
            return
        if (
            a.incarnation == self.incarnation
            and a.meta == self._meta
            and a.host == self._addr[0]
            and a.port == self._addr[1]
            and a.name == self._name
        ):
            return
        self._refute(a.incarnation)

    def _on_suspect(self, now: float, s: Suspect) -> None:
        nid = s.node
        if nid == self._id:
            if not self._leaving and s.incarnation >= self.incarnation:
                self._refute(s.incarnation)
            return
        m = self._members.get(nid)
        if m is None:
            self._count("unknown_member")
            return
        if s.incarnation < m.incarnation:
            self._count("stale_claims")
            return
        if m.state == State.SUSPECT:
            susp = m.suspicion
            if susp is not None and susp.confirm(s.source):
                self._push_timer(susp.deadline, _SUSPICION_TIMER, nid)
                self._queue.put(nid, s)
            return
        if m.state == State.DEAD:
            # Someone still suspects a member we already declared dead: it missed our Dead (the
            # retransmit limit is small) and would wait out its full timer alone. Tell it again.
            if nid not in self._queue:
                self._queue.put(nid, Dead(m.incarnation, nid, self._id))
                self._count("dead_rebroadcast")
            return
        if m.state != State.ALIVE:
            return
        if not plausible(m.incarnation, s.incarnation, self.config.max_incarnation_jump):
            self._count("implausible_incarnation")
            return
        cfg = self.config
        m.incarnation = s.incarnation
        self._change_state(m, State.SUSPECT, now)
        n = self._live_count()
        k = required_confirmations(cfg.suspicion_mult, n)
        min_t = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
        susp = m.suspicion = Suspicion(now, s.source, k, min_t, cfg.suspicion_max_timeout_mult * min_t)
        self._push_timer(susp.deadline, _SUSPICION_TIMER, nid)
        self._queue.put(nid, s)
        self._emit(MemberSuspected(m.view()))
        if (
            cfg.fast_confirm
            and k > 0
            and s.source != self._id
            and not self._leaving
            and self._rng.random() < min(1.0, 2.0 * k / n)
        ):
            self._urgent.append(nid)

    def _suspicion_fired(self, now: float, when: float, nid: bytes) -> None:
        m = self._members.get(nid)
        if m is None or m.state != State.SUSPECT or m.suspicion is None or m.suspicion.deadline != when:
            return
        if now - when > self.config.probe_interval:
            # The timer fired long after its deadline, so we were stalled; a refutation may be waiting
            # in our receive buffer. Give it one probe interval before declaring the member dead.
            m.suspicion.deadline = now + self.config.probe_interval
            self._push_timer(m.suspicion.deadline, _SUSPICION_TIMER, nid)
            self._count("stall_grace")
            return
        if m.suspicion.n < m.suspicion.k:
            self._count("degraded_timeouts")
        self._on_dead(now, Dead(m.incarnation, nid, self._id))

    def _on_dead(self, now: float, d: Dead) -> None:
        nid = d.node
        if nid == self._id:
            if not self._leaving and d.incarnation >= self.incarnation:
                self._refute(d.incarnation)
            return
        m = self._members.get(nid)
        if m is None:
            self._count("unknown_member")
            return
        if d.incarnation < m.incarnation:
            self._count("stale_claims")
            return
        left = d.left and d.source == nid
        if m.state == State.LEFT or (m.state == State.DEAD and not left):
            return
        if not plausible(m.incarnation, d.incarnation, self.config.max_incarnation_jump):
            self._count("implausible_incarnation")
            return
        m.incarnation = d.incarnation
        self._change_state(m, State.LEFT if left else State.DEAD, now)
        self._queue.put(nid, d)
        self._emit(MemberLeft(m.view()) if left else MemberFailed(m.view()))

    def _refute(self, accused: int) -> None:
        """Never believe a claim that we are suspect, dead or stale: outbid it and say we are alive."""
        if not plausible(self.incarnation, accused, self.config.max_incarnation_jump):
            self._count("implausible_incarnation")
            return
        inc = max(self.incarnation, accused) + 1
        if inc > U64_MAX:
            self._count("incarnation_exhausted")
            return
        self._set_incarnation(inc)
        self._awareness.apply_delta(1)
        self._queue.put(self._id, self._alive_msg())
        self._count("refutes")

    def _set_incarnation(self, inc: int) -> None:
        self.incarnation = inc
        self._push_pulls = None
        self._emit(IncarnationChanged(inc))

    # ------------------------------------------------------------------ state indexes

    def _enter_state(self, m: Member, now: float) -> None:
        """Add a member to the indexes of its (new) state."""
        st = m.state
        nid = m.node_id
        if st == State.ALIVE:
            self._alive.add(nid)
            self._gossipable.add(nid)
            self._add_to_probe_list(m)
        elif st == State.SUSPECT:
            self._n_suspect += 1
            self._gossipable.add(nid)
            self._add_to_probe_list(m)
        elif st == State.DEAD:
            self._dead.add(nid)
            self._gossipable.add(nid)
            expiry = now + self.config.reconnect_timeout
            self._dead_reap.append((expiry, nid, now))
            self._reap_due = min(self._reap_due, expiry)
            self._fixed_due = min(self._fixed_due, expiry)
            if not self._alive and self._seeds and not self._leaving and self._started:
                self._next_seed = min(self._next_seed, now + self.config.seed_retry_min)
                self._fixed_due = min(self._fixed_due, self._next_seed)
        else:
            self._gossipable.add(nid)
            expiry = now + self.config.left_reap_timeout
            self._left_reap.append((expiry, nid, now))
            self._reap_due = min(self._reap_due, expiry)
            self._fixed_due = min(self._fixed_due, expiry)

    def _leave_state(self, m: Member) -> None:
        st = m.state
        if st == State.ALIVE:
            self._alive.discard(m.node_id)
        elif st == State.SUSPECT:
            self._n_suspect -= 1
            m.suspicion = None
        elif st == State.DEAD:
            self._dead.discard(m.node_id)

    def _change_state(self, m: Member, new: State, now: float) -> None:
        self._leave_state(m)
        m.state = new
        m.last_change = now
        m.wire = None
        self._push_pulls = None
        self._enter_state(m, now)

    def _retransmit_limit(self) -> int:
        """``retransmit_limit`` for the current live count, recomputed only when that count changes
        (it is asked for every packet that piggybacks broadcasts)."""
        n = len(self._alive) + self._n_suspect + 1
        if n != self._limit_n:
            self._limit_n = n
            self._limit = retransmit_limit(self.config.retransmit_mult, n)
        return self._limit

    def _live_count(self) -> int:
        """Members not dead or left, ourselves included: the ``n`` of memberlist's formulas."""
        return len(self._alive) + self._n_suspect + 1

    def _reap(self, now: float) -> None:
        for dq, state in ((self._dead_reap, State.DEAD), (self._left_reap, State.LEFT)):
            while dq and dq[0][0] <= now:
                _, nid, changed = dq.popleft()
                m = self._members.get(nid)
                if m is None or m.state != state or m.last_change != changed:
                    continue
                self._leave_state(m)
                del self._members[nid]
                self._push_pulls = None
                self._gossipable.discard(nid)
                self._emit(MemberReaped(m.view()))
        dr, lr = self._dead_reap, self._left_reap
        self._reap_due = min(dr[0][0] if dr else _INF, lr[0][0] if lr else _INF)

    # ------------------------------------------------------------------ gossip and push-pull

    def _gossip(self, now: float) -> None:
        """Send queued broadcasts to a few random members, including the recently dead (memberlist)."""
        limit = self._retransmit_limit()
        for m in self._gossip_targets(now, self.config.gossip_nodes):
            msgs, _ = self._queue.take(self._budget - PACKET_OVERHEAD, limit, MAX_PACKET_MESSAGES)
            if not msgs:
                break
            self._out.append(SendPacket(m.addr, tuple(msgs)))

    def _gossip_targets(self, now: float, k: int) -> list[Member]:
        chosen: dict[bytes, Member] = {}
        pool = self._gossipable
        tries = 0
        dead_time = self.config.gossip_to_the_dead_time
        while len(chosen) < k and tries < 3 * k and len(pool):
            tries += 1
            nid = pool.choice(self._rng)
            m = self._members.get(nid)
            if m is None:
                pool.discard(nid)
                continue
            if m.state >= State.DEAD and now - m.last_change > dead_time:
                pool.discard(nid)
                continue
            chosen[nid] = m
        return list(chosen.values())

    def _push_pull(self, join: bool) -> PushPull:
        """Our full state as a push-pull message; the same object until the table changes (the states
        list is shared and never mutated, so handing it out twice is safe)."""
        cached = self._push_pulls
        if cached is None:
            states = self._local_states()
            cached = self._push_pulls = (PushPull(False, states), PushPull(True, states))
        return cached[join]

    def _local_states(self) -> list[MemberState]:
        own = MemberState(
            self._id,
            self._name,
            self._addr[0],
            self._addr[1],
            self.incarnation,
            int(State.LEFT if self._leaving else State.ALIVE),
            self._meta,
        )
        states = [own]
        # ``wire`` is cached until the member changes, so most of this is a list copy.
        states.extend([m.wire or m.to_wire() for m in self._members.values()])
        return states[:MAX_MEMBERS]

    def _merge(self, now: float, states: Sequence[MemberState]) -> None:
        """memberlist's ``mergeState``; a remote dead becomes suspect here so a live member can refute.

        Members new to us are re-gossiped as memberlist does. We measured the alternative (the joiner
        does not re-gossip the table it pulled): a third fewer stale messages at 300 peers, no CPU
        saved, and full convergence 5-60 s later instead of 1-17 s, so we keep memberlist's way.
        """
        cached = self._push_pulls
        if cached is not None:
            # Our table has not changed since we last built our own push-pull, so a peer that
            # agrees with us on every member sends nothing that set lacks: one C-level check
            # instead of a Python loop over a thousand states (the steady state's periodic sync).
            known = self._known_states
            if known is None or known[0] is not cached:
                known = self._known_states = (cached, frozenset(cached[0].states))
            if known[1].issuperset(states):
                return
        get = self._members.get
        for s in states:
            m = get(s.node)
            if m is not None:
                # The common case in a periodic exchange: nothing new about a member we know.
                inc = s.incarnation
                if inc < m.incarnation or (inc == m.incarnation and s.state == m.state):
                    continue
            st = s.state
            if st == State.ALIVE:
                self._on_alive(now, Alive(s.incarnation, s.node, s.name, s.host, s.port, s.meta))
            elif st == State.LEFT:
                self._on_dead(now, Dead(s.incarnation, s.node, s.node, True))
            else:
                self._on_suspect(now, Suspect(s.incarnation, s.node, self._id))

    def _push_pull_to(self, addr: Addr, purpose: str, join: bool) -> None:
        self._token += 1
        self._streams[self._token] = purpose
        self._count(f"{purpose}_sent")
        self._out.append(SendStream(addr, self._push_pull(join), self._token))

    def _send_joins(self, addrs: Sequence[Addr]) -> None:
        for addr in addrs:
            self._push_pull_to(addr, "join", True)

    def _periodic_push_pull(self) -> None:
        if len(self._alive):
            m = self._members[self._alive.choice(self._rng)]
            self._push_pull_to(m.addr, "push_pull", False)

    def _reconnect(self, now: float) -> None:
        """Serf's reconnect: try one random failed member, with probability failed/alive per peer."""
        n_failed = len(self._dead)
        if n_failed == 0:
            return
        if self._rng.random() > n_failed / self.alive_count:
            return
        m = self._members[self._dead.choice(self._rng)]
        self._push_pull_to(m.addr, "reconnect", True)

    def _retry_seeds(self, now: float) -> None:
        cfg = self.config
        if not self._seeds:
            self._next_seed = _INF
            return
        if len(self._alive):
            self._seed_backoff = cfg.seed_retry_min
            self._next_seed = now + cfg.seed_retry_max
            return
        self._send_joins(self._seeds)
        self._next_seed = now + self._seed_backoff
        self._seed_backoff = min(cfg.seed_retry_max, self._seed_backoff * 2)

    # ------------------------------------------------------------------ plumbing

    def _begin(self) -> list[Action]:
        self._out = []
        return self._out

    def _emit(self, event: Any) -> None:
        self._out.append(Emit(event))

    def _count(self, name: str) -> None:
        self._counts[name] = self._counts.get(name, 0) + 1

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % SEQ_MOD
        return self._seq

    def _push_timer(self, when: float, kind: int, key: Any) -> None:
        self._timer_order += 1
        heapq.heappush(self._timers, (when, self._timer_order, kind, key))

    def _send(self, addr: Addr, msgs: list[Any], size: int = 0) -> None:
        """One datagram: ``msgs`` first, then as many queued broadcasts as fit in the packet budget.

        ``size`` is the encoded size of ``msgs`` when the caller knows it (0: measure here).
        """
        if not size:
            for msg in msgs:
                size += encoded_size(msg)
        size += PACKET_OVERHEAD
        if self._pending:
            limit = self._retransmit_limit()
            extra, _ = self._queue.take(self._budget - size, limit, MAX_PACKET_MESSAGES - len(msgs))
            msgs.extend(extra)
        self._out.append(SendPacket(addr, tuple(msgs)))

    def _alive_msg(self) -> Alive:
        return Alive(self.incarnation, self._id, self._name, self._addr[0], self._addr[1], self._meta)

    def _self_view(self) -> MemberView:
        return MemberView(
            self._id,
            self._name,
            self._addr,
            State.LEFT if self._leaving else State.ALIVE,
            self.incarnation,
            self._meta,
            self._leave_at if self._leaving else 0.0,
            0.0,
        )


#: Message type -> handler (``Alive`` is handled inline by ``handle_packet``). One table for every
#: ``Swim`` rather than a dict of bound methods per instance: with a thousand cores in one simulator
#: the per-instance dict was one more cold cache line per packet.
_HANDLERS: dict[type, Callable[[Swim, float, Addr, Any], None]] = {
    Ping: Swim._on_ping,
    IndirectPing: Swim._on_indirect_ping,
    Ack: Swim._on_ack,
    Nack: Swim._on_nack,
    Suspect: Swim._on_suspect_msg,
    Dead: Swim._on_dead_msg,
}


_ADDRS: dict[Addr, Addr] = {}
_MAX_SHARED_ADDRS = 65_536


def _shared_addr(host: str, port: int) -> Addr:
    """One ``(host, port)`` tuple per address for every ``Swim`` in the process, not one per member row.

    A simulator holds a thousand tables of a thousand rows; sharing the tuples saves ~70 MB and keeps
    the ones probes use hot in cache. Bounded: cleared when full (hostile gossip cannot grow it).
    """
    key = (host, port)
    addr = _ADDRS.get(key)
    if addr is None:
        if len(_ADDRS) >= _MAX_SHARED_ADDRS:
            _ADDRS.clear()
        addr = _ADDRS[key] = key
    return addr


def _advance(t: float, interval: float, now: float) -> float:
    """The next point on the ``t + k·interval`` grid after ``now`` (a ticker that drops missed ticks)."""
    t += interval
    if t <= now:
        t += (math.floor((now - t) / interval) + 1) * interval
    return t
