"""Cluster key rotation: the sans-IO core that applies ``KeyOp`` messages to our keyring.

``engramp2p keys install|use|remove|list`` runs on one agent, which applies the operation locally and
then sends a ``KeyOp`` over sealed TCP to every alive member (Serf's ``keys`` does the same with a
query). Each member answers with a ``KeyOpReply``, so the operator sees a per-member result and knows
which peers still need the step before the next one (install everywhere, then use, then remove).

Anyone holding a cluster key may rotate keys: the seal is the authentication, as in Serf. Removing the
primary key is refused everywhere, so a rotation cannot strand a member without a sealing key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engramp2p.net.keymsgs import KEY_LEN, MAX_KEYS, KeyOp, KeyOpReply
from engramp2p.net.seal import Keyring, KeyringError
from engramp2p.sansio import Action, Addr, Emit


@dataclass(frozen=True, slots=True)
class KeyringChanged:
    """Emitted after a successful install/use/remove: the node persists the keyring file."""

    op: str
    key: bytes


def apply_key_op(keyring: Keyring, op: str, key: bytes) -> KeyOpReply:
    """Apply one operation to ``keyring``; a refusal is a reply, never an exception."""
    try:
        if op == "list":
            pass
        elif len(key) != KEY_LEN:
            return KeyOpReply(False, f"key must be {KEY_LEN} bytes, got {len(key)}")
        elif op == "install":
            installed = keyring.keys()
            if key not in installed and len(installed) >= MAX_KEYS:
                return KeyOpReply(False, f"keyring is full ({MAX_KEYS} keys); remove one first")
            keyring.install(key)
        elif op == "use":
            keyring.use(key)
        elif op == "remove":
            keyring.remove(key)
        else:
            return KeyOpReply(False, f"unknown key operation {op!r}")
    except KeyringError as exc:
        return KeyOpReply(False, str(exc))
    return KeyOpReply(True, "", keyring.keys())


class KeyCore:
    """Answers ``KeyOp`` stream requests from peers; routed next to SWIM by ``net.drive.Router``.

    It has no timers and sends nothing by itself: the fan-out to members is the node's job (it needs
    every reply, so it awaits ``transport.request`` directly rather than going through a core).
    """

    message_types: tuple[type, ...] = (KeyOp, KeyOpReply)

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.counters: dict[str, int] = {"key_ops_in": 0, "key_ops_refused": 0, "key_msgs_unexpected": 0}

    def handle_packet(self, now: float, src: Addr, msgs: Sequence[Any]) -> list[Action]:
        # Key operations only travel over streams; a datagram carrying one is a confused or hostile peer.
        self.counters["key_msgs_unexpected"] += len(msgs)
        return []

    def handle_stream_request(self, now: float, src: Addr, msg: Any) -> tuple[Any | None, list[Action]]:
        if not isinstance(msg, KeyOp):
            self.counters["key_msgs_unexpected"] += 1
            return None, []
        self.counters["key_ops_in"] += 1
        reply = apply_key_op(self.keyring, msg.op, msg.key)
        if not reply.ok:
            self.counters["key_ops_refused"] += 1
            return reply, []
        if msg.op == "list":
            return reply, []
        return reply, [Emit(KeyringChanged(msg.op, msg.key))]

    def handle_stream_reply(self, now: float, token: int, reply: Any | None) -> list[Action]:
        return []

    def tick(self, now: float) -> list[Action]:
        return []

    def next_deadline(self) -> float | None:
        return None
