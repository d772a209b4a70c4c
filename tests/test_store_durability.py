"""An acknowledged append survives ``kill -9`` of the process that made it (DESIGN.md §8).

A child process runs four concurrent writers through ``AsyncStore`` group commit and prints each
``(origin, seq)`` only after ``append`` returned. The parent SIGKILLs it mid-stream, reopens the
directory and checks every printed entry, the hash chains and the version vectors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engramp2p.crdt.entry import ZERO_HASH
from engramp2p.store import Store

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import struct, sys, trio
from engramp2p.crdt.entry import ZERO_HASH, Entry, Remember, entry_hash
from engramp2p.store import ShardChanges, open_store

async def writer(astore, k):
    origin, prev, seq = bytes([k + 1]) * 16, ZERO_HASH, 0
    while True:
        seq += 1
        body = Remember(bytes([k]) * 8 + seq.to_bytes(8, "big"), "x" * 200, struct.pack("<8f", *range(8)), 1.0)
        entry = Entry(origin, seq, seq, prev, body)
        digest = entry_hash("s", k % 2, entry)
        await astore.append([ShardChanges("s", k % 2, entries=[(entry, digest)], vv=[(origin, seq, digest)])])
        sys.stdout.write(f"{k} {seq}\n")
        sys.stdout.flush()
        prev = digest

async def main():
    async with open_store(sys.argv[1], durability=sys.argv[2], group_commit_ms=1.0) as astore:
        async with trio.open_nursery() as nursery:
            for k in range(4):
                nursery.start_soon(writer, astore, k)

trio.run(main)
"""


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_acknowledged_appends_survive_kill_9(tmp_path: Path, durability: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), durability], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked: dict[int, int] = {}
    try:
        assert proc.stdout is not None
        lines = 0
        while lines < 400:  # kill in the middle of the stream, with writes in flight
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"child exited early: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}")
            k, seq = map(int, line.split())
            acked[k] = max(acked.get(k, 0), seq)
            lines += 1
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for line in rest.splitlines(keepends=True):
        if line.endswith("\n"):  # a line cut by the kill was not acknowledged
            k, seq = map(int, line.split())
            acked[k] = max(acked.get(k, 0), seq)

    with Store.open(tmp_path) as store:
        assert store.unclean_start
        for k, top in acked.items():
            origin = bytes([k + 1]) * 16
            log = store.entries("s", k % 2, origin)
            assert len(log) >= top, f"writer {k}: acknowledged {top}, only {len(log)} survived"
            assert [e.seq for e, _ in log] == list(range(1, len(log) + 1))  # gap-free
            prev = ZERO_HASH
            for entry, _digest in log:
                assert entry.prev == prev
                prev = _digest
            assert store.vv("s", k % 2)[origin] == (len(log), log[-1][1])
        assert store.max_hlc() >= max(acked.values())
