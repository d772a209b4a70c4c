"""The synchronous store: one SQLite connection, used from exactly one thread at a time.

Durability (DESIGN.md §8: an acknowledged write survives ``kill -9`` and restart). SQLite in WAL
mode appends each commit to the ``-wal`` file; ``synchronous`` decides when that file is fsynced:

- ``normal``: at checkpoints only. A commit is in the OS page cache when ``COMMIT`` returns, so it
  survives the *process* dying (``kill -9``, OOM, a crash) but may roll back after an OS crash or a
  power cut -- the SQLite docs say exactly this for WAL + NORMAL.
- ``full`` (the default): the WAL is fsynced at every commit, so a commit also survives power loss.

The default is ``full`` because the devices this runs on (Raspberry Pis, robots, gateways) lose power
far more often than servers do, and losing an acknowledged entry is worse than losing data: this
origin's next write would *reuse* its sequence number, and every peer that already holds the lost
entry would silently keep the old one and drop the new (reference/crdt.md §4.4, Riak's doomstones).
Group commit (``writer.AsyncStore``) makes one fsync cover many writes, so ``full`` costs latency of
one fsync per batch, not throughput (numbers: ``tools/bench_store.py``, docs/BENCHMARKS.md).
``normal`` is for hosts whose OS and power are trusted (a server on a UPS) or for throwaway runs;
even then identity, incarnation, descriptors and quarantine decisions are written with ``full``, and
``Store.unclean_start`` (a marker written durably at open, cleared by ``close``) tells the node that
the last run died, so it can apply reference/crdt.md §4.4's rule for ``normal`` (a new origin id after
an unclean boot) if it serves entries committed under ``normal`` to peers.

One process owns a data directory: an exclusive ``flock`` on ``engramp2p.lock`` refuses a second
opener, which would otherwise share the node_id and write conflicting sequence numbers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from engramp2p.crdt.entry import Entry
from engramp2p.store import identity as ident
from engramp2p.store.rows import MemoryRow, QuarantineRow, ShardChanges, SlotRow, SpaceRow
from engramp2p.store.schema import SchemaError, migrate

Durability = Literal["full", "normal"]
DB_FILE = "engramp2p.db"
LOCK_FILE = "engramp2p.lock"
DEFAULT_CHUNK = 1000

_entry_enc = msgspec.msgpack.Encoder()
_entry_dec = msgspec.msgpack.Decoder(Entry)
_meta_enc = msgspec.msgpack.Encoder()
_meta_dec = msgspec.msgpack.Decoder(dict[str, str])

# Opaque pagination cursors: the last key returned.
MemoryCursor = bytes
SlotCursor = tuple[bytes, bytes, int]


_INSERT_ENTRY = "INSERT INTO entries (sid, shard, oid, seq, hlc, hash, entry) VALUES (?, ?, ?, ?, ?, ?, ?)"
_UPSERT_MEMORY = (
    "INSERT INTO memories (sid, shard, id, oid, seq, hlc, content, embedding, confidence, meta) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sid, shard, id) DO UPDATE SET "
    "oid = excluded.oid, seq = excluded.seq, hlc = excluded.hlc, content = excluded.content, "
    "embedding = excluded.embedding, confidence = excluded.confidence, meta = excluded.meta"
)
_DELETE_MEMORY = "DELETE FROM memories WHERE sid = ? AND shard = ? AND id = ?"
_UPSERT_SLOT = (
    "INSERT OR REPLACE INTO slots (sid, shard, src, dst, writer, seq, tomb, hlc, weight, conf) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DELETE_SLOT = "DELETE FROM slots WHERE sid = ? AND shard = ? AND src = ? AND dst = ? AND writer = ?"
_UPSERT_VV = "INSERT OR REPLACE INTO vv (sid, shard, oid, seq, head) VALUES (?, ?, ?, ?, ?)"


class _Ops:
    """Row writes of a transaction, coalesced into few ``executemany`` calls.

    A group commit of 60 one-memory appends would otherwise make 180 calls of one row each. Tables
    are independent, so only the order *within* a table matters: consecutive writes with the same
    statement are merged, and a put after a delete (or the reverse) stays after it.
    """

    __slots__ = ("_queues",)

    def __init__(self) -> None:
        self._queues: dict[str, list[tuple[str, list[tuple]]]] = {}

    def add(self, table: str, sql: str, rows: list[tuple]) -> None:
        queue = self._queues.setdefault(table, [])
        if queue and queue[-1][0] is sql:
            queue[-1][1].extend(rows)
        else:
            queue.append((sql, rows))

    def clear(self) -> None:
        self._queues = {}

    def flush(self, conn: sqlite3.Connection) -> None:
        queues, self._queues = self._queues, {}
        for queue in queues.values():
            for sql, rows in queue:
                conn.executemany(sql, rows)


class StoreError(Exception):
    """A store failure meant for the operator; the message is one line."""


class StoreLocked(StoreError):
    """Another process (or another ``Store`` in this one) has the data directory open."""


__all__ = ["DB_FILE", "Durability", "SchemaError", "Store", "StoreError", "StoreLocked"]


class Store:
    """All persistent state of one peer. Not thread-safe: call it from one thread at a time.

    Use ``Store.open``; ``close`` (or ``with``) releases the directory lock and marks a clean shutdown.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, lock_fd: int, durability: Durability,
                 identity: ident.Identity, unclean_start: bool, max_hlc: int) -> None:
        self._conn = conn
        self.path = path
        self._lock_fd: int | None = lock_fd
        self.durability: Durability = durability
        self.node_id: bytes = identity.node_id
        self.name: str = identity.name
        self.unclean_start = unclean_start
        """The previous run did not close the store (it crashed or was killed)."""
        self.transactions = 0
        """Write transactions committed by this instance; tests and benchmarks count group commits."""
        self._max_hlc = max_hlc
        self._sids: dict[str, int] = {}
        self._oids: dict[bytes, int] = {}
        self._origins: dict[int, bytes] = {}
        self._hosted: set[tuple[int, int]] = set()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str], *, name: str | None = None,
             durability: Durability = "full") -> Store:
        """Open (creating if needed) ``<data_dir>/engramp2p.db``; raises ``StoreError``/``SchemaError``."""
        if durability not in ("full", "normal"):
            raise StoreError(f"durability must be 'full' or 'normal', not {durability!r}")
        directory = Path(data_dir)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise StoreLocked(f"{directory}: data directory is in use by another engramp2p process") from None
        path = directory / DB_FILE
        try:
            # check_same_thread=False: AsyncStore calls from trio's worker threads, one at a time.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"{path}: could not enable WAL mode (got {mode})")
                # Identity, incarnation and the unclean-shutdown marker are always written with FULL:
                # they are rare, and a marker lost to a power cut would hide the unclean boot.
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=5000")
                conn.execute("PRAGMA journal_size_limit=67108864")
                migrate(conn, path)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    me = ident.ensure_identity(conn, name)
                    clean, max_hlc = conn.execute(
                        "SELECT clean, max_hlc FROM identity WHERE id = 0").fetchone()
                    conn.execute("UPDATE identity SET clean = 0 WHERE id = 0")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute(f"PRAGMA synchronous={durability.upper()}")
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise StoreError(f"{path}: cannot open database: {exc}") from exc
            except BaseException:
                conn.close()
                raise
        except BaseException:
            os.close(lock_fd)
            raise
        store = cls(conn, path, lock_fd, durability, me, unclean_start=not clean, max_hlc=int(max_hlc))
        store._load_interning()
        return store

    def close(self) -> None:
        """Mark a clean shutdown, checkpoint the WAL, release the directory lock. Idempotent."""
        if self._lock_fd is None:
            return
        try:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("UPDATE identity SET clean = 1 WHERE id = 0")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ identity and clock

    def load_incarnation(self) -> int:
        return ident.load_incarnation(self._conn)

    def bump_incarnation(self) -> int:
        """Persist and return ``stored + 1``; call once at start, before announcing ourselves."""
        with self._write():
            n = ident.load_incarnation(self._conn) + 1
            ident.save_incarnation(self._conn, n)
        return n

    def save_incarnation(self, incarnation: int) -> None:
        """Persist a higher incarnation (e.g. after a refutation); lower values are ignored."""
        with self._write():
            ident.save_incarnation(self._conn, incarnation)

    def max_hlc(self) -> int:
        """The largest HLC ever committed here; the HLC starts from it (DESIGN.md §3)."""
        return self._max_hlc

    # ------------------------------------------------------------------ spaces

    def put_space(self, row: SpaceRow) -> None:
        """Store (or replace) the winning descriptor of ``row.name``; merging is the spaces layer's job."""
        with self._write():
            sid = self._sid(row.name, create=True)
            self._conn.execute(
                "INSERT OR REPLACE INTO spaces (sid, descriptor, created_hlc, creator) VALUES (?, ?, ?, ?)",
                (sid, row.descriptor, row.created_hlc, row.creator),
            )
            self._raise_hlc(row.created_hlc)

    def spaces(self) -> list[SpaceRow]:
        rows = self._conn.execute(
            "SELECT i.name, s.descriptor, s.created_hlc, s.creator "
            "FROM spaces s JOIN space_ids i ON i.sid = s.sid ORDER BY i.name"
        ).fetchall()
        return [SpaceRow(n, bytes(d), int(h), bytes(c)) for n, d, h, c in rows]

    # ------------------------------------------------------------------ writes

    def commit(self, changes: Sequence[ShardChanges]) -> None:
        """Apply ``changes`` in one transaction: all of it is durable when this returns, or none of it."""
        [error] = self.commit_batches([changes])
        if error is not None:
            raise error

    def commit_batches(self, batches: Sequence[Sequence[ShardChanges]]) -> list[BaseException | None]:
        """Group commit: every batch in ONE transaction (one fsync), each batch atomic on its own.

        The fast path applies all batches straight into the transaction. If one fails (a duplicate
        key: a caller bug), the transaction is rolled back and replayed with a savepoint per batch,
        so the failing batch is dropped alone and its exception returned in its slot while the others
        still commit. Savepoints are not used up front because they cost about as much as the rows
        of a small append. With several batches, an error of the commit itself (I/O, disk full)
        raises: nothing was committed. A single batch gets any error in its slot.
        """
        try:
            return self._commit_all(batches, isolate=False)
        except Exception as exc:
            if len(batches) == 1:  # nothing to isolate: the one batch failed
                return [exc]
        return self._commit_all(batches, isolate=True)

    def _commit_all(self, batches: Sequence[Sequence[ShardChanges]], isolate: bool) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        top = self._max_hlc
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            ops = _Ops()
            for batch in batches:
                if not isolate:
                    top = max(top, *(self._apply(ch, ops) for ch in batch), 0)
                    results.append(None)
                    continue
                conn.execute("SAVEPOINT batch")
                try:
                    hlc = max((self._apply(ch, ops) for ch in batch), default=0)
                    ops.flush(conn)
                except Exception as exc:  # isolate this batch; the caller awaiting it gets the error
                    ops.clear()
                    conn.execute("ROLLBACK TO batch")
                    conn.execute("RELEASE batch")
                    self._forget_caches()
                    results.append(exc)
                else:
                    conn.execute("RELEASE batch")
                    top = max(top, hlc)
                    results.append(None)
            ops.flush(conn)
            if top > self._max_hlc:
                conn.execute("UPDATE identity SET max_hlc = max(max_hlc, ?) WHERE id = 0", (top,))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._forget_caches()
            raise
        self.transactions += 1
        self._max_hlc = top
        return results

    def _apply(self, ch: ShardChanges, ops: _Ops) -> int:
        """Queue one shard's row changes (interning happens at once); returns the largest HLC seen."""
        sid = self._sid(ch.space, create=True)
        shard = ch.shard
        if (sid, shard) not in self._hosted:
            self._conn.execute("INSERT OR IGNORE INTO shards (sid, shard) VALUES (?, ?)", (sid, shard))
            self._hosted.add((sid, shard))
        top = 0
        if ch.entries:
            rows = []
            for entry, digest in ch.entries:
                rows.append((sid, shard, self._oid(entry.origin), entry.seq, entry.hlc, digest,
                             _entry_enc.encode(entry)))
                top = max(top, entry.hlc)
            ops.add("entries", _INSERT_ENTRY, rows)
        if ch.memories_put:
            rows = []
            for m in ch.memories_put:
                rows.append((sid, shard, m.id, self._oid(m.origin), m.seq, m.hlc, m.content, m.embedding,
                             m.confidence, _meta_enc.encode(m.meta)))
                top = max(top, m.hlc)
            ops.add("memories", _UPSERT_MEMORY, rows)
        if ch.memories_del:
            ops.add("memories", _DELETE_MEMORY, [(sid, shard, mid) for mid in ch.memories_del])
        if ch.slots_put:
            rows = []
            for sl in ch.slots_put:
                rows.append((sid, shard, sl.src, sl.dst, self._oid(sl.writer), sl.seq, int(sl.tomb), sl.hlc,
                             sl.weight, sl.conf))
                top = max(top, sl.hlc)
            ops.add("slots", _UPSERT_SLOT, rows)
        if ch.slots_del:
            ops.add("slots", _DELETE_SLOT, [(sid, shard, src, dst, self._oid(w)) for src, dst, w in ch.slots_del])
        if ch.vv:
            ops.add("vv", _UPSERT_VV, [(sid, shard, self._oid(o), seq, head) for o, seq, head in ch.vv])
        return top

    def host_shard(self, space: str, shard: int) -> None:
        """Record that this peer hosts ``(space, shard)`` even before any data arrives."""
        self.commit([ShardChanges(space, shard)])

    def drop_shard(self, space: str, shard: int, own_seq: int = 0) -> None:
        """Forget everything of one shard (it left our placement and the new hosts cover it), except
        ``own_seq``, the last seq our own origin wrote there, if any (``dropped``)."""
        sid = self._sid(space)
        if sid is None:
            return
        with self._write():
            for table in ("entries", "memories", "slots", "vv", "quarantine", "shards"):
                self._conn.execute(f"DELETE FROM {table} WHERE sid = ? AND shard = ?", (sid, shard))
            self._conn.execute("DELETE FROM dropped WHERE sid = ? AND shard = ?", (sid, shard))
            if own_seq > 0:
                self._conn.execute("INSERT INTO dropped (sid, shard, seq) VALUES (?, ?, ?)", (sid, shard, own_seq))
        self._hosted.discard((sid, shard))

    def dropped(self) -> dict[tuple[str, int], int]:
        """Per shard we dropped after writing to it: our own origin's last seq there."""
        rows = self._conn.execute(
            "SELECT i.name, d.shard, d.seq FROM dropped d JOIN space_ids i ON i.sid = d.sid").fetchall()
        return {(str(n), int(s)): int(q) for n, s, q in rows}

    # ------------------------------------------------------------------ log reads

    def entries(self, space: str, shard: int, origin: bytes, from_seq: int = 1,
                to_seq: int | None = None, limit: int | None = None) -> list[tuple[Entry, bytes]]:
        """``(entry, hash)`` of one origin's log in ascending seq, ``from_seq <= seq <= to_seq``."""
        return [(_entry_dec.decode(raw), digest)
                for _, digest, raw in self.entries_raw(space, shard, origin, from_seq, to_seq, limit)]

    def entries_raw(self, space: str, shard: int, origin: bytes, from_seq: int = 1,
                    to_seq: int | None = None, limit: int | None = None) -> list[tuple[int, bytes, bytes]]:
        """``(seq, hash, msgpack bytes)``: lets anti-entropy budget and ship entries without decoding."""
        sid, oid = self._sid(space), self._oids.get(origin) or self._lookup_oid(origin)
        if sid is None or oid is None:
            return []
        rows = self._conn.execute(
            "SELECT seq, hash, entry FROM entries WHERE sid = ? AND shard = ? AND oid = ? "
            "AND seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
            (sid, shard, oid, from_seq, 2**63 - 1 if to_seq is None else to_seq,
             -1 if limit is None else limit),
        ).fetchall()
        return [(int(s), bytes(h), bytes(e)) for s, h, e in rows]

    def entry_count(self, space: str, shard: int, origin: bytes | None = None) -> int:
        sid = self._sid(space)
        if sid is None:
            return 0
        if origin is None:
            row = self._conn.execute(
                "SELECT count(*) FROM entries WHERE sid = ? AND shard = ?", (sid, shard)).fetchone()
        else:
            oid = self._oids.get(origin) or self._lookup_oid(origin)
            if oid is None:
                return 0
            row = self._conn.execute(
                "SELECT count(*) FROM entries WHERE sid = ? AND shard = ? AND oid = ?", (sid, shard, oid)
            ).fetchone()
        return int(row[0])

    def vv(self, space: str, shard: int) -> dict[bytes, tuple[int, bytes]]:
        """The stored version vector: origin -> (contiguous seq, head hash)."""
        sid = self._sid(space)
        if sid is None:
            return {}
        rows = self._conn.execute(
            "SELECT oid, seq, head FROM vv WHERE sid = ? AND shard = ?", (sid, shard)).fetchall()
        return {self._origin(o): (int(s), bytes(h)) for o, s, h in rows}

    def hosted_shards(self) -> list[tuple[str, int]]:
        rows = self._conn.execute(
            "SELECT i.name, s.shard FROM shards s JOIN space_ids i ON i.sid = s.sid ORDER BY i.name, s.shard"
        ).fetchall()
        return [(str(n), int(s)) for n, s in rows]

    # ------------------------------------------------------------------ materialized state

    def memory(self, space: str, memory_id: bytes) -> MemoryRow | None:
        sid = self._sid(space)
        if sid is None:
            return None
        row = self._conn.execute(
            "SELECT id, oid, seq, hlc, content, embedding, confidence, meta FROM memories "
            "WHERE sid = ? AND id = ? ORDER BY shard LIMIT 1", (sid, memory_id)
        ).fetchone()
        return None if row is None else self._memory_row(row)

    def memory_count(self, space: str, shard: int) -> int:
        sid = self._sid(space)
        if sid is None:
            return 0
        return int(self._conn.execute(
            "SELECT count(*) FROM memories WHERE sid = ? AND shard = ?", (sid, shard)).fetchone()[0])

    def slot_count(self, space: str, shard: int) -> int:
        sid = self._sid(space)
        if sid is None:
            return 0
        return int(self._conn.execute(
            "SELECT count(*) FROM slots WHERE sid = ? AND shard = ?", (sid, shard)).fetchone()[0])

    def memories_page(self, space: str, shard: int, after: MemoryCursor | None,
                      limit: int = DEFAULT_CHUNK) -> tuple[list[MemoryRow], MemoryCursor | None]:
        """One chunk of a shard's memories in id order, and the cursor for the next (None: done).

        Keyset pagination holds no read transaction between chunks, so a loader can hand control back
        to the event loop (and writers can commit) between chunks.
        """
        sid = self._sid(space)
        if sid is None:
            return [], None
        rows = self._conn.execute(
            "SELECT id, oid, seq, hlc, content, embedding, confidence, meta FROM memories "
            "WHERE sid = ? AND shard = ? AND id > ? ORDER BY id LIMIT ?",
            (sid, shard, b"" if after is None else after, limit),
        ).fetchall()
        out = [self._memory_row(r) for r in rows]
        return out, (out[-1].id if len(out) == limit else None)

    def slots_page(self, space: str, shard: int, after: SlotCursor | None,
                   limit: int = DEFAULT_CHUNK) -> tuple[list[SlotRow], SlotCursor | None]:
        """One chunk of a shard's edge slots in (src, dst, writer) order; see ``memories_page``."""
        sid = self._sid(space)
        if sid is None:
            return [], None
        src, dst, writer = (b"", b"", -1) if after is None else after
        rows = self._conn.execute(
            "SELECT src, dst, writer, seq, tomb, hlc, weight, conf FROM slots "
            "WHERE sid = ? AND shard = ? AND (src, dst, writer) > (?, ?, ?) ORDER BY src, dst, writer LIMIT ?",
            (sid, shard, src, dst, writer, limit),
        ).fetchall()
        out = [SlotRow(bytes(s), bytes(d), self._origin(w), int(q), bool(t), int(h), float(wt), float(c))
               for s, d, w, q, t, h, wt, c in rows]
        cursor = None
        if len(rows) == limit:
            last = rows[-1]
            cursor = (bytes(last[0]), bytes(last[1]), int(last[2]))
        return out, cursor

    def iter_memories(self, space: str, shard: int, chunk: int = DEFAULT_CHUNK) -> Iterator[list[MemoryRow]]:
        cursor: MemoryCursor | None = None
        while True:
            rows, cursor = self.memories_page(space, shard, cursor, chunk)
            if rows:
                yield rows
            if cursor is None:
                return

    def iter_slots(self, space: str, shard: int, chunk: int = DEFAULT_CHUNK) -> Iterator[list[SlotRow]]:
        cursor: SlotCursor | None = None
        while True:
            rows, cursor = self.slots_page(space, shard, cursor, chunk)
            if rows:
                yield rows
            if cursor is None:
                return

    # ------------------------------------------------------------------ quarantine

    def quarantine(self, space: str, shard: int, origin: bytes, reason: str) -> None:
        """Record a forked origin (DESIGN.md §7) so the decision survives restarts."""
        with self._write():
            sid = self._sid(space, create=True)
            self._conn.execute(
                "INSERT OR REPLACE INTO quarantine (sid, shard, oid, reason) VALUES (?, ?, ?, ?)",
                (sid, shard, self._oid(origin), reason),
            )

    def release_quarantine(self, space: str, shard: int, origin: bytes) -> None:
        sid, oid = self._sid(space), self._lookup_oid(origin)
        if sid is None or oid is None:
            return
        with self._write():
            self._conn.execute(
                "DELETE FROM quarantine WHERE sid = ? AND shard = ? AND oid = ?", (sid, shard, oid))

    def quarantined(self) -> list[QuarantineRow]:
        rows = self._conn.execute(
            "SELECT i.name, q.shard, q.oid, q.reason FROM quarantine q JOIN space_ids i ON i.sid = q.sid "
            "ORDER BY i.name, q.shard"
        ).fetchall()
        return [QuarantineRow(str(n), int(s), self._origin(o), str(r)) for n, s, o, r in rows]

    # ------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """A transaction for rare metadata (identity, spaces, quarantine, drops): always fsynced.

        Under ``normal`` durability the log may lose its last commits to a power cut, but an
        incarnation, a space descriptor or a quarantine decision must not silently revert.
        """
        relaxed = self.durability != "full"
        if relaxed:
            self._conn.execute("PRAGMA synchronous=FULL")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                self._forget_caches()
                raise
        finally:
            if relaxed:
                self._conn.execute(f"PRAGMA synchronous={self.durability.upper()}")
        self.transactions += 1

    def _raise_hlc(self, hlc: int) -> None:
        if hlc > self._max_hlc:
            self._conn.execute("UPDATE identity SET max_hlc = max(max_hlc, ?) WHERE id = 0", (hlc,))
            self._max_hlc = hlc  # a rollback reloads it in _forget_caches

    def _memory_row(self, row: tuple) -> MemoryRow:
        mid, oid, seq, hlc, content, emb, conf, meta = row
        return MemoryRow(bytes(mid), self._origin(oid), int(seq), int(hlc), str(content), bytes(emb),
                         float(conf), _meta_dec.decode(meta))

    def _load_interning(self) -> None:
        self._sids = {str(n): int(s) for s, n in self._conn.execute("SELECT sid, name FROM space_ids")}
        self._origins = {int(o): bytes(b) for o, b in self._conn.execute("SELECT oid, origin FROM origins")}
        self._oids = {b: o for o, b in self._origins.items()}
        self._hosted = {(int(a), int(b)) for a, b in self._conn.execute("SELECT sid, shard FROM shards")}
        self._max_hlc = int(self._conn.execute("SELECT max_hlc FROM identity WHERE id = 0").fetchone()[0])

    def _forget_caches(self) -> None:
        """After a rollback the caches may name rows that no longer exist: reload them from disk."""
        self._load_interning()

    def _sid(self, space: str, create: bool = False) -> int | None:
        sid = self._sids.get(space)
        if sid is not None:
            return sid
        row = self._conn.execute("SELECT sid FROM space_ids WHERE name = ?", (space,)).fetchone()
        if row is None:
            if not create:
                return None
            sid = int(self._conn.execute("INSERT INTO space_ids (name) VALUES (?)", (space,)).lastrowid)
        else:
            sid = int(row[0])
        self._sids[space] = sid
        return sid

    def _lookup_oid(self, origin: bytes) -> int | None:
        oid = self._oids.get(origin)
        if oid is not None:
            return oid
        row = self._conn.execute("SELECT oid FROM origins WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else int(row[0])

    def _oid(self, origin: bytes) -> int:
        oid = self._lookup_oid(origin)
        if oid is None:
            oid = int(self._conn.execute("INSERT INTO origins (origin) VALUES (?)", (origin,)).lastrowid)
        self._oids[origin] = oid
        self._origins[oid] = origin
        return oid

    def _origin(self, oid: int) -> bytes:
        origin = self._origins.get(oid)
        if origin is None:
            origin = bytes(self._conn.execute("SELECT origin FROM origins WHERE oid = ?", (oid,)).fetchone()[0])
            self._origins[oid] = origin
        return origin
