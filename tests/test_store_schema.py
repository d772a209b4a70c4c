"""Schema creation, versioning, migrations, refusal of newer files, and the directory lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engramp2p.store import DB_FILE, SCHEMA_VERSION, SchemaError, Store, StoreError, StoreLocked
from engramp2p.store import schema as schema_mod

TABLES = {"schema_version", "identity", "space_ids", "origins", "spaces", "shards", "entries",
          "memories", "slots", "vv", "quarantine", "dropped"}


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _set_version(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (version,))
    conn.commit()
    conn.close()


def test_creates_versioned_wal_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Store.open(data, durability="normal") as store:
        assert store.path == data / DB_FILE
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        store.bump_incarnation()  # metadata is written with FULL, then the log's mode is restored
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert _tables(data / DB_FILE) >= TABLES
    with sqlite3.connect(data / DB_FILE) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 2
    with Store.open(data) as store:
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL is the default


def test_newer_schema_is_refused_with_one_clear_line(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    _set_version(tmp_path / DB_FILE, 7)
    with pytest.raises(SchemaError) as info:
        Store.open(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / DB_FILE) in message
    assert "7" in message and f"({SCHEMA_VERSION})" in message
    # The refusal released the lock and left the file untouched.
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == 7


def test_older_schema_is_migrated_step_by_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store.open(tmp_path) as store:
        node_id = store.node_id

    def to_v3(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE spaces ADD COLUMN note TEXT NOT NULL DEFAULT ''")

    monkeypatch.setattr(schema_mod, "SCHEMA_VERSION", 3)
    monkeypatch.setitem(schema_mod.MIGRATIONS, 2, to_v3)
    with Store.open(tmp_path) as store:
        assert store.node_id == node_id
        cols = {r[1] for r in store._conn.execute("PRAGMA table_info(spaces)")}
        assert "note" in cols
        assert schema_mod.read_version(store._conn) == 3


def test_failed_migration_leaves_the_old_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(tmp_path).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE spaces ADD COLUMN half TEXT")
        raise RuntimeError("disk pulled mid-migration")

    monkeypatch.setattr(schema_mod, "SCHEMA_VERSION", 3)
    monkeypatch.setitem(schema_mod.MIGRATIONS, 2, broken)
    with pytest.raises(RuntimeError):
        Store.open(tmp_path)
    monkeypatch.setattr(schema_mod, "SCHEMA_VERSION", 2)
    with Store.open(tmp_path) as store:
        assert schema_mod.read_version(store._conn) == 2
        assert "half" not in {r[1] for r in store._conn.execute("PRAGMA table_info(spaces)")}


def test_v1_database_gets_the_dropped_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema_mod, "SCHEMA_VERSION", 1)
    Store.open(tmp_path).close()
    assert "dropped" not in _tables(tmp_path / DB_FILE)
    monkeypatch.setattr(schema_mod, "SCHEMA_VERSION", 2)
    with Store.open(tmp_path) as store:
        assert store.dropped() == {}
        assert schema_mod.read_version(store._conn) == 2


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        Store.open(tmp_path)


def test_one_owner_per_data_directory(tmp_path: Path) -> None:
    first = Store.open(tmp_path)
    with pytest.raises(StoreLocked, match="in use"):
        Store.open(tmp_path)
    first.close()
    first.close()  # idempotent
    Store.open(tmp_path).close()


def test_bad_durability_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="durability"):
        Store.open(tmp_path, durability="off")  # type: ignore[arg-type]
