"""Who this data directory is: ``node_id``, ``incarnation`` and ``name`` (DESIGN.md §3).

``node_id`` is 16 random bytes made once, when the database is created, and kept in the *same* file
as the log it signs as origin. A lost or wiped disk therefore means a new id, so a device can never
reuse a sequence number its peers already hold under its old id (reference/crdt.md §4.4). It is never
derived from a MAC address or hostname, which a cloned SD card would share.

``incarnation`` is persisted so that a restart announces ``stored + 1`` and refutes any stale claims
about it; ``name`` is for people and may change between runs.
"""

from __future__ import annotations

import secrets
import socket
import sqlite3

from msgspec import Struct

NODE_ID_BYTES = 16


class Identity(Struct, frozen=True):
    node_id: bytes
    incarnation: int
    name: str


def default_name() -> str:
    return socket.gethostname() or "engramp2p"


def ensure_identity(conn: sqlite3.Connection, name: str | None) -> Identity:
    """Load the identity row, creating it (with a fresh random node_id) on first open.

    A ``name`` given by config replaces the stored one; ``None`` keeps it (or the hostname at creation).
    The caller runs this in a transaction.
    """
    row = conn.execute("SELECT node_id, incarnation, name FROM identity WHERE id = 0").fetchone()
    if row is None:
        node_id = secrets.token_bytes(NODE_ID_BYTES)
        chosen = name or default_name()
        conn.execute(
            "INSERT INTO identity (id, node_id, incarnation, name) VALUES (0, ?, 0, ?)", (node_id, chosen)
        )
        return Identity(node_id, 0, chosen)
    node_id, incarnation, stored_name = bytes(row[0]), int(row[1]), str(row[2])
    if name is not None and name != stored_name:
        conn.execute("UPDATE identity SET name = ? WHERE id = 0", (name,))
        stored_name = name
    return Identity(node_id, incarnation, stored_name)


def load_incarnation(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT incarnation FROM identity WHERE id = 0").fetchone()[0])


def save_incarnation(conn: sqlite3.Connection, incarnation: int) -> None:
    """Persist a (higher) incarnation, e.g. after refuting a suspicion; never moves it backwards."""
    conn.execute("UPDATE identity SET incarnation = max(incarnation, ?) WHERE id = 0", (incarnation,))
