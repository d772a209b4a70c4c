"""The state `engramp2p top` shows, folded from snapshots, events and link failures. Pure: no I/O.

Snapshots (polled at the refresh rate) are authoritative; events arrive in between and move a member's
state at once so a failure shows up without waiting for the next poll. An event older than what the last
snapshot already shows (its ``ts`` is before the member's ``last_change``, or its incarnation is lower)
only goes to the log, so a late event cannot roll the table back.

The renderers never see ``TopModel`` itself: ``view()`` hands them an immutable ``View``, which is what
lets the app render in a worker thread while the event loop keeps folding.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from msgspec import structs

from engramp2p.ui.shapes import Event, Info, MemberRow, ShardPlacement, Snapshot

LOG_CAPACITY = 500
DEDUP_WINDOW = 2000  # a resubscription replays the agent's recent history; skip what we already folded

# Event kind -> the member state it implies (``updated`` changes no state).
EVENT_STATE: dict[str, str] = {
    "joined": "alive",
    "recovered": "alive",
    "refuted": "alive",
    "suspected": "suspect",
    "failed": "dead",
    "left": "left",
}

# Problems first, so a short terminal still shows them.
_SORT_RANK = {"suspect": 0, "dead": 1, "alive": 2, "left": 3}


@dataclass(frozen=True, slots=True)
class LogLine:
    """A line of the event log: an agent event, or a note from the UI itself (``kind == "ui"``)."""

    ts: float
    kind: str
    name: str
    incarnation: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class Link:
    """How the UI's connection to the agent is doing."""

    state: str = "connecting"  # "connecting" | "up" | "down"
    since: float = 0.0  # when it entered this state (wall clock)
    failures: int = 0  # consecutive failed attempts while down
    error: str = ""


@dataclass(frozen=True, slots=True)
class View:
    """Everything one frame needs, immutable so it can be rendered in another thread."""

    now: float
    target: str  # what we are watching (socket path, or "demo")
    refresh_hz: float
    members: tuple[MemberRow, ...]
    info: Info | None
    log: tuple[LogLine, ...]
    link: Link
    dropped: int
    self_id: str | None
    placement: tuple[ShardPlacement, ...] = ()  # shards x hosts with sync state (empty: no spaces)

    def count(self, state: str) -> int:
        return sum(1 for m in self.members if m.state == state)


@dataclass
class TopModel:
    """Mutable fold of everything the agent told us; only the event loop touches it."""

    target: str = ""
    refresh_hz: float = 4.0
    members: dict[str, MemberRow] = field(default_factory=dict)
    info: Info | None = None
    log: list[LogLine] = field(default_factory=list)  # ordered by ts, at most LOG_CAPACITY
    link: Link = field(default_factory=Link)
    dropped: int = 0
    placement: tuple[ShardPlacement, ...] = ()
    _seen: set[Event] = field(default_factory=set)
    _seen_order: deque[Event] = field(default_factory=deque)

    def apply_snapshot(self, now: float, snap: Snapshot) -> None:
        self.mark_up(now)
        self.members = {m.node_id: m for m in snap.members}
        if snap.info is not None:
            self.info = snap.info
        self.placement = snap.placement
        self.dropped += snap.dropped

    def apply_event(self, ev: Event) -> None:
        """Fold one event; the link state stays the poll loop's to decide. Returns nothing: an exact
        repeat (history replayed on resubscribe) is ignored."""
        if ev in self._seen:
            return
        self._seen.add(ev)
        self._seen_order.append(ev)
        if len(self._seen_order) > DEDUP_WINDOW:
            self._seen.discard(self._seen_order.popleft())
        self._log(LogLine(ev.ts, ev.kind, ev.name, ev.incarnation, ev.detail))
        state = EVENT_STATE.get(ev.kind)
        if not ev.node_id:
            return
        cur = self.members.get(ev.node_id)
        inc = ev.incarnation
        if cur is None:
            if state is not None:
                self.members[ev.node_id] = MemberRow(
                    name=ev.name or ev.node_id[:8],
                    node_id=ev.node_id,
                    addr="",
                    state=state,
                    incarnation=inc or 0,
                    last_change=ev.ts,
                )
            return
        if (inc is not None and inc < cur.incarnation) or ev.ts < cur.last_change:
            return  # already superseded by what the last snapshot showed
        inc = cur.incarnation if inc is None else inc
        if state is None or state == cur.state:
            if inc != cur.incarnation:
                self.members[ev.node_id] = structs.replace(cur, incarnation=inc)
            return
        self.members[ev.node_id] = structs.replace(cur, state=state, incarnation=inc, last_change=ev.ts)

    def count_dropped(self, n: int = 1) -> None:
        """Replies or events that did not fit their shape."""
        self.dropped += n

    def mark_up(self, now: float) -> None:
        if self.link.state == "up":
            return
        if self.link.state == "down":
            self._note(now, f"agent reachable again after {ago(now - self.link.since, suffix='')}")
        self.link = Link(state="up", since=now)

    def mark_down(self, now: float, error: str) -> None:
        """A poll or the event stream failed; keep the last known state on screen and say so."""
        if self.link.state == "down":
            self.link = Link("down", self.link.since, self.link.failures + 1, error)
            return
        self._note(now, f"agent unreachable: {error}")
        self.link = Link(state="down", since=now, failures=1, error=error)

    def _note(self, now: float, text: str) -> None:
        self._log(LogLine(now, "ui", "", None, text))

    def _log(self, line: LogLine) -> None:
        """Keep the log in time order: history replayed after a reconnect lands where it happened."""
        i = len(self.log)
        while i and self.log[i - 1].ts > line.ts:
            i -= 1
        self.log.insert(i, line)
        if len(self.log) > LOG_CAPACITY:
            del self.log[: len(self.log) - LOG_CAPACITY]

    def view(self, now: float, log_lines: int = 64) -> View:
        members = sorted(self.members.values(), key=lambda m: (_SORT_RANK.get(m.state, 4), m.name, m.node_id))
        tail = tuple(self.log[-log_lines:]) if log_lines > 0 else ()
        return View(
            now=now,
            target=self.target,
            refresh_hz=self.refresh_hz,
            members=tuple(members),
            info=self.info,
            log=tail,
            link=self.link,
            dropped=self.dropped,
            self_id=self.info.node.node_id if self.info else None,
            placement=self.placement,
        )


def ago(seconds: float, suffix: str = " ago") -> str:
    """Compact age, "3s ago" / "5m ago" / "2h ago" / "4d ago"; clock skew shows as "now"."""
    s = int(seconds)
    if s <= 0:
        return "now" if suffix else "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}{suffix}"
    return f"{s}s{suffix}"
