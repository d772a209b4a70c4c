"""`engramp2p top`: model folding, headless rendering, the trio app against fake and real agents."""

from __future__ import annotations

import io
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from engramp2p.api import messages as api
from engramp2p.api.server import ControlServer
from engramp2p.cli import main as cli_main
from engramp2p.ui.agent_source import AgentSource, event_dict, event_kind, member_dict
from engramp2p.ui.app import TopApp
from engramp2p.ui.demo import DemoCluster
from engramp2p.ui.model import LOG_CAPACITY, TopModel, View, ago
from engramp2p.ui.render import Dashboard, frame, members_table
from engramp2p.ui.shapes import Event, Info, MemberRow, NodeRef, Snapshot, to_event, to_members, to_snapshot
from engramp2p.ui.source import SourceError

NOW = 1_700_000_000.0
ME = "aa" * 16


def member(
    name: str,
    state: str,
    *,
    inc: int = 1,
    node_id: str | None = None,
    changed: float = NOW - 3,
    rtt: float | None = 1.5,
) -> MemberRow:
    return MemberRow(
        name=name,
        node_id=node_id or (name.encode().hex() * 4)[:32],
        addr="127.0.0.1:7946",
        state=state,
        incarnation=inc,
        roles=("storage",),
        rtt_ms=rtt,
        last_change=changed,
    )


def info(health: int = 0) -> Info:
    return Info(
        node=NodeRef(name="me", node_id=ME, addr="127.0.0.1:7946"),
        health_score=health,
        counters={"packets_in": 1},
        uptime_s=3725.0,
    )


def cluster() -> Snapshot:
    return Snapshot(
        members=(
            member("me", "alive", node_id=ME, rtt=None),
            member("alpha", "alive"),
            member("bravo", "suspect", inc=2),
            member("charlie", "dead", inc=4),
            member("delta", "left"),
        ),
        info=info(),
    )


def event(kind: str, name: str, inc: int | None, ts: float, detail: str = "") -> Event:
    return Event(
        ts=ts, kind=kind, name=name, node_id=(name.encode().hex() * 4)[:32], incarnation=inc, detail=detail
    )


def console(width: int = 80, height: int = 24) -> Console:
    return Console(
        record=True,
        width=width,
        height=height,
        force_terminal=True,
        color_system="truecolor",
        file=io.StringIO(),
    )


def render(view: View, width: int = 80, height: int = 24) -> tuple[str, str]:
    """(plain text, text with ANSI styles) of one frame."""
    c = console(width, height)
    c.print(Dashboard(view))
    return c.export_text(clear=False), c.export_text(styles=True, clear=False)


def model_with_cluster() -> TopModel:
    m = TopModel(target="/run/agent/control.sock")
    m.apply_snapshot(NOW, cluster())
    return m


# --- rendering ---------------------------------------------------------------------------------------


def test_render_80x24_shows_states_in_their_colours() -> None:
    text, ansi = render(model_with_cluster().view(NOW))
    lines = text.splitlines()
    assert len(lines) == 24 and all(cell_len(ln) <= 80 for ln in lines)
    for name in ("alpha", "bravo", "charlie", "delta"):
        assert name in text
    assert "\x1b[32malive" in ansi  # green
    assert "\x1b[33msuspect" in ansi  # yellow
    assert "\x1b[31mdead" in ansi  # red
    assert "\x1b[2mleft" in ansi  # dim
    header = lines[0]
    assert "2 alive" in header and "1 suspect" in header and "1 dead" in header and "health 0" in header
    assert "3s ago" in text  # last change
    assert "events" in text and "connected" in lines[-1]


def test_problems_sort_first_and_self_is_marked() -> None:
    text, _ = render(model_with_cluster().view(NOW))
    order = [text.index(n) for n in ("bravo", "charlie", "alpha", "delta")]
    assert order == sorted(order)
    assert "me *" in text


def test_agent_reports_failed_which_shows_as_dead_in_red() -> None:
    rows, dropped = to_members([msgspec.to_builtins(member("echo", "alive")) | {"state": "failed"}])
    assert dropped == 0 and rows[0].state == "dead"
    m = TopModel()
    m.apply_snapshot(NOW, Snapshot(members=rows, info=info()))
    _, ansi = render(m.view(NOW))
    assert "\x1b[31mdead" in ansi


def test_wide_terminal_gets_topology_panel_and_narrow_gets_ring() -> None:
    view = model_with_cluster().view(NOW)
    wide, _ = render(view, 120, 30)
    assert "topology" in wide and "ring" not in wide and "node id" in wide
    narrow, _ = render(view, 80, 24)
    assert "ring" in narrow and "topology" not in narrow


def test_long_tables_are_capped_and_say_how_many_are_hidden() -> None:
    m = TopModel()
    snap = DemoCluster(n=60, seed=3, start=NOW).snapshot(10.0)
    m.apply_snapshot(NOW, snap)
    text, _ = render(m.view(NOW), 80, 24)
    assert "more" in text and len(text.splitlines()) == 24
    table_text = console(80, 10)
    table_text.print(members_table(m.view(NOW), 80, 10))
    assert len(table_text.export_text().splitlines()) == 10


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
states = st.sampled_from(["alive", "suspect", "dead", "left", "weird"])


@st.composite
def views(draw: st.DrawFn) -> View:
    m = TopModel(target=draw(st.text(max_size=60)))
    rows = [
        {
            "name": draw(names),
            "node_id": f"{i:032x}",
            "addr": draw(st.text(max_size=30)),
            "state": draw(states),
            "incarnation": draw(st.integers(0, 2**40)),
            "rtt_ms": draw(st.none() | st.floats(0, 1e6)),
            "last_change": NOW - draw(st.floats(-100, 1e7)),
        }
        for i in range(draw(st.integers(0, 25)))
    ]
    nfo = draw(st.none() | st.just(msgspec.to_builtins(info(draw(st.integers(0, 9))))))
    m.apply_snapshot(NOW, to_snapshot(rows, nfo))  # through the edge, as the agent's data arrives
    for _ in range(draw(st.integers(0, 12))):
        ev = to_event(
            {
                "ts": NOW - draw(st.floats(0, 1e5)),
                "kind": draw(st.sampled_from(["failed", "x"])),
                "name": draw(names),
                "node_id": "",
                "detail": draw(st.text(max_size=80)),
            }
        )
        assert ev is not None
        m.apply_event(ev)
    if draw(st.booleans()):
        m.mark_down(NOW - 5, draw(st.text(max_size=100)))
    return m.view(NOW)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(view=views(), width=st.integers(1, 160), height=st.integers(1, 50))
def test_any_terminal_size_renders_exactly_that_size(view: View, width: int, height: int) -> None:
    text, _ = render(view, width, height)
    lines = text.split("\n")[:-1]  # not splitlines(): it also splits on characters terminals print
    assert len(lines) == height
    assert all(cell_len(ln) <= width for ln in lines)


def test_frame_degrades_to_status_line_on_one_row_when_agent_is_down() -> None:
    m = model_with_cluster()
    m.mark_down(NOW, "connection refused")
    c = console(40, 1)
    c.print(frame(m.view(NOW + 2), 40, 1))
    assert "agent unreachable" in c.export_text()


def test_terminal_escapes_in_peer_names_are_neutralised() -> None:
    row = msgspec.to_builtins(member("evil", "alive")) | {"name": "x\x1b[2J\x1b]0;pwned\x07\u202ey"}
    (clean,), _ = to_members([row])
    assert clean.name == "x?[2J?]0;pwned??y"
    m = TopModel()
    m.apply_snapshot(NOW, Snapshot(members=(clean,)))
    _, ansi = render(m.view(NOW))
    assert "\x1b[2J" not in ansi and "\x1b]0;" not in ansi


def test_ago() -> None:
    assert [ago(s) for s in (-4, 0, 3, 59, 61, 7200, 200000)] == [
        "now",
        "now",
        "3s ago",
        "59s ago",
        "1m ago",
        "2h ago",
        "2d ago",
    ]


# --- model folding -----------------------------------------------------------------------------------


def test_events_move_members_between_snapshots() -> None:
    m = model_with_cluster()
    m.apply_event(event("failed", "alpha", 1, NOW + 1))
    m.apply_event(event("refuted", "bravo", 3, NOW + 1))
    m.apply_event(event("recovered", "charlie", 5, NOW + 2, "after partition"))
    m.apply_event(event("joined", "foxtrot", 1, NOW + 3))
    m.apply_event(event("updated", "delta", 2, NOW + 3))
    by_name = {r.name: r for r in m.view(NOW + 4).members}
    assert by_name["alpha"].state == "dead" and by_name["alpha"].last_change == NOW + 1
    assert (by_name["bravo"].state, by_name["bravo"].incarnation) == ("alive", 3)
    assert (by_name["charlie"].state, by_name["charlie"].incarnation) == ("alive", 5)
    assert by_name["foxtrot"].state == "alive" and by_name["foxtrot"].addr == ""
    assert (by_name["delta"].state, by_name["delta"].incarnation) == ("left", 2)
    kinds = [ln.kind for ln in m.view(NOW + 4).log]
    assert kinds == ["failed", "refuted", "recovered", "joined", "updated"]


def test_late_events_are_logged_but_do_not_roll_the_table_back() -> None:
    m = model_with_cluster()
    m.apply_event(event("suspected", "charlie", 4, NOW - 10))  # older than the snapshot's last_change
    m.apply_event(event("suspected", "charlie", 3, NOW + 10))  # lower incarnation
    row = next(r for r in m.view(NOW).members if r.name == "charlie")
    assert row.state == "dead"
    assert len(m.view(NOW).log) == 2


def test_event_without_incarnation_still_folds() -> None:
    m = model_with_cluster()
    m.apply_event(event("failed", "alpha", None, NOW + 1))
    row = next(r for r in m.view(NOW).members if r.name == "alpha")
    assert (row.state, row.incarnation) == ("dead", 1)


def test_snapshot_is_authoritative() -> None:
    m = model_with_cluster()
    m.apply_event(event("joined", "ghost", 1, NOW + 1))
    m.apply_snapshot(NOW + 2, cluster())
    assert {r.name for r in m.view(NOW).members} == {"me", "alpha", "bravo", "charlie", "delta"}


def test_replayed_history_is_not_logged_twice_and_log_stays_in_time_order() -> None:
    m = model_with_cluster()
    history = [event("suspected", "alpha", 1, NOW + 1), event("failed", "alpha", 1, NOW + 2)]
    for ev in history:
        m.apply_event(ev)
    m.mark_down(NOW + 3, "gone")
    m.apply_event(event("recovered", "alpha", 2, NOW + 2.5))  # arrives late, after the outage note
    for ev in history:  # resubscribing replays the agent's recent history
        m.apply_event(ev)
    log = m.view(NOW + 4).log
    assert [ln.kind for ln in log] == ["suspected", "failed", "recovered", "ui"]


event_st = st.builds(
    Event,
    ts=st.floats(0, 1e4),
    kind=st.sampled_from(["joined", "suspected", "failed", "left", "recovered", "refuted", "updated", "???"]),
    name=st.sampled_from(["a", "b", "c"]),
    node_id=st.sampled_from(["", "01", "02", "03"]),
    incarnation=st.none() | st.integers(0, 5),
)


@settings(max_examples=150, deadline=None)
@given(events=st.lists(event_st | st.floats(0, 1e4), max_size=40))
def test_log_is_bounded_sorted_and_snapshot_resets_members(events: list[Event | float]) -> None:
    m = TopModel()
    for ev in events:
        if isinstance(ev, Event):
            m.apply_event(ev)
        elif ev > 5e3:
            m.mark_down(ev, "x")
        else:
            m.mark_up(ev)
    log = m.view(0.0, log_lines=LOG_CAPACITY).log
    assert len(log) <= LOG_CAPACITY
    assert [ln.ts for ln in log] == sorted(ln.ts for ln in log)
    assert all(mem.state in ("alive", "suspect", "dead", "left") for mem in m.members.values())
    m.apply_snapshot(1.0, cluster())
    assert set(m.members) == {r.node_id for r in cluster().members}


def test_log_capacity() -> None:
    m = TopModel()
    for i in range(LOG_CAPACITY + 50):
        m.apply_event(event("updated", "a", i, float(i)))
    assert len(m.log) == LOG_CAPACITY and m.log[-1].incarnation == LOG_CAPACITY + 49


def test_link_state_notes() -> None:
    m = TopModel()
    assert m.link.state == "connecting"
    m.mark_down(10.0, "refused")
    m.mark_down(11.0, "refused")
    assert (m.link.state, m.link.failures, m.link.since) == ("down", 2, 10.0)
    m.mark_up(17.0)
    assert m.link.state == "up"
    notes = [ln.detail for ln in m.log if ln.kind == "ui"]
    assert notes == ["agent unreachable: refused", "agent reachable again after 7s"]


# --- shapes at the edge ------------------------------------------------------------------------------


def test_bad_rows_are_dropped_and_counted() -> None:
    good = msgspec.to_builtins(member("alpha", "alive"))
    bad = [
        good | {"name": "x" * 10_000},
        good | {"incarnation": -1},
        good | {"rtt_ms": "fast"},
        {"name": "no-fields"},
        "not a row",
        None,
    ]
    rows, dropped = to_members([good, *bad])
    assert len(rows) == 1 and dropped == len(bad)
    assert to_event({"ts": "yesterday"}) is None
    assert to_event(msgspec.to_builtins(event("failed", "a", 1, NOW))) == event("failed", "a", 1, NOW)


def test_agent_messages_map_onto_ui_shapes() -> None:
    row = api.MemberRow(
        name="n1",
        node_id=bytes(range(16)),
        addr="10.0.0.1:7946",
        state="failed",
        incarnation=3,
        roles=["storage"],
        rtt_ms=None,
        last_change_ms=1_700_000_000_500,
    )
    (conv,), dropped = to_members([member_dict(row)])
    assert dropped == 0
    assert (
        conv.node_id == bytes(range(16)).hex()
        and conv.state == "dead"
        and conv.last_change == 1_700_000_000.5
    )
    ev = api.Event(seq=1, at_ms=2_000, type="MemberSuspected", node=bytes(16), name="n1", detail="by n2")
    assert to_event(event_dict(ev)) == Event(
        ts=2.0, kind="suspected", name="n1", node_id="00" * 16, incarnation=None, detail="by n2"
    )
    assert [event_kind(t) for t in ("member_joined", "refute", "Failed", "reaped")] == [
        "joined",
        "refuted",
        "failed",
        "reaped",
    ]


# --- the app -----------------------------------------------------------------------------------------


class FakeSource:
    label = "fake agent"

    def __init__(self) -> None:
        self.up = True
        self.snap = cluster()
        self.send, self.recv = trio.open_memory_channel[Event](100)

    async def snapshot(self) -> Snapshot:
        await trio.lowlevel.checkpoint()
        if not self.up:
            raise SourceError("connection refused")
        return self.snap

    async def events(self) -> AsyncIterator[Event | None]:
        if not self.up:
            raise SourceError("connection refused")
        async for ev in self.recv:
            yield ev

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def wait_until(pred: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll with a deadline (virtual time under the autojump clock, real time otherwise)."""
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.01)


def frame_text(app: TopApp, width: int = 80, height: int = 24) -> str:
    c = console(width, height)
    c.print(app.frame())
    return c.export_text()


async def test_app_banner_when_agent_goes_away_and_recovery(autojump_clock: trio.testing.MockClock) -> None:
    source = FakeSource()
    render_threads: set[bool] = set()

    def probe_panel(view: View, width: int, height: int) -> None:
        render_threads.add(threading.current_thread() is threading.main_thread())
        return None

    out = console(120, 30)
    app = TopApp(
        source, refresh_hz=4, console=out, wall=lambda: NOW + trio.current_time(), panels=(probe_panel,)
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: app.run(keyboard=False, signals=False))
        await wait_until(lambda: app.model.link.state == "up" and app.frames >= 2)
        assert "bravo" in frame_text(app)

        await source.send.send(event("failed", "alpha", 1, NOW + trio.current_time()))
        await wait_until(
            lambda: any(r.name == "alpha" and r.state == "dead" for r in app.model.members.values())
        )

        source.up = False
        await wait_until(lambda: app.model.link.state == "down")
        down = frame_text(app)
        assert "agent unreachable — retrying" in down and "connection refused" in down
        assert "charlie" in down  # last known state stays on screen
        await wait_until(lambda: app.model.link.failures >= 3)  # and it keeps retrying

        source.up = True
        await wait_until(lambda: app.model.link.state == "up")
        back = frame_text(app)
        assert "agent unreachable" not in back.splitlines()[-1]
        assert "agent reachable again" in back
        app.quit()
    assert render_threads == {False}  # every frame was laid out off the event loop
    assert "bravo" in out.export_text()


async def test_quit_before_run_returns_at_once() -> None:
    app = TopApp(FakeSource(), console=console())
    app.quit()
    with trio.fail_after(5):
        await app.run(keyboard=False, signals=False)


def test_refresh_rate_is_bounded() -> None:
    with pytest.raises(ValueError):
        TopApp(FakeSource(), refresh_hz=50, console=console())


# --- against the real control socket -----------------------------------------------------------------


def _server(path: str) -> ControlServer:
    server = ControlServer(path)

    async def members(req: api.AnyRequest) -> api.MemberList:
        await trio.lowlevel.checkpoint()
        return api.MemberList(
            members=[
                api.MemberRow(
                    name="srv", node_id=b"\x01" * 16, addr="127.0.0.1:7946", state="alive", incarnation=1
                ),
                api.MemberRow(
                    name="gone", node_id=b"\x02" * 16, addr="127.0.0.1:7947", state="failed", incarnation=2
                ),
            ]
        )

    async def node_info(req: api.AnyRequest) -> api.NodeInfo:
        await trio.lowlevel.checkpoint()
        return api.NodeInfo(name="srv", node_id=b"\x01" * 16, addr="127.0.0.1:7946", health=2, uptime_s=5.0)

    server.register("members", members)
    server.register("info", node_info)
    return server


async def test_agent_source_over_control_socket_and_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "control.sock")
    source = AgentSource(path, timeout=2.0)
    with pytest.raises(SourceError, match="no agent running"):
        await source.snapshot()

    app = TopApp(source, refresh_hz=10, console=console())
    async with trio.open_nursery() as nursery:
        server = _server(path)
        server_scope = trio.CancelScope()

        async def serve(
            scope: trio.CancelScope, srv: ControlServer, *, task_status: trio.TaskStatus[None]
        ) -> None:
            with scope:
                await srv.serve(task_status=task_status)

        await nursery.start(serve, server_scope, server)
        nursery.start_soon(lambda: app.run(screen=False, keyboard=False, signals=False))
        await wait_until(lambda: app.model.link.state == "up" and server.subscribers == 1)
        server.publish(
            api.Event(seq=1, at_ms=int((NOW + 1) * 1000), type="suspected", node=b"\x01" * 16, name="srv")
        )
        await wait_until(lambda: any(ln.kind == "suspected" for ln in app.model.log))
        text = frame_text(app)
        assert "gone" in text and "dead" in text and "health 2" in text

        server_scope.cancel()  # the agent goes away
        await wait_until(lambda: app.model.link.state == "down")
        assert "agent unreachable — retrying" in frame_text(app)

        await nursery.start(serve, trio.CancelScope(), _server(path))  # and comes back
        await wait_until(lambda: app.model.link.state == "up")
        assert "agent reachable again" in frame_text(app)
        app.quit()
        nursery.cancel_scope.cancel()
    await source.aclose()


def test_top_without_agent_fails_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["top", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "no agent running" in err
