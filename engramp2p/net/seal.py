"""The cluster keyring: ChaCha20-Poly1305 sealing of every datagram and frame (DESIGN §4).

Sealed layout::

    MAGIC (2) | PROTOCOL_VERSION (1) | MODE (1) | nonce (12) | ciphertext | tag (16)

The header (magic, version, mode) and the cluster label are the AEAD's associated data, so a packet from
another protocol version or another cluster fails authentication even when it shares a key. Nonces are
random: safe to about 2**32 packets per key across the whole cluster, which is why keys rotate
(``install`` everywhere, then ``use``, then ``remove`` the old one). The primary key seals; every
installed key may open, primary first, so a rotation in progress never drops traffic.

ChaCha20-Poly1305 rather than AES-GCM: it is constant-time without AES hardware, which many edge ARM
boards lack. Cipher objects are built once per key (construction costs about a quarter of a seal).

Insecure mode writes the same header with ``MODE_PLAIN`` and no encryption; it exists only when asked
for explicitly, and a sealing keyring refuses its packets (and vice versa) with a clear error.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from engramp2p.net.wire import MAGIC, PROTOCOL_VERSION, WireError

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
MODE_PLAIN = 0
MODE_SEALED = 1
HEADER_LEN = len(MAGIC) + 2
# Bytes a sealed packet adds to its plaintext; the datagram budget ``packet_size`` counts sealed bytes.
SEAL_OVERHEAD = HEADER_LEN + NONCE_LEN + TAG_LEN
MAX_LABEL_BYTES = 255

_SEALED_HEADER = MAGIC + bytes([PROTOCOL_VERSION, MODE_SEALED])
_PLAIN_HEADER = MAGIC + bytes([PROTOCOL_VERSION, MODE_PLAIN])


class SealError(WireError):
    """A packet that cannot be opened: too short, wrong magic/version/mode, or no key authenticates it."""


class KeyringError(ValueError):
    """A local misuse of the keyring or a bad key given by the operator (not a network fault)."""


def generate_key() -> bytes:
    """A fresh random 32-byte cluster key."""
    return os.urandom(KEY_LEN)


def encode_key(key: bytes) -> str:
    """Standard base64, the form keys take in config files and on the command line."""
    _check_key(key)
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes:
    """Parse a base64 key, with an error that says what is wrong with it."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError("key is not valid base64") from None
    _check_key(key)
    return key


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray):
        raise KeyringError(f"key must be bytes, got {type(key).__name__}")
    if len(key) != KEY_LEN:
        raise KeyringError(f"key must be {KEY_LEN} bytes, got {len(key)}")


class Keyring:
    """Installed keys (primary first) with one cipher object each, bound to a cluster label."""

    def __init__(self, keys: Iterable[bytes], label: str = "", *, insecure: bool = False) -> None:
        self._label = _check_label(label)
        self._aad = _SEALED_HEADER + self._label
        self._insecure = False
        self._ring: list[tuple[bytes, ChaCha20Poly1305]] = []
        for key in keys:
            self.install(key)
        if insecure and self._ring:
            raise KeyringError("an insecure keyring cannot hold keys")
        if not insecure and not self._ring:
            raise KeyringError("a keyring needs at least one key (or Keyring.insecure())")
        self._insecure = insecure

    @classmethod
    def insecure(cls, label: str = "") -> Keyring:
        """A keyring that neither encrypts nor authenticates: only for an explicit ``insecure = true``."""
        return cls((), label, insecure=True)

    @property
    def is_insecure(self) -> bool:
        return self._insecure

    @property
    def label(self) -> str:
        return self._label.decode("utf-8")

    @property
    def primary(self) -> bytes | None:
        """The sealing key; ``None`` in insecure mode."""
        return self._ring[0][0] if self._ring else None

    def keys(self) -> list[bytes]:
        """Installed keys, primary first."""
        return [key for key, _ in self._ring]

    def install(self, key: bytes) -> None:
        """Add a key that may open packets; installing a key twice is a no-op."""
        self._refuse_if_insecure("install")
        _check_key(key)
        key = bytes(key)
        if any(k == key for k, _ in self._ring):
            return
        self._ring.append((key, ChaCha20Poly1305(key)))

    def use(self, key: bytes) -> None:
        """Make an installed key the primary, the one that seals from now on."""
        self._refuse_if_insecure("use")
        index = self._index(key)
        self._ring.insert(0, self._ring.pop(index))

    def remove(self, key: bytes) -> None:
        """Retire a key; the primary cannot be removed (``use`` another key first)."""
        self._refuse_if_insecure("remove")
        index = self._index(key)
        if index == 0:
            raise KeyringError("cannot remove the primary key; make another key primary first")
        del self._ring[index]

    def seal(self, plain: bytes) -> bytes:
        """Encrypt and authenticate ``plain`` under the primary key with a fresh random nonce."""
        if self._insecure:
            return _PLAIN_HEADER + plain
        nonce = os.urandom(NONCE_LEN)
        return _SEALED_HEADER + nonce + self._ring[0][1].encrypt(nonce, plain, self._aad)

    def open(self, sealed: bytes) -> bytes:
        """The plaintext of a packet sealed by any installed key, or ``SealError``."""
        if len(sealed) < HEADER_LEN:
            raise SealError(f"packet too short ({len(sealed)} bytes)")
        if sealed[: len(MAGIC)] != MAGIC:
            raise SealError("not an engramp2p packet (bad magic)")
        version, mode = sealed[len(MAGIC)], sealed[len(MAGIC) + 1]
        if version != PROTOCOL_VERSION:
            raise SealError(f"unsupported protocol version {version} (we speak {PROTOCOL_VERSION})")
        if self._insecure:
            if mode != MODE_PLAIN:
                raise SealError("encrypted packet, but this node runs insecure (no keys)")
            return bytes(sealed[HEADER_LEN:])
        if mode != MODE_SEALED:
            raise SealError("plaintext packet refused: this cluster requires encryption")
        if len(sealed) < SEAL_OVERHEAD:
            raise SealError(f"sealed packet too short ({len(sealed)} bytes)")
        nonce = bytes(sealed[HEADER_LEN : HEADER_LEN + NONCE_LEN])
        body = bytes(sealed[HEADER_LEN + NONCE_LEN :])
        for _, cipher in self._ring:
            try:
                return cipher.decrypt(nonce, body, self._aad)
            except InvalidTag:
                continue
        raise SealError("no installed key authenticates this packet (wrong key or cluster label)")

    def _index(self, key: bytes) -> int:
        _check_key(key)
        for i, (k, _) in enumerate(self._ring):
            if k == key:
                return i
        raise KeyringError("key is not installed")

    def _refuse_if_insecure(self, op: str) -> None:
        if self._insecure:
            raise KeyringError(f"cannot {op} keys: this keyring is insecure (no encryption)")


def _check_label(label: str) -> bytes:
    data = label.encode("utf-8")
    if len(data) > MAX_LABEL_BYTES:
        raise KeyringError(f"cluster label must be at most {MAX_LABEL_BYTES} bytes UTF-8, got {len(data)}")
    return data
