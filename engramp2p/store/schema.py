"""On-disk schema of ``<data_dir>/engramp2p.db``, its version, and the migrations between versions.

The schema is a contract (DESIGN.md: on-disk formats change only on purpose, with a version bump). A
database written by a *newer* engramp2p is refused rather than half-understood; an older one is
upgraded in place, one step at a time, inside the same transaction that records the new version, so a
crash mid-migration leaves the old version intact.

Space names and origin ids are interned into small integers (``space_ids``, ``origins``): they
appear in every log, memory, slot and version-vector row, and a 16-byte origin per edge slot would
otherwise be a third of the slot's size. The interning is local to this file and never leaves it.

Large rows (log entries, memories with a 384-d embedding) live in rowid tables with a separate unique
index; small, hot rows (edge slots, version vectors) are ``WITHOUT ROWID`` clustered on their key,
as SQLite recommends for rows well under ~1/20 of a page.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

SCHEMA_VERSION = 2

_V1 = """
CREATE TABLE schema_version (
    id      INTEGER PRIMARY KEY CHECK (id = 0),
    version INTEGER NOT NULL
);
CREATE TABLE identity (
    id          INTEGER PRIMARY KEY CHECK (id = 0),
    node_id     BLOB NOT NULL CHECK (length(node_id) = 16),
    incarnation INTEGER NOT NULL,
    name        TEXT NOT NULL,
    max_hlc     INTEGER NOT NULL DEFAULT 0,
    clean       INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE space_ids (
    sid  INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE origins (
    oid    INTEGER PRIMARY KEY,
    origin BLOB NOT NULL UNIQUE
);
CREATE TABLE spaces (
    sid         INTEGER PRIMARY KEY,
    descriptor  BLOB NOT NULL,
    created_hlc INTEGER NOT NULL,
    creator     BLOB NOT NULL
);
CREATE TABLE shards (
    sid   INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    PRIMARY KEY (sid, shard)
) WITHOUT ROWID;
CREATE TABLE entries (
    sid   INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    oid   INTEGER NOT NULL,
    seq   INTEGER NOT NULL,
    hlc   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    entry BLOB NOT NULL
);
CREATE UNIQUE INDEX entries_key ON entries (sid, shard, oid, seq);
CREATE TABLE memories (
    sid        INTEGER NOT NULL,
    shard      INTEGER NOT NULL,
    id         BLOB NOT NULL,
    oid        INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    hlc        INTEGER NOT NULL,
    content    TEXT NOT NULL,
    embedding  BLOB NOT NULL,
    confidence REAL NOT NULL,
    meta       BLOB NOT NULL
);
CREATE UNIQUE INDEX memories_key ON memories (sid, shard, id);
CREATE INDEX memories_by_id ON memories (sid, id);
CREATE TABLE slots (
    sid    INTEGER NOT NULL,
    shard  INTEGER NOT NULL,
    src    BLOB NOT NULL,
    dst    BLOB NOT NULL,
    writer INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    tomb   INTEGER NOT NULL,
    hlc    INTEGER NOT NULL,
    weight REAL NOT NULL,
    conf   REAL NOT NULL,
    PRIMARY KEY (sid, shard, src, dst, writer)
) WITHOUT ROWID;
CREATE TABLE vv (
    sid   INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    oid   INTEGER NOT NULL,
    seq   INTEGER NOT NULL,
    head  BLOB NOT NULL,
    PRIMARY KEY (sid, shard, oid)
) WITHOUT ROWID;
CREATE TABLE quarantine (
    sid    INTEGER NOT NULL,
    shard  INTEGER NOT NULL,
    oid    INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (sid, shard, oid)
) WITHOUT ROWID;
"""


def _create_v1(conn: sqlite3.Connection) -> None:
    for statement in _V1.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT INTO schema_version (id, version) VALUES (0, 0)")


def _add_dropped(conn: sqlite3.Connection) -> None:
    """v2: per dropped shard, the last seq this node's own origin had written there. The entries live on
    at the hosts it handed the shard to; if the shard comes back, the new replica must hold them again
    before this node appends under its origin there (or it would re-use their seqs: a fork)."""
    conn.execute("CREATE TABLE dropped (sid INTEGER NOT NULL, shard INTEGER NOT NULL, seq INTEGER NOT NULL, "
                 "PRIMARY KEY (sid, shard)) WITHOUT ROWID")


# MIGRATIONS[v] upgrades a database at version v to v + 1. Version 0 is an empty file.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _create_v1, 1: _add_dropped}


class SchemaError(Exception):
    """The database cannot be used by this build (too new, or damaged); the message is one line."""


def read_version(conn: sqlite3.Connection) -> int:
    """The stored schema version, 0 for a file with no engramp2p tables yet."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return 0
    row = conn.execute("SELECT version FROM schema_version WHERE id = 0").fetchone()
    if row is None:
        return 0
    return int(row[0])


def migrate(conn: sqlite3.Connection, path: Path, target: int | None = None) -> int:
    """Bring the database to ``target`` (default: this build's version) or refuse a newer one.

    Runs in one ``BEGIN IMMEDIATE`` transaction, so a second opener waits instead of migrating twice,
    and a crash leaves the previous version. Returns the version found before migrating.
    """
    target = SCHEMA_VERSION if target is None else target
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = read_version(conn)
        if found > target:
            raise SchemaError(
                f"{path}: schema version {found} is newer than this engramp2p supports ({target}); "
                "upgrade engramp2p or use another --data-dir"
            )
        version = found
        while version < target:
            step = MIGRATIONS.get(version)
            if step is None:
                raise SchemaError(f"{path}: no migration from schema version {version} to {version + 1}")
            step(conn)
            version += 1
            conn.execute("UPDATE schema_version SET version = ? WHERE id = 0", (version,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
