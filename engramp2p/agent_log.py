"""The agent's log: one line per event, UTC timestamp and level first, meant for people and for grep.

    2026-11-25T23:50:01Z [INFO] member joined: pi-kitchen (3fa2c1d0) 127.0.0.1:7947

Plain ``logging`` with one formatter (no rich: the agent must stay light on a device, and a log file
must not fill with escape codes). ``member_line`` turns a membership event into its level and text, so
the wording lives in one place and a test can pin it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

from engramp2p.swim.events import (
    IncarnationChanged,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberRecovered,
    MemberRefuted,
    MemberSuspected,
    MemberUpdated,
)
from engramp2p.swim.state import MemberView

LOGGER_NAME = "engramp2p"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_LEVEL_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN", logging.ERROR: "ERROR"}

# event type -> (level, verb, event name on the control socket)
_MEMBER_EVENTS: dict[type, tuple[int, str, str]] = {
    MemberJoined: (logging.INFO, "member joined", "member_joined"),
    MemberSuspected: (logging.WARNING, "member suspected", "member_suspected"),
    MemberRefuted: (logging.INFO, "member refuted suspicion", "member_refuted"),
    MemberFailed: (logging.WARNING, "member failed", "member_failed"),
    MemberLeft: (logging.INFO, "member left", "member_left"),
    MemberRecovered: (logging.INFO, "member recovered", "member_recovered"),
    MemberUpdated: (logging.INFO, "member updated", "member_updated"),
    MemberReaped: (logging.INFO, "member reaped", "member_reaped"),
}


class LineFormatter(logging.Formatter):
    """``<ISO-8601 UTC>Z [LEVEL] message``; a traceback, if any, follows on its own lines."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        level = _LEVEL_NAMES.get(record.levelno, record.levelname)
        line = f"{stamp} [{level}] {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(level: str = "info", stream: IO[str] | None = None) -> logging.Logger:
    """Send every ``engramp2p.*`` logger to ``stream`` (stderr) at ``level``; idempotent."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(LEVELS[level])
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(LineFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    return logger


def describe_member(m: MemberView) -> str:
    """``name (node_id hex8) host:port``: enough to tell members apart at a glance."""
    return f"{m.name} ({m.node_id.hex()[:8]}) {m.addr[0]}:{m.addr[1]}"


def event_name(event: Any) -> str | None:
    """The control-socket name of a membership event (``member_joined``...), or None for others."""
    entry = _MEMBER_EVENTS.get(type(event))
    return entry[2] if entry else None


def member_line(event: Any) -> tuple[int, str] | None:
    """Level and text of a membership event's log line; None for events that are not about members."""
    if isinstance(event, IncarnationChanged):
        return logging.DEBUG, f"own incarnation is now {event.incarnation}"
    entry = _MEMBER_EVENTS.get(type(event))
    if entry is None:
        return None
    level, verb, _ = entry
    m: MemberView = event.member
    return level, f"{verb}: {describe_member(m)} incarnation {m.incarnation}"
