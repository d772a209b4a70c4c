"""Cluster key commands.

``keygen`` is offline: it prints a fresh base64 key (Serf's ``keygen``), to pass as ``--key`` or put in
the keyring file. The online rotation commands -- ``keys install|use|remove|list``, which speak to the
running agent over the control socket (``engramp2p.api.messages.KeysInstall`` etc.) -- belong in this
module too and are registered by ``register`` next to ``keygen`` once the agent and client exist.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "keygen",
        help="print a new random cluster key (base64)",
        description="Print a new random 32-byte ChaCha20-Poly1305 cluster key, base64-encoded.",
    )
    parser.set_defaults(func=_keygen)
    _register_rotation(subparsers)


def _keygen(args: argparse.Namespace) -> int:
    from engramp2p.net.seal import encode_key, generate_key

    print(encode_key(generate_key()))
    return 0


# ---------------------------------------------------------------------------------------------------
# keys install|use|remove|list: online rotation through the running agent, spread to every member


def _register_rotation(subparsers: Any) -> None:
    from engramp2p.commands.members import add_target

    parser = subparsers.add_parser(
        "keys",
        help="rotate the cluster keys on every member (install, use, remove, list)",
        description="Change the keyring of every alive member through the local agent, which applies the "
        "operation itself and sends it over sealed TCP to each member. Rotate with install (everywhere), "
        "then use, then remove the old key. Removing a primary key is refused.",
    )
    ops = parser.add_subparsers(dest="keys_op", metavar="OP", required=True)
    for op, text in (
        ("install", "add KEY to every keyring (it may open traffic; it does not seal yet)"),
        ("use", "make KEY the primary (sealing) key everywhere; install it first"),
        ("remove", "remove KEY from every keyring; refused where it is the primary"),
    ):
        p = ops.add_parser(op, help=text, description=text)
        add_target(p)
        p.add_argument("key", metavar="KEY", help="base64 32-byte key (engramp2p keygen)")
        p.set_defaults(func=_keys_op, op=op)
    p = ops.add_parser("list", help="list the keys installed on every member", description="Keys installed "
                       "on every alive member, with how many members have each and where it is primary.")
    add_target(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_keys_list)


def _keys_op(args: argparse.Namespace) -> int:
    from engramp2p.cli import CliError
    from engramp2p.commands.members import with_client
    from engramp2p.net.seal import KeyringError, decode_key

    try:
        key = decode_key(args.key)
    except KeyringError as exc:
        raise CliError(f"KEY: {exc}", 2) from None
    call = {"install": "keys_install", "use": "keys_use", "remove": "keys_remove"}[args.op]
    result = with_client(args, lambda c: _call(c, call, key), timeout=60.0)
    failed = [m for m in result.members if not m.ok]
    print(f"==> {args.op} {_fp(key)} on {len(result.members)} member(s)")
    for m in result.members:
        print(f"    {m.name} ({m.addr}): " + ("ok" if m.ok else f"error: {m.error}"))
    print(f"{len(result.members) - len(failed)}/{len(result.members)} members succeeded")
    if failed:
        raise CliError(f"{args.op} failed on {len(failed)} member(s)", 1)
    return 0


def _call(client: Any, name: str, key: bytes) -> Any:
    from engramp2p.api.client import ClientError
    from engramp2p.api.messages import KeyResults, KeysInstall, KeysRemove, KeysUse

    req = {"keys_install": KeysInstall, "keys_use": KeysUse, "keys_remove": KeysRemove}[name](key=key)
    result = client.call(req)
    if not isinstance(result, KeyResults):
        raise ClientError(f"agent answered with {type(result).__name__}, expected KeyResults")
    return result


def _keys_list(args: argparse.Namespace) -> int:
    import json

    from engramp2p.commands.members import with_client
    from engramp2p.net.seal import encode_key

    result = with_client(args, lambda c: c.keys_list(), timeout=60.0)
    holders: dict[bytes, list[str]] = {k: ["local"] for k in result.keys}
    primaries: dict[bytes, int] = {result.primary: 1} if result.primary else {}
    failed = []
    for m in result.members:
        if not m.ok:
            failed.append(m)
            continue
        for k in m.keys:
            holders.setdefault(k, []).append(m.name)
        if m.keys:
            primaries[m.keys[0]] = primaries.get(m.keys[0], 0) + 1
    total = 1 + len(result.members) - len(failed)
    if args.json:
        rows = [
            {"key": encode_key(k), "fingerprint": _fp(k), "installed": len(v), "primary": primaries.get(k, 0),
             "members": total}
            for k, v in holders.items()
        ]
        print(json.dumps({"keys": rows, "unreachable": [m.name for m in failed]}, indent=2))
        return 0
    print(f"Keys gathered from {total} member(s):")
    for k, v in holders.items():
        note = f", primary on {primaries[k]}" if k in primaries else ""
        print(f"    {encode_key(k)}  [{len(v)}/{total}{note}]")
    for m in failed:
        print(f"    (no answer from {m.name} ({m.addr}): {m.error})")
    return 0


def _fp(key: bytes) -> str:
    from engramp2p.config import key_fingerprint
    from engramp2p.net.seal import encode_key

    return key_fingerprint(encode_key(key))
