"""AsyncStore: group commit, per-append isolation, backpressure, closing, chunked async loading."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import pytest
import trio
import trio.testing

from engramp2p.crdt.entry import ZERO_HASH, Entry, Remember, entry_hash
from engramp2p.store import AsyncStore, MemoryRow, ShardChanges, SlotRow, Store, StoreError, open_store


def remember(origin: bytes, seq: int, prev: bytes = ZERO_HASH) -> tuple[Entry, bytes]:
    body = Remember(seq.to_bytes(16, "big"), f"m{seq}", struct.pack("<4f", seq, 0, 0, 1), 1.0)
    entry = Entry(origin, seq, seq, prev, body)
    return entry, entry_hash("s", 0, entry)


async def test_concurrent_appends_share_few_transactions(tmp_path: Path) -> None:
    n_writers, per_writer = 50, 20
    async with open_store(tmp_path, durability="normal", group_commit_ms=1.0) as astore:
        before = astore.store.transactions

        async def writer(k: int) -> None:
            origin = bytes([k]) * 16
            prev = ZERO_HASH
            for seq in range(1, per_writer + 1):
                entry, digest = remember(origin, seq, prev)
                await astore.append([ShardChanges("s", 0, entries=[(entry, digest)], vv=[(origin, seq, digest)])])
                prev = digest

        async with trio.open_nursery() as nursery:
            for k in range(n_writers):
                nursery.start_soon(writer, k)
        total = n_writers * per_writer
        assert astore.appends == total
        transactions = astore.store.transactions - before
        assert transactions == astore.group_commits
        # 1,000 acknowledged appends from 50 concurrent writers: every writer has at most one append in
        # flight, so a transaction carries up to 50 of them; one-per-append would be 1,000.
        assert transactions <= total // 5, transactions
        assert astore.largest_batch > 1
        assert await astore.call(astore.store.entry_count, "s", 0) == total
        vv = await astore.vv("s", 0)
        assert {o: s for o, (s, _) in vv.items()} == {bytes([k]) * 16: per_writer for k in range(n_writers)}


async def test_a_bad_append_fails_alone(tmp_path: Path) -> None:
    origin = b"o" * 16
    first = remember(origin, 1)
    async with open_store(tmp_path, durability="normal", group_commit_ms=5.0) as astore:
        await astore.append([ShardChanges("s", 0, entries=[first])])
        outcomes: dict[int, object] = {}

        async def one(k: int, changes: list[ShardChanges]) -> None:
            try:
                await astore.append(changes)
                outcomes[k] = "ok"
            except sqlite3.IntegrityError:
                outcomes[k] = "dup"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, 0, [ShardChanges("s", 0, entries=[remember(origin, 2, first[1])])])
            nursery.start_soon(one, 1, [ShardChanges("s", 0, entries=[first])])  # duplicate seq 1
            nursery.start_soon(one, 2, [ShardChanges("s", 1, entries=[remember(origin, 1)])])
        assert outcomes == {0: "ok", 1: "dup", 2: "ok"}
        assert [e.seq for e, _ in await astore.entries("s", 0, origin)] == [1, 2]
        with pytest.raises(sqlite3.IntegrityError):  # alone in its transaction: the same error
            await astore.append([ShardChanges("s", 0, entries=[first])])


async def test_full_queue_blocks_appenders_until_committer_runs(tmp_path: Path) -> None:
    store = await trio.to_thread.run_sync(lambda: Store.open(tmp_path, durability="normal"))
    try:
        astore = AsyncStore(store, max_queue=2, group_commit_ms=0)
        done: list[int] = []

        async def one(seq: int) -> None:
            await astore.append([ShardChanges("s", 0, entries=[remember(b"q" * 16, seq)])])
            done.append(seq)

        async with trio.open_nursery() as nursery:
            for seq in range(1, 6):
                nursery.start_soon(one, seq)
            await trio.testing.wait_all_tasks_blocked()
            stats = astore._send.statistics()
            assert stats.current_buffer_used == 2 and stats.tasks_waiting_send == 3
            assert done == []
            await nursery.start(astore.run)
            with trio.fail_after(30):  # generous deadline; polling, not a timing assertion
                while len(done) < 5:
                    await trio.sleep(0.001)
            nursery.cancel_scope.cancel()
        assert sorted(done) == [1, 2, 3, 4, 5]
        assert store.entry_count("s", 0) == 5
    finally:
        store.close()


async def test_closing_fails_queued_and_later_appends(tmp_path: Path) -> None:
    store = await trio.to_thread.run_sync(lambda: Store.open(tmp_path, durability="normal"))
    try:
        astore = AsyncStore(store)
        errors: list[str] = []

        async def one() -> None:
            try:
                await astore.append([ShardChanges("s", 0, entries=[remember(b"c" * 16, 1)])])
            except StoreError as exc:
                errors.append(str(exc))

        async with trio.open_nursery() as outer:
            outer.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            with trio.CancelScope() as scope:
                scope.cancel()
                await astore.run()  # cancelled at once: the queued append is failed, not lost silently
        assert errors == ["store closed before the write was committed"]
        with pytest.raises(StoreError, match="closed"):
            await astore.append([ShardChanges("s", 0)])
        assert store.entry_count("s", 0) == 0
    finally:
        store.close()


async def test_async_chunked_loading(tmp_path: Path) -> None:
    rows = [MemoryRow(i.to_bytes(16, "big"), b"a" * 16, i + 1, i, "x", struct.pack("<2f", i, 1), 1.0)
            for i in range(2_300)]
    slots = [SlotRow(i.to_bytes(16, "big"), b"d" * 16, b"w" * 16, 1, False, 1, 0.5, 0.5) for i in range(1_500)]
    async with open_store(tmp_path, durability="normal") as astore:
        await astore.append([ShardChanges("s", 3, memories_put=rows, slots_put=slots)])
        loaded: list[MemoryRow] = []
        sizes = []
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            async for chunk in astore.memories("s", 3, chunk=500):
                sizes.append(len(chunk))
                loaded.extend(chunk)
            loaded_slots = [s async for chunk in astore.slots("s", 3, chunk=400) for s in chunk]
            nursery.cancel_scope.cancel()
        assert sizes == [500, 500, 500, 500, 300]
        assert loaded == rows
        assert loaded_slots == slots
        assert ticks > len(sizes)  # the event loop kept running other tasks while chunks loaded
        assert await astore.hosted_shards() == [("s", 3)]
        assert await astore.memory("s", rows[7].id) == rows[7]
