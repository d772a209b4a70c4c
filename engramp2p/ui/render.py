"""Pure functions from a ``View`` to rich renderables: the whole look of `engramp2p top`.

Nothing here does I/O or reads a clock (``View.now`` is the time of the frame), so a frame can be built
in a worker thread and tested headless with a recording console.

Layout, top to bottom: a one-line header (cluster size by state, own health score), the membership
table beside the side panels (topology, and below it the placement of shards over peers), the
scrolling event log and a one-line status bar. Everything is sized from the terminal: at 80 columns
the side panels collapse into a one-line "ring" of peers, the table drops its least useful columns and
truncates names, and on tiny terminals whole sections go, most important last (status, then header).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.layout import Layout
from rich.panel import Panel
from rich.text import Text

from engramp2p.ui.model import LogLine, View, ago
from engramp2p.ui.shapes import STATES, MemberRow, ShardPlacement

STATE_STYLE: dict[str, str] = {"alive": "green", "suspect": "yellow", "dead": "red", "left": "dim"}
STATE_GLYPH: dict[str, str] = {"alive": "●", "suspect": "◐", "dead": "✕", "left": "○"}
EVENT_STYLE: dict[str, str] = {
    "joined": "green",
    "recovered": "bold green",
    "refuted": "cyan",
    "updated": "blue",
    "suspected": "yellow",
    "failed": "bold red",
    "left": "dim",
    "ui": "magenta",
}

WIDE = 100  # at and above this width the side panels get their own column
SIDE_MIN, SIDE_MAX = 26, 40

# A side panel: (view, width, height) -> renderable, or None when it has nothing to show. Panels with
# something to show share the side column, stacked top to bottom.
SidePanel = Callable[[View, int, int], RenderableType | None]


def state_style(state: str) -> str:
    return STATE_STYLE.get(state, "")


def health_style(score: int) -> str:
    """Lifeguard awareness: 0 is healthy, every point stretches our probe interval."""
    return "green" if score == 0 else "yellow" if score <= 3 else "bold red"


def duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _line(text: Text, width: int) -> Text:
    text.no_wrap = True
    text.overflow = "ellipsis"
    text.truncate(max(width, 1), overflow="ellipsis")
    return text


# --- header and status -------------------------------------------------------------------------------


def header(view: View, width: int) -> Text:
    """One line: who we watch, cluster size by state, own health, uptime -- in the most verbose form
    that fits (the counts and the health score are what must survive a narrow terminal)."""
    stale = view.link.state == "down"
    for form in range(4):
        t = Text(" engramp2p " if form < 3 else "", style="bold reverse")
        if view.info is not None and form < 2:
            t.append(f" {view.info.node.name} ", style="bold")
        t.append(f" {len(view.members)} members: " if form < 2 else " ")
        for state in STATES:
            n = view.count(state)
            label = (
                f"{STATE_GLYPH[state]} {n} {state}  "
                if form == 0
                else (f"{STATE_GLYPH[state]}{n} {state} " if form < 3 else f"{STATE_GLYPH[state]}{n} ")
            )
            t.append(label, style=STATE_STYLE[state] if n else "dim")
        if view.info is not None:
            t.append(f" health {view.info.health_score}", style=health_style(view.info.health_score))
            if form == 0:
                t.append(f"  up {duration(view.info.uptime_s)}")
        if stale:
            t.append(" STALE", style="bold red")
        if t.cell_len <= width:
            break
    return _line(t, width)


def status_line(view: View, width: int) -> Text:
    """The bottom bar; turns red and says so while the agent is unreachable."""
    link = view.link
    if link.state == "down":
        t = Text(
            f" agent unreachable — retrying ({link.failures} attempts, {duration(view.now - link.since)})"
            f": {link.error}",
            style="bold white on red",
        )
    elif link.state == "connecting":
        t = Text(f" connecting to {view.target} …", style="yellow")
    else:
        t = Text(f" ● connected  {view.target}  {view.refresh_hz:g} Hz  q/Ctrl-C quits", style="dim")
        if view.dropped:
            t.append(f"  {view.dropped} malformed rows dropped", style="yellow")
    t.pad_right(max(0, width - t.cell_len))
    return _line(t, width)


# --- membership table --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    key: str
    header: str
    justify: str
    cell: Callable[[View, MemberRow], Text]


def _name_cell(view: View, m: MemberRow) -> Text:
    me = m.node_id == view.self_id
    return Text.assemble(
        (STATE_GLYPH.get(m.state, "?") + " ", state_style(m.state)),
        (m.name + (" *" if me else ""), "bold" if me else ""),
    )


def _rtt(m: MemberRow) -> str:
    return "-" if m.rtt_ms is None else f"{m.rtt_ms:.1f}"


# In priority order: columns are dropped from the end when the terminal is narrow.
_COLUMNS: tuple[_Column, ...] = (
    _Column("name", "name", "left", _name_cell),
    _Column("state", "state", "left", lambda v, m: Text(m.state, style=state_style(m.state))),
    _Column(
        "changed", "changed", "right", lambda v, m: Text(ago(v.now - m.last_change) if m.last_change else "-")
    ),
    _Column("inc", "inc", "right", lambda v, m: Text(str(m.incarnation))),
    _Column("rtt", "rtt ms", "right", lambda v, m: Text(_rtt(m))),
    _Column("addr", "addr", "left", lambda v, m: Text(m.addr or "-")),
    _Column("roles", "roles", "left", lambda v, m: Text(",".join(m.roles) or "-")),
    _Column("id", "node id", "left", lambda v, m: Text(m.node_id[:8])),
)
_NAME_MIN = 8  # never squeeze names below this
_NAME_WANT = 18  # names up to this wide are shown whole before optional columns get room
_CAPS = {"name": 24, "addr": 21, "roles": 16}


def members_table(view: View, width: int, height: int) -> RenderableType:
    """The membership table, at most ``height`` lines; problems sort first (see ``TopModel.view``).

    Laid out by hand as one ``Text`` per row rather than a rich ``Table``: the columns are already
    sized here to fit the terminal, and a ``Table`` measures and pads every cell again, which made a
    frame several times slower (rendering is the UI's main cost)."""
    gap = 2
    room = max(0, height - 2)  # minus the header row and its rule
    members = view.members
    shown = members if len(members) <= room else members[: max(0, room - 1)]
    hidden = len(members) - len(shown)

    cells = {c.key: [c.cell(view, m) for m in shown] for c in _COLUMNS}
    widths = {
        c.key: min(_CAPS.get(c.key, 99), max([len(c.header)] + [t.cell_len for t in cells[c.key]]))
        for c in _COLUMNS
    }
    widths["name"] = max(widths["name"], min(_NAME_MIN, width))
    chosen: list[_Column] = []
    used = -gap
    for c in _COLUMNS:
        need = (min(widths["name"], _NAME_WANT) if c.key == "name" else widths[c.key]) + gap
        if chosen and used + need > width:
            continue
        chosen.append(c)
        used += need
    # Whatever is left over goes to names that were cut to _NAME_WANT; the name column never
    # pushes the row past the terminal.
    others = sum(widths[c.key] + gap for c in chosen[1:])
    widths["name"] = max(1, min(widths["name"], width - others))

    def row(parts: list[Text]) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        for i, (c, cell) in enumerate(zip(chosen, parts, strict=True)):
            if i:
                line.append(" " * gap)
            cell = cell.copy()
            cell.truncate(widths[c.key], overflow="ellipsis")
            pad = widths[c.key] - cell.cell_len
            if c.justify == "right":
                cell.pad_left(pad)
            else:
                cell.pad_right(pad)
            line.append_text(cell)
        return _line(line, width)

    lines = [row([Text(c.header, style="bold") for c in chosen])]
    lines.append(Text("─" * min(width, used if used > 0 else width), style="dim"))
    lines.extend(row([cells[c.key][i] for c in chosen]) for i in range(len(shown)))
    if hidden:
        worst = sum(1 for m in members[len(shown) :] if m.state in ("suspect", "dead"))
        more = f"… {hidden} more" + (f" ({worst} suspect/dead)" if worst else "")
        lines.append(_line(Text(more, style="dim"), width))
    if not members:
        lines.append(_line(Text("no members yet", style="dim"), width))
    return Group(*lines[: max(1, height)])


# --- topology ----------------------------------------------------------------------------------------


def _by_state(view: View) -> list[tuple[str, list[MemberRow]]]:
    groups: dict[str, list[MemberRow]] = {}
    for m in view.members:
        groups.setdefault(m.state, []).append(m)
    order = list(STATES) + sorted(set(groups) - set(STATES))
    return [(s, sorted(groups[s], key=lambda m: m.name)) for s in order if s in groups]


def topology_panel(view: View, width: int, height: int) -> RenderableType | None:
    """The cluster as a tree: this node, then its peers grouped by state (leaves fold into glyph rows
    when the panel is short)."""
    inner_w, inner_h = max(1, width - 4), max(1, height - 2)
    me = next((m for m in view.members if m.node_id == view.self_id), None)
    root = Text("◉ " + (view.info.node.name if view.info else "?"), style="bold")
    if me is not None:
        root.stylize(state_style(me.state), 0, 1)
    groups = _by_state(view)
    full = 1 + sum(1 + len(ms) for _, ms in groups)
    lines: list[Text] = [root]
    for gi, (state, ms) in enumerate(groups):
        last = gi == len(groups) - 1
        style = state_style(state)
        lines.append(Text.assemble(("└─ " if last else "├─ ", "dim"), (f"{state} {len(ms)}", style)))
        stem = "   " if last else "│  "
        if full <= inner_h:
            for m in ms:
                rtt = "" if m.rtt_ms is None else f" {m.rtt_ms:.0f}ms"
                lines.append(
                    Text.assemble(
                        (stem, "dim"), (STATE_GLYPH.get(state, "?") + " ", style), m.name, (rtt, "dim")
                    )
                )
        else:
            glyphs = STATE_GLYPH.get(state, "?") * len(ms)
            room = max(1, inner_w - len(stem))
            if len(glyphs) > room:
                glyphs = glyphs[: max(0, room - 4)] + "…"
            lines.append(Text.assemble((stem, "dim"), (glyphs, style)))
    body = Group(*(_line(t, inner_w) for t in lines[:inner_h]))
    return Panel(body, title="topology", title_align="left", box=box.ROUNDED, padding=(0, 1), height=height)


def ring_line(view: View, width: int) -> Text:
    """Narrow terminals: every peer as one coloured glyph, in node-id (hash ring) order."""
    t = Text("ring ", style="bold")
    peers = sorted(view.members, key=lambda m: m.node_id)
    room = max(0, width - t.cell_len)
    for i, m in enumerate(peers):
        if i >= room - 1 and len(peers) - i > 1:
            t.append(f"+{len(peers) - i}", style="dim")
            break
        glyph = "◉" if m.node_id == view.self_id else STATE_GLYPH.get(m.state, "?")
        t.append(glyph, style=state_style(m.state))
    return _line(t, width)


# --- placement ---------------------------------------------------------------------------------------

SYNC_STYLE: dict[str, str] = {
    "synced": "green",
    "behind": "yellow",
    "leaving": "blue",
    "unknown": "cyan",
    "fork": "bold magenta",
    "down": "bold red",
}
_LEGEND = ("synced", "behind", "unknown", "down")


def _peer_key(i: int) -> str:
    """Column labels: A..Z then a..z then digits; a fleet wider than the panel is cut anyway."""
    keys = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return keys[i] if i < len(keys) else "?"


def hidden_rows_fit(rows: Sequence[ShardPlacement], inner_h: int) -> bool:
    """Whether the panel will need a "… more shards" line (rows beyond header, legend and one key line)."""
    return len(rows) > inner_h - 3


def _needs_attention(row: ShardPlacement) -> bool:
    return any(c.sync != "synced" for c in row.hosts)


def placement_panel(view: View, width: int, height: int) -> RenderableType | None:
    """Shards (rows) x peers (columns): a coloured block where a peer hosts the shard, by sync state.

    Peers are lettered (this agent first) with a key under the grid; ``*`` marks shards this agent holds.
    When rows do not fit, shards needing attention are kept and the rest counted."""
    rows = view.placement
    if not rows:
        return None
    inner_w, inner_h = max(1, width - 4), max(1, height - 2)
    me = view.info.node.name if view.info else None
    names = sorted({c.host for r in rows for c in r.hosts}, key=lambda n: (n != me, n))
    cols = max(0, min(len(names), (inner_w - 6) // 2))
    shown_names = names[:cols]
    longest = max(len(f"{r.space}/{r.shard}*") for r in rows)
    label_w = max(1, min(longest, inner_w - 2 * cols - 1))

    key_lines: list[Text] = []
    line = Text()
    for i, n in enumerate(shown_names):
        piece = Text.assemble((_peer_key(i), "bold"), " " + n + ("*" if n == me else "") + "  ")
        if line.cell_len and line.cell_len + piece.cell_len > inner_w:
            key_lines.append(line)
            line = Text()
        line.append_text(piece)
    if line.cell_len:
        key_lines.append(line)
    if len(names) > cols:
        key_lines.append(Text(f"+{len(names) - cols} peers not shown", style="dim"))
    legend = Text()
    for state in _LEGEND:
        legend.append("■", style=SYNC_STYLE[state])
        legend.append(f" {state} ")
    # Shard rows come before the peer key: the key keeps one line when rows need the room.
    spare = inner_h - 2 - len(rows) - (1 if hidden_rows_fit(rows, inner_h) else 0)
    keep_keys = max(min(1, len(key_lines)), min(len(key_lines), spare))
    footer = [legend, *key_lines[:keep_keys]]

    room = max(1, inner_h - 1 - len(footer))  # minus the header row
    if len(rows) > room:
        urgent = [r for r in rows if _needs_attention(r)]
        calm = [r for r in rows if not _needs_attention(r)]
        keep = set(map(id, (urgent + calm)[: max(0, room - 1)]))
        hidden = len(rows) - len(keep)
        chosen = [r for r in rows if id(r) in keep]
    else:
        chosen, hidden = list(rows), 0

    lines: list[Text] = []
    head = Text(" " * (label_w + 1))
    for i in range(len(shown_names)):
        head.append(_peer_key(i) + " ", style="bold")
    lines.append(head)
    for r in chosen:
        label = Text(f"{r.space}/{r.shard}" + ("*" if r.hosted else ""), style="bold" if r.hosted else "")
        label.truncate(label_w, overflow="ellipsis")
        label.pad_right(label_w - label.cell_len + 1)
        cells = {c.host: c for c in r.hosts}
        for n in shown_names:
            c = cells.get(n)
            if c is None:
                label.append("· ", style="dim")
            else:
                label.append("■ ", style=SYNC_STYLE.get(c.sync, ""))
        lines.append(label)
    if hidden:
        lines.append(Text(f"… {hidden} more shards", style="dim"))
    lines.extend(footer)
    body = Group(*(_line(t, inner_w) for t in lines[:inner_h]))
    return Panel(body, title="placement", title_align="left", box=box.ROUNDED, padding=(0, 1), height=height)


# --- event log ---------------------------------------------------------------------------------------


def _log_text(line: LogLine) -> Text:
    stamp = time.strftime("%H:%M:%S", time.localtime(line.ts))
    style = EVENT_STYLE.get(line.kind, "")
    if line.kind == "ui":
        return Text.assemble((stamp + " ", "dim"), ("── " + line.detail, style))
    inc = "" if line.incarnation is None else f" inc {line.incarnation}"
    detail = f"  {line.detail}" if line.detail else ""
    return Text.assemble((stamp + " ", "dim"), (f"{line.kind:<9} ", style), line.name, (inc + detail, "dim"))


def event_log(view: View, width: int, height: int) -> RenderableType:
    """The newest events at the bottom, as many as fit."""
    room = max(0, height - 2)
    lines = [_line(_log_text(ln), max(1, width - 4)) for ln in view.log[-room:]] if room else []
    body: RenderableType = Group(*lines) if lines else Text("no events yet", style="dim")
    return Panel(body, title="events", title_align="left", box=box.ROUNDED, padding=(0, 1), height=height)


# --- the whole frame ---------------------------------------------------------------------------------

DEFAULT_PANELS: tuple[SidePanel, ...] = (topology_panel, placement_panel)


def frame(view: View, width: int, height: int, panels: Sequence[SidePanel] = DEFAULT_PANELS) -> Layout:
    """The full screen, exactly ``height`` lines: degrade by dropping sections, never by crashing."""
    width, height = max(1, width), max(1, height)
    root = Layout(name="root")
    parts: list[Layout] = []
    if height == 1:
        only = status_line(view, width) if view.link.state != "up" else header(view, width)
        parts.append(Layout(only, size=1))
    else:
        parts.append(Layout(header(view, width), size=1))
        rest = height - 2
        wide = width >= WIDE and bool(panels)
        if rest >= 8 and not wide:
            parts.append(Layout(ring_line(view, width), size=1))
            rest -= 1
        log_h = min(14, max(4, height // 3)) if rest >= 10 else 0
        body_h = rest - log_h
        if body_h > 0:
            parts.append(_body(view, width, body_h, panels if wide else ()))
        if log_h:
            parts.append(Layout(event_log(view, width, log_h), size=log_h))
        parts.append(Layout(status_line(view, width), size=1))
    root.split_column(*parts)
    return root


def _body(view: View, width: int, height: int, panels: Sequence[SidePanel]) -> Layout:
    body = Layout(name="body", size=height)
    side_w = min(SIDE_MAX, max(SIDE_MIN, width // 3))
    table_w = width - side_w
    rendered = _side_column(view, side_w, height, panels) if table_w >= 40 else []
    if not rendered:
        body.update(members_table(view, width, height))
        return body
    side = Layout(name="side", size=side_w)
    side.split_column(*(Layout(r, size=h) for r, h in rendered))
    body.split_row(Layout(members_table(view, table_w, height), name="members"), side)
    return body


def _side_column(view: View, width: int, height: int, panels: Sequence[SidePanel]) -> list[
    tuple[RenderableType, int]
]:
    """The panels that have something to show, stacked in one column, sharing its height evenly (a
    panel with nothing to show gives its share to the others; none shorter than 5 lines)."""
    active = list(panels)
    while active:
        n = min(len(active), max(1, height // 5))
        active = active[:n]
        shares = [height // n + (1 if i < height % n else 0) for i in range(n)]
        out = [(p(view, width, h), h) for p, h in zip(active, shares, strict=True)]
        if all(r is not None for r, _ in out):
            return [(r, h) for r, h in out if r is not None]
        active = [p for p, (r, _) in zip(active, out, strict=True) if r is not None]
    return []


class Dashboard:
    """A renderable that lays the frame out for whatever size the console has at render time, so
    building the layout happens inside ``Live.refresh`` (off the event loop) and follows resizes."""

    def __init__(self, view: View, panels: Sequence[SidePanel] = DEFAULT_PANELS) -> None:
        self.view = view
        self.panels = tuple(panels)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        height = options.height or console.height
        layout = frame(self.view, options.max_width, height, self.panels)
        yield from console.render(layout, options.update(height=height))
