"""Where the agent's cluster keys come from, and the keyring file that keeps rotations across restarts.

The keyring file (``keyring.key`` in the data directory unless ``keyring.key_file`` says otherwise) is
one base64 key per line, primary first, mode 0600. Rules, in order:

1. The file exists: it is the truth, because it holds what ``engramp2p keys`` rotations left behind
   (Serf treats its keyring file the same way). Keys from the config or ``--key`` that it lacks are
   installed too, but do not become primary -- a restart must not undo a rotation the cluster did.
2. No file, keys configured: use them and write the file, so later rotations have somewhere to live.
3. No file, no keys: security by default (DESIGN §11) -- generate a key, write the file, and tell the
   operator how other peers join with it.

Every write goes to a temporary file created 0600 and is renamed over the old one, so a crash leaves
either the old keyring or the new one, never half of one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engramp2p.config import Config
from engramp2p.net.keymsgs import KEY_LEN, MAX_KEYS
from engramp2p.net.seal import generate_key

KEY_FILE = "keyring.key"
MAX_KEY_FILE_BYTES = 64 * 1024


class KeyFileError(Exception):
    """The keyring file cannot be read or written; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class KeyringPlan:
    keys: list[bytes]  # primary first
    source: Literal["file", "config", "generated"]
    path: Path
    ignored_primary: bool = False  # a configured primary that the file's primary outranks


def key_file_path(cfg: Config) -> Path:
    if cfg.keyring.key_file:
        return Path(cfg.keyring.key_file).expanduser()
    return cfg.node.data_path() / KEY_FILE


def read_key_file(path: Path) -> list[bytes]:
    """Keys in ``path``, primary first; blank lines and ``#`` comments are skipped."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path}: larger than {MAX_KEY_FILE_BYTES} bytes, not a keyring file")
    keys: list[bytes] = []
    for number, raw in enumerate(data.decode("ascii", errors="replace").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError(f"{path}: line {number}: not valid base64") from None
        if len(key) != KEY_LEN:
            raise KeyFileError(f"{path}: line {number}: key must be {KEY_LEN} bytes, got {len(key)}")
        if key not in keys:
            keys.append(key)
    if not keys:
        raise KeyFileError(f"{path}: holds no key")
    if len(keys) > MAX_KEYS:
        raise KeyFileError(f"{path}: holds {len(keys)} keys, at most {MAX_KEYS} are allowed")
    return keys


def write_key_file(path: Path, keys: list[bytes]) -> None:
    """Atomically replace ``path`` with ``keys`` (primary first), mode 0600."""
    text = "".join(base64.b64encode(k).decode("ascii") + "\n" for k in keys)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # a leftover from a crash keeps its old mode; O_EXCL below creates it afresh, 0600
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise KeyFileError(f"{path}: cannot write: {exc.strerror or exc}") from None


def plan_keyring(cfg: Config) -> KeyringPlan:
    """Decide the keys to start with (see the module docstring); creates the file when it is missing."""
    path = key_file_path(cfg)
    configured = cfg.keyring.key_bytes()
    if path.exists():
        keys = read_key_file(path)
        extra = [k for k in configured if k not in keys]
        ignored = bool(configured) and configured[0] != keys[0]
        if extra:
            keys = (keys + extra)[:MAX_KEYS]
            write_key_file(path, keys)
        return KeyringPlan(keys, "file", path, ignored_primary=ignored)
    if configured:
        write_key_file(path, configured)
        return KeyringPlan(list(configured), "config", path)
    keys = [generate_key()]
    write_key_file(path, keys)
    return KeyringPlan(keys, "generated", path)
