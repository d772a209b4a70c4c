"""Memory and association commands: ``remember``, ``associate``, ``dissociate``, ``retract``, ``forget``,
``get``, ``edges``.

Writes go to the local agent, which appends them durably (or forwards them to a host of the shard) and
answers once ``--ack`` hosts hold them; what these commands print has therefore already survived a crash
of that many hosts. ``remember --file F.jsonl`` streams a file of one memory per line in requests of a
few hundred (``api.client.BATCH``) with a progress bar on stderr; the file is read lazily, so a bad line
stops the run with its line number after the lines before it were written (the message says how many).

Exit codes: 2 for bad usage or unreadable input (a malformed vector or line), 1 for a request the agent
refused or could not complete; the message is always one line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engramp2p.commands.members import add_target, table, with_client

if TYPE_CHECKING:
    from engramp2p.api.messages import EdgeRow, MemoryRecord
    from engramp2p.crdt.entry import Dot

ACK_LEVELS = ("one", "quorum", "all")
WRITE_TIMEOUT = 60.0


def _unit(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {x}")
    return x


def _hex_id(text: str) -> str:
    """A memory id on the command line: 32 hex characters (checked here so a typo is exit 2)."""
    t = text.strip()
    if len(t) != 32:
        raise argparse.ArgumentTypeError(f"must be 32 hex characters, got {len(t)}")
    try:
        bytes.fromhex(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hexadecimal: {text!r}") from None
    return t.lower()


def _meta_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _space_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, metavar="NAME", help="the space")


def _ack_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ack", choices=ACK_LEVELS, help="hosts that must hold the write before it is acknowledged "
                   "(default: the agent's replication.ack)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "remember",
        help="store a memory (or a JSONL file of them)",
        description="Store one memory (CONTENT, --vector) or, with --file, one per line of a JSONL file: "
        '{"id"?, "content", "vector", "confidence"?, "meta"?}. Prints the new id (one memory) or a summary.',
    )
    add_target(p)
    _space_arg(p)
    p.add_argument("content", metavar="CONTENT", nargs="?", default=None, help="the memory's text")
    p.add_argument("--vector", metavar="JSON|FILE", help="embedding as a JSON list, or a .npy/.json file")
    p.add_argument("--confidence", type=_unit, default=1.0, help="confidence in (0, 1] (default 1)")
    p.add_argument("--meta", type=_meta_pair, action="append", default=[], metavar="K=V",
                   help="metadata entry (repeatable)")
    p.add_argument("--id", metavar="HEX", type=_hex_id, help="memory id, 32 hex characters (default: random)")
    p.add_argument("--file", metavar="F.jsonl", help="remember every line of this JSONL file")
    p.add_argument("--batch", type=int, default=None, metavar="N",
                   help="memories per request with --file (default 256)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar with --file")
    _ack_arg(p)
    p.set_defaults(func=_remember)

    p = subparsers.add_parser(
        "associate",
        help="set this agent's weight on the edge SRC -> DST",
        description="Write this agent's slot on SRC -> DST. The edge's value is the confidence-weighted "
        "mean of every writer's slot.",
    )
    add_target(p)
    _space_arg(p)
    p.add_argument("src", metavar="SRC", type=_hex_id, help="source memory id (hex)")
    p.add_argument("dst", metavar="DST", type=_hex_id, help="destination memory id (hex)")
    p.add_argument("--weight", type=_unit, required=True, help="weight in [0, 1]")
    p.add_argument("--confidence", type=_unit, default=1.0, help="confidence in (0, 1] (default 1)")
    _ack_arg(p)
    p.set_defaults(func=_associate)

    for name, what in (
        ("dissociate", "remove the edge SRC -> DST (every writer's slot this agent has seen; add-wins)"),
        ("retract", "withdraw only this agent's own slot on SRC -> DST"),
    ):
        p = subparsers.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        add_target(p)
        _space_arg(p)
        p.add_argument("src", metavar="SRC", type=_hex_id, help="source memory id (hex)")
        p.add_argument("dst", metavar="DST", type=_hex_id, help="destination memory id (hex)")
        _ack_arg(p)
        p.set_defaults(func=_edge_remove, op=name)

    p = subparsers.add_parser("forget", help="forget a memory", description="Remove memory ID (observed-remove).")
    add_target(p)
    _space_arg(p)
    p.add_argument("id", metavar="ID", type=_hex_id, help="memory id (hex)")
    _ack_arg(p)
    p.set_defaults(func=_forget)

    p = subparsers.add_parser(
        "get",
        help="show a memory",
        description="Memory ID from this agent's replica of its shard (an error if this agent does not "
        "host that shard).",
    )
    add_target(p)
    _space_arg(p)
    p.add_argument("id", metavar="ID", type=_hex_id, help="memory id (hex)")
    p.add_argument("--json", action="store_true", help="print JSON (with the whole vector)")
    p.set_defaults(func=_get)

    p = subparsers.add_parser(
        "edges",
        help="show a memory's out-edges",
        description="Visible out-edges of ID with their merged weight, confidence and live writers.",
    )
    add_target(p)
    _space_arg(p)
    p.add_argument("id", metavar="ID", type=_hex_id, help="memory id (hex)")
    p.add_argument("--json", action="store_true", help="print JSON rows")
    p.set_defaults(func=_edges)


# ---------------------------------------------------------------------------------------------------
# input


def usage(message: str) -> Exception:
    from engramp2p.cli import CliError

    return CliError(message, 2)


def parse_vector(text: str) -> Any:
    """``--vector``: a JSON list of numbers, or the path of a ``.npy`` (1-d) or ``.json`` file."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise usage(f"--vector: not valid JSON: {exc.msg}") from None
        return value
    path = Path(text).expanduser()
    if not path.is_file():
        raise usage(f"--vector: {text!r} is neither a JSON list nor a file")
    if path.suffix == ".npy":
        import numpy as np

        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise usage(f"--vector: cannot read {path}: {exc}") from None
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 1:
            raise usage(f"--vector: {path} holds an array of shape {arr.shape}, expected one vector")
        return arr
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise usage(f"--vector: cannot read {path} as JSON: {exc}") from None


def count_lines(path: Path) -> int:
    """Non-blank lines, for the progress bar's total (one cheap pass over the bytes)."""
    n = 0
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                n += 1
    return n


def jsonl_items(path: Path) -> Iterator[dict[str, Any]]:
    """Memories from a JSONL file, lazily; a malformed line is a usage error naming its line number."""
    import msgspec

    from engramp2p.api.client import ClientError, memory_item

    decoder = msgspec.json.Decoder()
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise usage(f"{path}:{lineno}: not valid JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise usage(f"{path}:{lineno}: expected a JSON object")
            try:
                memory_item(obj)  # check here, where the line number is known
            except ClientError as exc:
                raise usage(f"{path}:{lineno}: {exc}") from None
            yield obj


# ---------------------------------------------------------------------------------------------------
# writes


def _remember(args: argparse.Namespace) -> int:
    if args.file:
        if args.content is not None or args.vector is not None or args.id is not None or args.meta:
            raise usage("--file takes every memory from the file: no CONTENT, --vector, --id or --meta")
        return _remember_file(args)
    if args.vector is None:
        raise usage("--vector is required (or --file)")
    if args.confidence <= 0.0:
        raise usage("--confidence must be in (0, 1]")
    vector = parse_vector(args.vector)
    meta = dict(args.meta)
    mem_id = with_client(
        args,
        lambda c: c.remember(args.space, vector, args.content or "", id=args.id, confidence=args.confidence,
                             meta=meta, ack=args.ack),
        WRITE_TIMEOUT,
    )
    print(mem_id.hex())
    return 0


def _remember_file(args: argparse.Namespace) -> int:
    from engramp2p.api.client import BATCH

    path = Path(args.file).expanduser()
    if not path.is_file():
        raise usage(f"--file: no such file: {path}")
    batch = args.batch or BATCH
    if not 1 <= batch <= 4096:
        raise usage("--batch must be in 1..4096")
    total = count_lines(path)
    started = time.monotonic()
    done = 0
    progress, task = _progress(total, path.name, disabled=args.no_progress or not sys.stderr.isatty())

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress.update(task, advance=n)

    from engramp2p.cli import CliError

    try:
        if progress is not None:
            progress.start()
        with_client(
            args,
            lambda c: c.remember_batch(args.space, jsonl_items(path), ack=args.ack, batch=batch, progress=advance),
            WRITE_TIMEOUT,
        )
    except CliError as exc:
        if exc.code == 2 and done:  # a bad line after some requests went through: say what is stored
            raise CliError(f"{exc} ({done} memories from earlier lines were written)", 2) from None
        raise
    finally:
        if progress is not None:
            progress.stop()
    elapsed = max(time.monotonic() - started, 1e-9)
    print(f"Remembered {done} memories into {args.space} in {elapsed:.1f} s ({done / elapsed:,.0f}/s).")
    return 0


def _progress(total: int, label: str, *, disabled: bool) -> tuple[Any, Any]:
    """A rich progress bar on stderr (``None`` when stderr is not a terminal or it is turned off)."""
    if disabled:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[progress.percentage]{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = progress.add_task(label, total=total)
    return progress, task


def _dot_text(dot: Dot) -> str:
    return f"writer {dot.writer.hex()[:8]} seq {dot.seq}"


def _associate(args: argparse.Namespace) -> int:
    if args.confidence <= 0.0:
        raise usage("--confidence must be in (0, 1]")
    dot = with_client(
        args,
        lambda c: c.associate(args.space, args.src, args.dst, args.weight, args.confidence, ack=args.ack),
        WRITE_TIMEOUT,
    )
    print(f"{args.src} -> {args.dst}: weight {args.weight:g}, confidence {args.confidence:g} ({_dot_text(dot)})")
    return 0


def _edge_remove(args: argparse.Namespace) -> int:
    def op(c: Any) -> Dot:
        fn = c.dissociate if args.op == "dissociate" else c.retract
        return fn(args.space, args.src, args.dst, ack=args.ack)

    dot = with_client(args, op, WRITE_TIMEOUT)
    verb = "dissociated" if args.op == "dissociate" else "retracted"
    print(f"{args.src} -> {args.dst}: {verb} ({_dot_text(dot)})")
    return 0


def _forget(args: argparse.Namespace) -> int:
    dot = with_client(args, lambda c: c.forget(args.space, args.id, ack=args.ack), WRITE_TIMEOUT)
    print(f"{args.id}: forgotten ({_dot_text(dot)})")
    return 0


# ---------------------------------------------------------------------------------------------------
# reads


def memory_json(m: MemoryRecord) -> dict[str, Any]:
    import struct

    n = len(m.vector) // 4
    return {
        "id": m.id.hex(),
        "content": m.content,
        "vector": list(struct.unpack(f"<{n}f", m.vector)),
        "confidence": m.confidence,
        "meta": dict(m.meta),
    }


def edge_json(e: EdgeRow) -> dict[str, Any]:
    return {"dst": e.dst.hex(), "weight": e.weight, "confidence": e.confidence,
            "writers": [w.hex() for w in e.writers]}


def _get(args: argparse.Namespace) -> int:
    from engramp2p.cli import CliError

    m = with_client(args, lambda c: c.get(args.space, args.id))
    if m is None:
        raise CliError(f"no memory {args.id} in space {args.space} on this agent", 1)
    data = memory_json(m)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    vec = data["vector"]
    shown = ", ".join(f"{x:.4g}" for x in vec[:6]) + (", ..." if len(vec) > 6 else "")
    print(f"id = {data['id']}")
    print(f"content = {m.content}")
    print(f"confidence = {m.confidence:g}")
    print(f"vector = [{shown}] (dim {len(vec)})")
    if m.meta:
        print("meta:")
        for k, v in sorted(m.meta.items()):
            print(f"    {k} = {v}")
    return 0


def _edges(args: argparse.Namespace) -> int:
    rows = with_client(args, lambda c: c.edges(args.space, args.id))
    if args.json:
        print(json.dumps([edge_json(e) for e in rows], indent=2))
        return 0
    if not rows:
        print(f"No out-edges of {args.id}.")
        return 0
    body = [(e.dst.hex(), f"{e.weight:.4f}", f"{e.confidence:.4f}", ",".join(w.hex()[:8] for w in e.writers))
            for e in rows]
    print(table(("Dst", "Weight", "Confidence", "Writers"), body))
    return 0
