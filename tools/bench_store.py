"""Micro-benchmark of the durable store: appends/s one-per-transaction vs group commit, bytes on disk
per 384-d memory, and chunked shard loading with the event-loop lag it causes.

Every append is what the write path commits for one ``remember``: the log entry, the materialized
memory row and the version-vector update, in one ``ShardChanges``.

    python tools/bench_store.py [--n 2000] [--writers 64] [--dim 384] [--load 20000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engramp2p.crdt.entry import ZERO_HASH, Entry, Remember, entry_hash  # noqa: E402
from engramp2p.store import MemoryRow, ShardChanges, open_store  # noqa: E402
from engramp2p.store.db import DB_FILE  # noqa: E402


class Writes:
    """Pre-built appends (hash chains per origin) so the benchmark measures the store, not encoding."""

    def __init__(self, n: int, dim: int, origins: int, per_append: int = 1, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        vectors = rng.standard_normal((n, dim)).astype("<f4")
        self.per_origin: list[list[ShardChanges]] = [[] for _ in range(origins)]
        prevs = [ZERO_HASH] * origins
        for i in range(n):
            k = i % origins
            origin = bytes([k + 1]) * 16
            seq = len(self.per_origin[k]) + 1
            mid = rng.bytes(16)
            content = f"observation {i}: the robot saw a red door near the loading bay"
            vec = vectors[i].tobytes()
            entry = Entry(origin, seq, (1_700_000_000_000 + i) << 16, prevs[k],
                          Remember(mid, content, vec, 0.9, {"src": "bench"}))
            digest = entry_hash("bench", 0, entry)
            prevs[k] = digest
            row = MemoryRow(mid, origin, seq, entry.hlc, content, vec, 0.9, {"src": "bench"})
            self.per_origin[k].append(
                ShardChanges("bench", 0, entries=[(entry, digest)], memories_put=[row], vv=[(origin, seq, digest)]))

        self.memories = n
        if per_append > 1:  # a batched remember: one append carries many entries of one origin
            self.per_origin = [[_merge(chs[i:i + per_append]) for i in range(0, len(chs), per_append)]
                               for chs in self.per_origin]

    @property
    def total(self) -> int:
        return sum(len(x) for x in self.per_origin)


def _merge(changes: list[ShardChanges]) -> ShardChanges:
    out = ShardChanges(changes[0].space, changes[0].shard)
    for ch in changes:
        out.entries.extend(ch.entries)
        out.memories_put.extend(ch.memories_put)
    out.vv = changes[-1].vv
    return out


async def run_appends(data_dir: Path, writes: Writes, durability: str, group_ms: float) -> tuple[float, int]:
    """All origins write concurrently (one append in flight each); returns (appends/s, transactions)."""
    async with open_store(data_dir, durability=durability, group_commit_ms=group_ms) as astore:  # type: ignore[arg-type]
        before = astore.store.transactions

        async def writer(changes: list[ShardChanges]) -> None:
            for ch in changes:
                await astore.append([ch])

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for changes in writes.per_origin:
                nursery.start_soon(writer, changes)
        elapsed = time.perf_counter() - start
        return writes.memories / elapsed, astore.store.transactions - before


def disk_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.iterdir() if p.name.startswith(DB_FILE))


async def idle_lag() -> tuple[float, float]:
    """Event-loop lag of an idle loop on this machine: the floor under the load figure."""
    lags: list[float] = []
    end = trio.current_time() + 1.0
    while trio.current_time() < end:
        t = trio.current_time()
        await trio.sleep(0.001)
        lags.append(trio.current_time() - t - 0.001)
    return float(np.percentile(lags, 99)) * 1000.0, max(lags) * 1000.0


async def run_load(data_dir: Path, n: int, chunk: int) -> tuple[float, float, int]:
    """Load a shard in chunks while a probe measures event-loop lag; (rows/s, p99 lag ms, max lag ms)."""
    async with open_store(data_dir, durability="normal") as astore:
        lags: list[float] = []

        async def probe() -> None:
            while True:
                t = trio.current_time()
                await trio.sleep(0.001)
                lags.append(trio.current_time() - t - 0.001)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe)
            await trio.sleep(0.01)
            start = time.perf_counter()
            rows = 0
            matrix_parts = []
            async for batch in astore.memories("bench", 0, chunk=chunk):
                rows += len(batch)
                matrix_parts.append(np.frombuffer(b"".join(m.embedding for m in batch), dtype="<f4"))
                await trio.sleep(0)
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
        assert rows == n, (rows, n)
        return n / elapsed, float(np.percentile(lags, 99)) * 1000.0, max(lags) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="appends per throughput run")
    ap.add_argument("--writers", type=int, default=64, help="concurrent writers in the grouped runs")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--load", type=int, default=20000, help="memories for the size and load runs")
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--dir", default=None, help="where to put the databases (default: a temp dir)")
    args = ap.parse_args()

    root = Path(args.dir or tempfile.mkdtemp(prefix="bench_store_"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"# {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"# data in {root}; dim={args.dim}; each append = entry + memory row + vv update\n")

    single = Writes(args.n // 4, args.dim, origins=1)
    grouped = Writes(args.n, args.dim, origins=args.writers)
    batched = Writes(args.n * 2, args.dim, origins=8, per_append=100)
    print(f"{'durability':<10} {'mode':<34} {'memories':>8} {'txns':>6} {'memories/s':>10}")
    for durability in ("full", "normal"):
        runs = [("single: 1 writer, 1/append", single, 0.0),
                (f"grouped: {args.writers} writers, 0 ms", grouped, 0.0),
                (f"grouped: {args.writers} writers, 1 ms", grouped, 1.0),
                ("batched: 8 writers, 100/append", batched, 0.0)]
        for i, (label, writes, group_ms) in enumerate(runs):
            d = root / f"tp-{durability}-{i}"
            shutil.rmtree(d, ignore_errors=True)
            rate, txns = trio.run(run_appends, d, writes, durability, group_ms)
            print(f"{durability:<10} {label:<34} {writes.memories:>8} {txns:>6} {rate:>10.0f}")
            shutil.rmtree(d, ignore_errors=True)

    big = Writes(args.load, args.dim, origins=8)
    d = root / "size"
    shutil.rmtree(d, ignore_errors=True)
    trio.run(run_appends, d, big, "normal", 1.0)  # closing checkpoints and truncates the WAL
    size = disk_bytes(d)
    payload = 4 * args.dim
    print(f"\nbytes on disk per {args.dim}-d memory (log entry + materialized row + indexes): "
          f"{size / args.load:.0f} B (raw float32 vector {payload} B; {size / args.load / payload:.2f}x)")
    rate, p99, worst = trio.run(run_load, d, args.load, args.chunk)
    idle_p99, idle_worst = trio.run(idle_lag)
    print(f"chunked load of {args.load} memories (chunk {args.chunk}): {rate:.0f} rows/s; event-loop lag "
          f"p99 {p99:.1f} ms, max {worst:.1f} ms (idle loop on this machine: p99 {idle_p99:.1f}, "
          f"max {idle_worst:.1f}; load average {os.getloadavg()[0]:.1f})")
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
