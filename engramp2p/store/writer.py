"""The trio face of the store: one worker thread, group commit, backpressure.

SQLite calls block, and with ``synchronous=FULL`` every commit waits for an fsync (milliseconds on an
SD card). So every call runs in a worker thread, one at a time (a ``CapacityLimiter(1)``: the
connection is never used by two threads at once), and the event loop only ever waits on it.

Group commit: ``append`` queues its changes and sleeps until the transaction that contains them has
committed. One committer task takes everything queued -- whatever arrived while the previous commit
was in flight, plus whatever arrives within ``group_commit_ms`` of the first -- and commits it as ONE
transaction (one fsync). Under load, batches grow by themselves; a lone write pays at most the window.
The default window is 0: with callers that await their acknowledgement (every client, every pushed
chunk) the in-flight commit already gathers the next batch, and a window only adds idle time per
round (``tools/bench_store.py`` measures both); raise it for many open-loop writers on a slow disk.
Each append is still atomic on its own (``Store.commit_batches`` isolates a failing append with
savepoints), so a bad append fails alone. The queue is bounded: when the disk falls behind, ``append`` blocks its caller
instead of buffering without limit.

Reads go through the same worker; shard loading pages through keyset chunks, so the event loop is
never held for more than one chunk's conversion (see ``memories`` / ``slots``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from engramp2p.crdt.entry import Entry
from engramp2p.store.db import DEFAULT_CHUNK, Durability, MemoryCursor, SlotCursor, Store, StoreError
from engramp2p.store.rows import MemoryRow, QuarantineRow, ShardChanges, SlotRow, SpaceRow

T = TypeVar("T")

DEFAULT_GROUP_COMMIT_MS = 0.0
DEFAULT_MAX_QUEUE = 1024
DEFAULT_MAX_BATCH = 1024


class _Pending:
    __slots__ = ("changes", "done", "error")

    def __init__(self, changes: Sequence[ShardChanges]) -> None:
        self.changes = changes
        self.done = trio.Event()
        self.error: BaseException | None = None


class AsyncStore:
    """Runs a ``Store`` off the event loop. Start ``run`` in a nursery (or use ``open_store``)."""

    def __init__(self, store: Store, *, group_commit_ms: float = DEFAULT_GROUP_COMMIT_MS,
                 max_queue: int = DEFAULT_MAX_QUEUE, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if group_commit_ms < 0 or max_queue < 1 or max_batch < 1:
            raise ValueError("group_commit_ms >= 0, max_queue >= 1 and max_batch >= 1 are required")
        self.store = store
        self.group_commit_ms = group_commit_ms
        self.max_batch = max_batch
        self._limiter = trio.CapacityLimiter(1)
        self._send, self._recv = trio.open_memory_channel[_Pending](max_queue)
        self.group_commits = 0
        """Transactions the committer ran (each may carry many appends)."""
        self.appends = 0
        """Appends committed (successfully or failed alone)."""
        self.largest_batch = 0

    @property
    def node_id(self) -> bytes:
        return self.store.node_id

    # ------------------------------------------------------------------ writes

    async def append(self, changes: Sequence[ShardChanges]) -> None:
        """Return once ``changes`` are committed (durable per the store's durability); raise if not.

        Blocks while the queue is full (backpressure). If the caller is cancelled after queueing, the
        changes may still commit: cancellation withdraws the acknowledgement, not the write.
        """
        pending = _Pending(changes)
        try:
            await self._send.send(pending)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise StoreError("store is closed") from None
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The committer loop; runs until cancelled, then fails whatever is still queued."""
        task_status.started()
        window = self.group_commit_ms / 1000.0
        try:
            while True:
                batch = [await self._recv.receive()]
                if window > 0:
                    with trio.move_on_after(window):
                        while len(batch) < self.max_batch:
                            batch.append(await self._recv.receive())
                while len(batch) < self.max_batch:
                    try:
                        batch.append(self._recv.receive_nowait())
                    except trio.WouldBlock:
                        break
                await self._commit(batch)
        finally:
            # Whatever is still queued was never handed to SQLite: fail it, then refuse new appends.
            while True:
                try:
                    pending = self._recv.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                pending.error = StoreError("store closed before the write was committed")
                pending.done.set()
            self._recv.close()

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            results = await trio.to_thread.run_sync(
                self.store.commit_batches, [p.changes for p in batch], limiter=self._limiter
            )
        except Exception as exc:  # the commit itself failed: none of the batch is durable
            for pending in batch:
                err = StoreError(f"commit failed: {exc}")
                err.__cause__ = exc
                pending.error = err
                pending.done.set()
            return
        self.group_commits += 1
        self.appends += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        for pending, error in zip(batch, results, strict=True):
            pending.error = error
            pending.done.set()

    # ------------------------------------------------------------------ worker calls

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the store's worker (one at a time with commits)."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def bump_incarnation(self) -> int:
        return await self.call(self.store.bump_incarnation)

    async def save_incarnation(self, incarnation: int) -> None:
        await self.call(self.store.save_incarnation, incarnation)

    async def put_space(self, row: SpaceRow) -> None:
        await self.call(self.store.put_space, row)

    async def spaces(self) -> list[SpaceRow]:
        return await self.call(self.store.spaces)

    async def entries(self, space: str, shard: int, origin: bytes, from_seq: int = 1,
                      to_seq: int | None = None, limit: int | None = None) -> list[tuple[Entry, bytes]]:
        return await self.call(self.store.entries, space, shard, origin, from_seq, to_seq, limit)

    async def entries_raw(self, space: str, shard: int, origin: bytes, from_seq: int = 1,
                          to_seq: int | None = None, limit: int | None = None) -> list[tuple[int, bytes, bytes]]:
        return await self.call(self.store.entries_raw, space, shard, origin, from_seq, to_seq, limit)

    async def vv(self, space: str, shard: int) -> dict[bytes, tuple[int, bytes]]:
        return await self.call(self.store.vv, space, shard)

    async def hosted_shards(self) -> list[tuple[str, int]]:
        return await self.call(self.store.hosted_shards)

    async def memory(self, space: str, memory_id: bytes) -> MemoryRow | None:
        return await self.call(self.store.memory, space, memory_id)

    async def drop_shard(self, space: str, shard: int, own_seq: int = 0) -> None:
        await self.call(self.store.drop_shard, space, shard, own_seq)

    async def dropped(self) -> dict[tuple[str, int], int]:
        return await self.call(self.store.dropped)

    async def quarantine(self, space: str, shard: int, origin: bytes, reason: str) -> None:
        await self.call(self.store.quarantine, space, shard, origin, reason)

    async def quarantined(self) -> list[QuarantineRow]:
        return await self.call(self.store.quarantined)

    async def memories(self, space: str, shard: int, chunk: int = DEFAULT_CHUNK) -> AsyncIterator[list[MemoryRow]]:
        """A shard's memories, ``chunk`` rows at a time, each fetched on the worker."""
        cursor: MemoryCursor | None = None
        while True:
            rows, cursor = await self.call(self.store.memories_page, space, shard, cursor, chunk)
            if rows:
                yield rows
            if cursor is None:
                return

    async def slots(self, space: str, shard: int, chunk: int = DEFAULT_CHUNK) -> AsyncIterator[list[SlotRow]]:
        """A shard's edge slots, ``chunk`` rows at a time, each fetched on the worker."""
        cursor: SlotCursor | None = None
        while True:
            rows, cursor = await self.call(self.store.slots_page, space, shard, cursor, chunk)
            if rows:
                yield rows
            if cursor is None:
                return


@asynccontextmanager
async def open_store(data_dir: str | os.PathLike[str], *, name: str | None = None,
                     durability: Durability = "full", group_commit_ms: float = DEFAULT_GROUP_COMMIT_MS,
                     max_queue: int = DEFAULT_MAX_QUEUE) -> AsyncIterator[AsyncStore]:
    """Open the store off the event loop, run its committer, and close it cleanly on exit."""
    store = await trio.to_thread.run_sync(
        functools.partial(Store.open, data_dir, name=name, durability=durability))
    astore = AsyncStore(store, group_commit_ms=group_commit_ms, max_queue=max_queue)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(astore.run)
            try:
                yield astore
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await astore.call(store.close)
