"""System tests: five real ``engramp2p agent`` processes on 127.0.0.1 (profile ``local``).

One cluster is shared by the tests of this module, which run in file order and each leave it as they
found it (five alive members), except the last ones, which end members on purpose. Every wait polls
with a deadline; the fixture kills every process it started.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_procs import Agent, cli, wait_for

from engramp2p.net.framing import pack_datagram, unpack_datagram
from engramp2p.net.seal import Keyring, decode_key, encode_key, generate_key
from engramp2p.swim.messages import Ack, Ping

pytestmark = pytest.mark.slow

N = 5
NAMES = [f"a{i}" for i in range(N)]
KEY = encode_key(generate_key())
RSS_BUDGET_KB = 60 * 1024


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.agents: dict[str, Agent] = {}
        self.extra: list[Agent] = []

    def all(self) -> list[Agent]:
        return [*self.agents.values(), *self.extra]

    def states(self, name: str) -> dict[str, tuple[str, int]]:
        return self.agents[name].states()

    def everyone_sees(self, watchers: list[str], member: str, state: str, min_inc: int = 0) -> bool:
        for w in watchers:
            seen = self.states(w).get(member)
            if seen is None or seen[0] != state or seen[1] < min_inc:
                return False
        return True


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("agents")
    c = Cluster(root)
    try:
        seed = Agent(NAMES[0], root / NAMES[0], KEY).start()
        c.agents[seed.name] = seed
        for name in NAMES[1:]:
            c.agents[name] = Agent(name, root / name, KEY, join=[seed.addr]).start()
        for a in c.agents.values():
            a.wait_ready()
        yield c
    finally:
        for a in c.all():
            a.kill()


def test_five_agents_joined_through_one_seed_converge(cluster: Cluster) -> None:
    def converged() -> bool:
        return all(
            {n for n, (s, _) in cluster.states(w).items() if s == "alive"} == set(NAMES) for w in NAMES
        )

    wait_for(converged, 30, "every agent to see all five alive")
    rows = cluster.agents["a1"].call(lambda c: c.members())
    assert rows[0].name == "a1" and all(r.roles == ["storage"] for r in rows)


def test_agent_stays_within_the_edge_budget(cluster: Cluster) -> None:
    """No numba/pynndescent in a running agent (checked in its own sys.modules); RSS within 60 MB."""
    for name in NAMES:
        info = cluster.agents[name].info()
        assert not {"numba", "pynndescent", "llvmlite"} & set(info.heavy_modules), info
        assert 0 < info.counters["rss_kb"] <= RSS_BUDGET_KB, info.counters["rss_kb"]
        assert info.loop_lag_ms["samples"] > 0
        assert {"p50_ms", "p99_ms", "max_ms", "mean_ms"} <= set(info.loop_lag_ms)


def test_hostile_datagrams_are_dropped_and_counted(cluster: Cluster) -> None:
    target = cluster.agents["a2"]
    before = target.info().counters
    node_id = target.info().node_id
    ring = Keyring([decode_key(KEY)])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5.0)
        me = sock.getsockname()
        dest = ("127.0.0.1", target.port)
        valid = pack_datagram(ring, [Ping(7, node_id, os.urandom(16), me[0], me[1])], 1400)

        # A well-formed, authentic ping is answered: the socket and the key are right.
        sock.sendto(valid, dest)
        acks = unpack_datagram(ring, sock.recvfrom(2048)[0], 1400)
        assert any(isinstance(m, Ack) and m.seq == 7 for m in acks)

        sock.sendto(valid, dest)  # replayed
        sock.sendto(b"\x00" * 40 + os.urandom(60), dest)  # malformed: not our magic
        sock.sendto(valid[:20], dest)  # truncated
        flipped = bytearray(valid)
        flipped[len(flipped) // 2] ^= 0x10
        sock.sendto(bytes(flipped), dest)  # bit-flipped
        sock.sendto(valid[:4] + os.urandom(3000), dest)  # oversized
        sock.sendto(ring.seal(b"\xc1\xff not msgpack"), dest)  # authentic but undecodable

    def counted() -> dict[str, int] | None:
        now = target.info_json()["counters"]
        grew = {k: now[k] - before[k] for k in ("replays", "auth_failures", "oversize", "decode_failures")}
        ok = grew["replays"] >= 1 and grew["auth_failures"] >= 4 and grew["oversize"] >= 1
        return grew if ok and grew["decode_failures"] >= 1 else None

    wait_for(counted, 20, "the hostile datagrams to be counted in info --json")
    # Membership is untouched: still five alive, as every other member sees it too.
    for w in NAMES:
        assert {n for n, (s, _) in cluster.states(w).items() if s == "alive"} == set(NAMES)


def test_agent_with_another_key_cannot_join(cluster: Cluster) -> None:
    seed = cluster.agents["a0"]
    before = seed.info().counters["auth_failures"]
    stranger = Agent("stranger", cluster.root / "stranger", encode_key(generate_key()), join=[seed.addr])
    cluster.extra.append(stranger)
    stranger.start().wait_ready()
    wait_for(lambda: seed.info().counters["auth_failures"] > before, 30, "a0 to count the stranger's packets")
    assert set(stranger.states()) == {"stranger"}
    for w in NAMES:
        assert "stranger" not in cluster.states(w)
    assert stranger.terminate() == 0


def test_key_rotation_spreads_to_every_member(cluster: Cluster) -> None:
    data_dir = str(cluster.agents["a1"].data_dir)
    new = encode_key(generate_key())
    out = cli("keys", "install", new, "--data-dir", data_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5/5 members succeeded" in out.stdout
    refused = cli("keys", "remove", KEY, "--data-dir", data_dir)
    assert refused.returncode == 1 and "primary" in refused.stderr
    # The same operations through the Python client (the CLI's path is covered above).
    from engramp2p.api.messages import KeyResults, KeysRemove, KeysUse

    for req in (KeysUse(key=decode_key(new)), KeysRemove(key=decode_key(KEY))):
        result = cluster.agents["a1"].call(lambda c, r=req: c.call(r))
        assert isinstance(result, KeyResults) and [m.ok for m in result.members] == [True] * N
    listed = cli("keys", "list", "--data-dir", data_dir, "--json")
    assert listed.returncode == 0, listed.stderr
    keys = json.loads(listed.stdout)["keys"]
    assert [(k["key"], k["installed"], k["primary"]) for k in keys] == [(new, N, N)]
    # Traffic sealed with the new key keeps the cluster together.
    for w in NAMES:
        assert {n for n, (s, _) in cluster.states(w).items() if s == "alive"} == set(NAMES)


def test_kill9_is_failed_everywhere_and_restart_is_alive_with_higher_incarnation(cluster: Cluster) -> None:
    victim = cluster.agents["a4"]
    others = NAMES[:4]
    inc_before = cluster.states("a0")["a4"][1]
    victim.kill9()
    wait_for(lambda: cluster.everyone_sees(others, "a4", "failed"), 60, "every survivor to report a4 failed")

    victim.start().wait_ready()  # same data directory, same port; the keyring file has the rotated key
    wait_for(
        lambda: cluster.everyone_sees(others, "a4", "alive", inc_before + 1),
        60,
        "every survivor to see a4 alive again with a higher incarnation",
    )
    assert victim.states()["a4"][1] > inc_before
    wait_for(lambda: all(s == "alive" for s, _ in victim.states().values()), 30, "a4 to see everyone alive")


def test_sigterm_and_leave_command_leave_gracefully(cluster: Cluster) -> None:
    assert cluster.agents["a3"].terminate() == 0
    out = cli("leave", "--data-dir", str(cluster.agents["a2"].data_dir))
    assert out.returncode == 0, out.stderr
    assert cluster.agents["a2"].proc is not None and cluster.agents["a2"].proc.wait(20) == 0
    for gone in ("a3", "a2"):
        wait_for(lambda g=gone: cluster.everyone_sees(["a0", "a1", "a4"], g, "left"), 30, f"{gone} seen as left")
    out = cli("members", "--data-dir", str(cluster.agents["a2"].data_dir))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "no agent running" in out.stderr
