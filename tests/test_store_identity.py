"""Identity persistence: node_id made once per directory, incarnation bumps, HLC floor."""

from __future__ import annotations

from pathlib import Path

from engramp2p.crdt.entry import ZERO_HASH, Entry, Retract, entry_hash
from engramp2p.store import ShardChanges, SpaceRow, Store


def test_node_id_is_random_per_directory_and_survives_reopen(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a") as a:
        first = a.node_id
        assert len(first) == 16
    with Store.open(tmp_path / "a") as a:
        assert a.node_id == first
    with Store.open(tmp_path / "b") as b:
        assert b.node_id != first


def test_name_defaults_and_can_be_changed(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        assert store.name
    with Store.open(tmp_path, name="robot-7") as store:
        assert store.name == "robot-7"
    with Store.open(tmp_path) as store:
        assert store.name == "robot-7"


def test_incarnation_bumps_across_restarts(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        assert store.load_incarnation() == 0
        assert store.bump_incarnation() == 1
    with Store.open(tmp_path) as store:
        assert store.bump_incarnation() == 2
        store.save_incarnation(9)  # refuted a suspicion at 8
        store.save_incarnation(3)  # never moves backwards
        assert store.load_incarnation() == 9
    with Store.open(tmp_path) as store:
        assert store.bump_incarnation() == 10


def test_max_hlc_survives_reopen(tmp_path: Path) -> None:
    origin = bytes(range(16))
    with Store.open(tmp_path) as store:
        assert store.max_hlc() == 0
        entry = Entry(origin, 1, 5_000 << 16, ZERO_HASH, Retract(bytes(16), bytes(16)))
        store.commit([ShardChanges("s", 0, entries=[(entry, entry_hash("s", 0, entry))])])
        assert store.max_hlc() == 5_000 << 16
        store.put_space(SpaceRow("t", b"desc", 7_000 << 16, origin))
        assert store.max_hlc() == 7_000 << 16
    with Store.open(tmp_path) as store:
        assert store.max_hlc() == 7_000 << 16


def test_clean_shutdown_is_recorded(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        assert not store.unclean_start
    with Store.open(tmp_path) as store:
        assert not store.unclean_start
