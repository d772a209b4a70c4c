"""The daemon's configuration: TOML in, frozen msgspec Structs out, every knob bounded.

Why so strict: a config is read once, at start, by a daemon that then runs unattended on a device. A
typo that silently falls back to a default (``probe_intervall = 5``) or a unit slip (``deadline_ms =
0.5``) is found weeks later as a flapping cluster, so unknown keys, wrong types and out-of-range values
are refused at load time with ONE line that names the file, the dotted key path and the rule::

    config/bad.toml: swim.probe_interval: must be > 0 (got -1)
    x.toml: net.colour: unknown key

msgspec does the structural checks (types, ranges from ``Meta``); its error is translated by looking up
the failing key's declared type, so the rule text comes from the schema itself rather than from parsing
msgspec's wording. Rules msgspec cannot express (addresses, base64 keys, cross-field relations such as
``probe_timeout < probe_interval``) run after conversion, in :func:`_problems`.

Units: the ``swim`` section is in seconds (floats, as memberlist and
:class:`~engramp2p.swim.config.SwimConfig` are); elsewhere a millisecond knob ends in ``_ms`` and a bare
duration (``sync_interval``, ``rebalance_delay``) is in seconds. Nothing here touches the network; the
only environment read is the host name, the default ``node.name``.
"""

import base64
import binascii
import difflib
import hashlib
import ipaddress
import json
import math
import re
import socket
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from engramp2p.swim.config import Profile, SwimConfig

__all__ = [
    "Config",
    "ConfigError",
    "IndexSection",
    "KeyringSection",
    "NetSection",
    "NodeSection",
    "ReplicationSection",
    "SpreadSection",
    "StorageSection",
    "SwimSection",
    "UiSection",
    "decode_key",
    "effective",
    "load_config",
    "parse_config",
    "parse_host_port",
    "render_toml",
]

DEFAULT_PORT = 7946
MAX_CONFIG_BYTES = 1 << 20  # a config bigger than this is a mistake, not a config
KEY_LEN = 32
KiB = 1024
MiB = 1024 * 1024
DAY = 86_400.0

# ---------------------------------------------------------------------------------------------------
# Errors


class ConfigError(Exception):
    """A config that cannot be used; ``str()`` is the one line shown to the operator.

    ``source`` is the file (or ``"command line"``), ``path`` the dotted key (or a TOML line position),
    ``rule`` what was expected. Any part may be empty and is then left out.
    """

    def __init__(self, source: str, path: str, rule: str) -> None:
        self.source = source
        self.path = path
        self.rule = rule
        super().__init__(": ".join(p for p in (source, path, rule) if p).replace("\n", " "))


# ---------------------------------------------------------------------------------------------------
# Bounded field types. ``description`` is what the error says a value "must be" when a pattern fails.

NodeName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="letters, digits, '.', '_' and '-', starting with a letter or digit",
    ),
]
Role = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=32,
        pattern=r"^[a-z][a-z0-9_-]*$",
        description="a role name: lowercase letters, digits, '_' and '-'",
    ),
]
SpaceGlob = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9_*?\[\]!-]+$",
        description="a space-name glob: [a-z0-9_-] with * ? [...]",
    ),
]
PathText = Annotated[str, Meta(min_length=1, max_length=4096)]
OptPathText = Annotated[str, Meta(max_length=4096)]
HostPort = Annotated[str, Meta(min_length=1, max_length=262)]
IpText = Annotated[str, Meta(min_length=1, max_length=64)]
OptIpText = Annotated[str, Meta(max_length=64)]
KeyText = Annotated[str, Meta(min_length=1, max_length=128)]
Label = Annotated[
    str,
    Meta(
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="letters, digits, '.', '_' and '-'",
    ),
]
PortNum = Annotated[int, Meta(ge=0, le=65535)]


def _default_name() -> str:
    """The host name, squeezed into :data:`NodeName` so the default config is always valid."""
    raw = socket.gethostname().split(".")[0]
    name = re.sub(r"[^A-Za-z0-9._-]", "-", raw).lstrip("._-")[:128]
    return name or "engramp2p"


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Common base: frozen (configs are shared across tasks), keyword-only, unknown keys rejected."""


# ---------------------------------------------------------------------------------------------------
# Sections


class NodeSection(_Section):
    """Who this peer is for people (the node id lives in the data directory, DESIGN §3)."""

    name: NodeName = msgspec.field(default_factory=_default_name)
    # SQLite database, node identity and control socket. Relative paths are relative to the agent's
    # working directory; "~" is expanded.
    data_dir: PathText = "~/.local/share/engramp2p"
    # "storage" makes this peer eligible to host shards (DESIGN §7); other roles are free-form tags
    # carried in member metadata.
    roles: Annotated[tuple[Role, ...], Meta(max_length=16)] = ("storage",)
    # Which spaces this peer may host, as fnmatch globs over space names.
    spaces: Annotated[tuple[SpaceGlob, ...], Meta(min_length=1, max_length=256)] = ("*",)
    # Peers to contact on start and while no other member is alive: "host" or "host:port".
    seeds: Annotated[tuple[HostPort, ...], Meta(max_length=64)] = ()

    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    def seed_addrs(self) -> list[tuple[str, int]]:
        """Seeds as ``(host, port)``; a seed without a port uses the default port 7946."""
        return [parse_host_port(s, DEFAULT_PORT) for s in self.seeds]


class NetSection(_Section):
    """One UDP+TCP port, sealed traffic (DESIGN §4)."""

    bind: IpText = "0.0.0.0"
    # Address other peers should use to reach us; "" derives it from the bound socket at start.
    advertise: OptIpText = ""
    # 0 asks the OS for a free port (tests); the chosen port is then advertised.
    port: PortNum = DEFAULT_PORT
    # Largest sealed UDP datagram. 1400 fits a 1500-byte Ethernet MTU with IP/UDP headers.
    packet_size: Annotated[int, Meta(ge=512, le=65000)] = 1400
    # Largest sealed TCP frame; checked before any allocation.
    max_frame: Annotated[int, Meta(ge=64 * KiB, le=64 * MiB)] = 8 * MiB
    # Cluster label, bound into the AEAD associated data: clusters with different labels ignore
    # each other even when they share a key.
    label: Label = ""
    # Plaintext traffic. Only for a closed lab network; never with keys configured.
    insecure: bool = False


class KeyringSection(_Section):
    """Cluster keys: the first seals, every key opens (so keys can be rotated without downtime)."""

    # File holding the keyring; "" means the agent's default inside data_dir.
    key_file: OptPathText = ""
    # Base64 32-byte ChaCha20-Poly1305 keys, primary first (`engramp2p keygen` makes one).
    keys: Annotated[tuple[KeyText, ...], Meta(max_length=16)] = ()

    def key_bytes(self) -> list[bytes]:
        return [decode_key(k) for k in self.keys]


Seconds = Annotated[float, Meta(gt=0, le=DAY)]


class SwimSection(_Section):
    """A memberlist profile plus per-knob overrides; ``None`` means "the profile's value".

    Each knob mirrors a field of :class:`SwimConfig` (seconds for durations); a test pins that the two
    stay in step. :meth:`resolve` gives the SwimConfig the membership layer runs with.
    """

    profile: Profile = "lan"
    probe_interval: Annotated[float, Meta(gt=0, le=60)] | None = None
    probe_timeout: Annotated[float, Meta(gt=0, le=60)] | None = None
    indirect_checks: Annotated[int, Meta(ge=0, le=16)] | None = None
    retransmit_mult: Annotated[int, Meta(ge=1, le=16)] | None = None
    suspicion_mult: Annotated[int, Meta(ge=1, le=32)] | None = None
    suspicion_max_timeout_mult: Annotated[int, Meta(ge=1, le=100)] | None = None
    awareness_max_multiplier: Annotated[int, Meta(ge=1, le=64)] | None = None
    push_pull_interval: Annotated[float, Meta(gt=0, le=DAY)] | None = None
    gossip_interval: Annotated[float, Meta(gt=0, le=60)] | None = None
    gossip_nodes: Annotated[int, Meta(ge=1, le=32)] | None = None
    gossip_to_the_dead_time: Annotated[float, Meta(ge=0, le=DAY)] | None = None
    tcp_timeout: Annotated[float, Meta(gt=0, le=600)] | None = None
    reconnect_interval: Seconds | None = None
    reconnect_timeout: Annotated[float, Meta(ge=0, le=30 * DAY)] | None = None
    left_reap_timeout: Annotated[float, Meta(ge=0, le=30 * DAY)] | None = None
    seed_retry_min: Annotated[float, Meta(gt=0, le=3600)] | None = None
    seed_retry_max: Seconds | None = None
    max_incarnation_jump: Annotated[int, Meta(ge=1, le=2**32)] | None = None
    leave_propagate_delay: Annotated[float, Meta(ge=0, le=60)] | None = None
    fast_confirm: bool | None = None

    def overrides(self) -> dict[str, Any]:
        """The knobs set explicitly in this section."""
        return {
            f: getattr(self, f)
            for f in self.__struct_fields__
            if f != "profile" and getattr(self, f) is not None
        }

    def resolve(self) -> SwimConfig:
        """Profile defaults with this section's overrides applied."""
        return msgspec.structs.replace(SwimConfig.profile(self.profile), **self.overrides())


class StorageSection(_Section):
    """SQLite persistence (DESIGN §8)."""

    # "full" survives power loss; "normal" (WAL) survives a process crash but not a power cut.
    # Edge devices lose power, so the safe choice is the default; group commit pays for it.
    synchronous: Literal["normal", "full"] = "full"
    # How long an append may wait for others to share its commit (0 = commit each append).
    group_commit_ms: Annotated[int, Meta(ge=0, le=1000)] = 2
    # Most appends in one group commit.
    group_commit_max: Annotated[int, Meta(ge=1, le=65536)] = 512
    # SQLite page cache, MiB.
    cache_mb: Annotated[int, Meta(ge=1, le=65536)] = 32
    # Memory-mapped I/O window, MiB (0 = off; helps large read-mostly shards).
    mmap_mb: Annotated[int, Meta(ge=0, le=1 << 20)] = 0
    # WAL pages before an automatic checkpoint.
    wal_autocheckpoint: Annotated[int, Meta(ge=0, le=1 << 24)] = 1000
    # How long a writer waits on a locked database before failing.
    busy_timeout_ms: Annotated[int, Meta(ge=0, le=600_000)] = 5000


class ReplicationSection(_Section):
    """Placement, push and anti-entropy (DESIGN §7)."""

    # Seconds between periodic anti-entropy rounds per shard (also run at once on recovery).
    sync_interval: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    # Seconds a member must be dead (not merely suspect) before it leaves placement.
    rebalance_delay: Annotated[float, Meta(ge=0, le=7 * DAY)] = 60.0
    # How many hosts must hold a write before the client is acknowledged.
    ack: Literal["one", "quorum", "all"] = "one"
    # How long a write waits for its acks.
    ack_timeout_ms: Annotated[int, Meta(ge=1, le=600_000)] = 5000
    # Bytes of entries per sync response; a response always carries at least one entry, so this
    # must leave room in a frame (at most half of net.max_frame).
    sync_budget_bytes: Annotated[int, Meta(ge=4 * KiB, le=32 * MiB)] = 512 * KiB
    # Early (out-of-order) entries held per shard while a gap fills.
    reorder_buffer: Annotated[int, Meta(ge=0, le=1_000_000)] = 4096
    # How long eager pushes wait to batch with later writes.
    push_batch_ms: Annotated[int, Meta(ge=0, le=1000)] = 5
    # A remote HLC further ahead than this does not advance our clock (DESIGN §3).
    max_clock_offset_ms: Annotated[int, Meta(ge=1, le=86_400_000)] = 60_000
    # Enables the daemon's partition/drop hooks used by system tests. Never in production.
    fault_injection: bool = False


class IndexSection(_Section):
    """Per-shard vector index (DESIGN §9)."""

    # Shards with at least this many vectors get a pynndescent index; smaller ones stay exact.
    ann_threshold: Annotated[int, Meta(ge=1000, le=100_000_000)] = 20_000
    # Rebuild the ANN index when the exact tail passes this many rows...
    tail_rebuild_rows: Annotated[int, Meta(ge=1, le=10_000_000)] = 4000
    # ...or this fraction of the shard.
    tail_rebuild_fraction: Annotated[float, Meta(gt=0, le=1)] = 0.05
    # pynndescent's default collapses recall on clustered data to ~0.6; >= 8 fixes it (reference/index.md).
    search_tree_leaf_budget: Annotated[int, Meta(ge=8, le=4096)] = 16
    n_neighbors: Annotated[int, Meta(ge=2, le=256)] = 30
    # pynndescent's query epsilon: wider search, better recall, slower queries.
    query_epsilon: Annotated[float, Meta(ge=0, le=1)] = 0.1
    # Pinned with random_state so hosts build identical graphs.
    n_jobs: Annotated[int, Meta(ge=1, le=256)] = 1
    random_state: Annotated[int, Meta(ge=0, le=2**32 - 1)] = 42


class SpreadSection(_Section):
    """Spreading activation (DESIGN §10; defaults follow Engram)."""

    max_depth: Annotated[int, Meta(ge=1, le=32)] = 4
    # D(d) = exp(-decay_rate * d)
    decay_rate: Annotated[float, Meta(gt=0, le=10)] = 0.7
    # Contributions below this are dropped.
    threshold: Annotated[float, Meta(gt=0, lt=1)] = 0.01
    # Multiplier for a revisit beyond the visit budget.
    cycle_penalty: Annotated[float, Meta(gt=0, le=1)] = 0.93
    visit_budget: Annotated[int, Meta(ge=1, le=64)] = 3
    # A node that fired in a query less than this ago (by HLC) does not fire again: stops echo loops.
    refractory_ms: Annotated[int, Meta(ge=0, le=60_000)] = 100
    # The coordinator returns partial results at this deadline.
    deadline_ms: Annotated[int, Meta(ge=1, le=600_000)] = 2000


class UiSection(_Section):
    """The `engramp2p top` dashboard."""

    refresh_hz: Annotated[int, Meta(ge=1, le=10)] = 4


class Config(_Section):
    """The whole configuration. An empty file is a valid config: every section has defaults."""

    node: NodeSection = msgspec.field(default_factory=NodeSection)
    net: NetSection = msgspec.field(default_factory=NetSection)
    keyring: KeyringSection = msgspec.field(default_factory=KeyringSection)
    swim: SwimSection = msgspec.field(default_factory=SwimSection)
    storage: StorageSection = msgspec.field(default_factory=StorageSection)
    replication: ReplicationSection = msgspec.field(default_factory=ReplicationSection)
    index: IndexSection = msgspec.field(default_factory=IndexSection)
    spread: SpreadSection = msgspec.field(default_factory=SpreadSection)
    ui: UiSection = msgspec.field(default_factory=UiSection)

    @classmethod
    def default(cls) -> "Config":
        return cls()

    def with_overrides(self, overrides: Mapping[str, object], source: str = "command line") -> "Config":
        """A copy with dotted keys replaced (``{"net.port": 7947}``), validated like a file.

        The copy goes back through the same conversion and rules as a loaded file, so a bad value
        from a flag is reported exactly like one from TOML (with ``source`` as the file name).
        """
        raw: dict[str, Any] = msgspec.to_builtins(self)
        for dotted, value in overrides.items():
            *parents, leaf = dotted.split(".")
            table: Any = raw
            for i, part in enumerate(parents):
                table = table.setdefault(part, {}) if isinstance(table, dict) else None
                if not isinstance(table, dict):
                    parent = ".".join(parents[: i + 1])
                    raise ConfigError(source, dotted, f"unknown key ({parent} is not a table)")
            table[leaf] = list(value) if isinstance(value, tuple) else value
        return _from_raw(raw, source)

    def with_flags(
        self,
        *,
        name: str | None = None,
        bind: str | None = None,
        advertise: str | None = None,
        join: Sequence[str] | None = None,
        data_dir: str | None = None,
        profile: str | None = None,
        key: str | None = None,
        source: str = "command line",
    ) -> "Config":
        """Apply the agent's flags; ``None`` leaves a setting alone.

        ``bind`` may be ``ip`` or ``ip:port`` (Serf's form); ``join`` replaces the seed list; ``key``
        becomes the primary key while the configured keys stay installed, so a node started with a
        new key can still open traffic sealed with the old ones.
        """
        dotted: dict[str, object] = {}
        if name is not None:
            dotted["node.name"] = name
        if data_dir is not None:
            dotted["node.data_dir"] = data_dir
        if join is not None:
            dotted["node.seeds"] = list(join)
        if bind is not None:
            host, sep, port = _split_host_port(bind)
            dotted["net.bind"] = host
            if sep:
                dotted["net.port"] = int(port) if port.isascii() and port.isdigit() else port
        if advertise is not None:
            dotted["net.advertise"] = advertise
        if profile is not None:
            dotted["swim.profile"] = profile
        if key is not None:
            dotted["keyring.keys"] = [key, *(k for k in self.keyring.keys if k != key)]
        return self.with_overrides(dotted, source)


# ---------------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML file; every failure is a :class:`ConfigError` naming ``path``."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(source, "", f"file is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, f"byte {exc.start}", "not UTF-8 text") from None
    return parse_config(text, source)


_TOML_POS = re.compile(
    r"^(?P<msg>.*) \(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)$", re.S
)


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse TOML text into a validated :class:`Config`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_POS.match(str(exc))
        if m is None:
            raise ConfigError(source, "", f"invalid TOML: {exc}") from None
        if m["line"]:
            where = f"line {m['line']}, column {m['col']}"
        else:
            where = f"line {text.count(chr(10)) + (0 if text.endswith(chr(10)) else 1)} (end of file)"
        raise ConfigError(source, where, f"invalid TOML: {m['msg']}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(source, "", "invalid TOML: arrays or tables nested too deeply") from None
    return _from_raw(raw, source)


def _from_raw(raw: dict[str, Any], source: str) -> Config:
    try:
        cfg = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        path, rule = _translate(str(exc), raw)
        raise ConfigError(source, path, rule) from None
    problem = next(_problems(cfg), None)
    if problem is not None:
        raise ConfigError(source, *problem)
    return cfg


# ---------------------------------------------------------------------------------------------------
# Translating msgspec's errors into "key.path: rule (got value)"

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>.*)`$", re.S)
_MISSING = object()


@cache
def _schema() -> msgspec.inspect.Type:
    return msgspec.inspect.type_info(Config)


def _translate(message: str, raw: Any) -> tuple[str, str]:
    """Turn a msgspec ValidationError message into ``(dotted path, rule)``."""
    m = _AT.match(message)
    assert m is not None  # the pattern matches any string
    segments: list[str | int] = [
        name if name else int(index) for name, index in _SEGMENT.findall(m["path"] or "")
    ]
    msg = m["msg"]
    unknown = _UNKNOWN.match(msg)
    if unknown:
        key = unknown["key"]
        hint = ""
        struct = _unwrap(_type_at(segments))[0]
        if isinstance(struct, msgspec.inspect.StructType):
            names = [f.name for f in struct.fields]
            close = difflib.get_close_matches(key, names, n=1)
            if close:
                hint = f" (did you mean {close[0]}?)"
        return _dotted([*segments, key]), f"unknown key{hint}"
    value = _value_at(raw, segments)
    rule = None
    if value is not _MISSING:
        t, description = _unwrap(_type_at(segments))
        rule = _rule_for(t, description, value)
    return _dotted(segments), rule or msg


def _dotted(segments: Sequence[str | int]) -> str:
    out = ""
    for s in segments:
        if isinstance(s, int):
            out += f"[{s}]"
        else:
            part = s if re.fullmatch(r"[A-Za-z0-9_-]+", s) else json.dumps(s)
            out += f".{part}" if out else part
    return out


def _value_at(raw: Any, segments: Sequence[str | int]) -> Any:
    node = raw
    for s in segments:
        in_list = isinstance(s, int) and isinstance(node, list) and s < len(node)
        in_table = isinstance(s, str) and isinstance(node, dict) and s in node
        if not (in_list or in_table):
            return _MISSING
        node = node[s]
    return node


def _type_at(segments: Sequence[str | int]) -> Any:
    t: Any = _schema()
    for s in segments:
        t = _unwrap(t)[0]
        if isinstance(s, int) and isinstance(t, msgspec.inspect.VarTupleType | msgspec.inspect.ListType):
            t = t.item_type
        elif isinstance(s, str) and isinstance(t, msgspec.inspect.StructType):
            t = next((f.type for f in t.fields if f.name == s), None)
        else:
            return None
    return t


def _unwrap(t: Any) -> tuple[Any, str | None]:
    """Strip ``Metadata`` (keeping its description) and the ``| None`` of override knobs."""
    description = None
    while True:
        if isinstance(t, msgspec.inspect.Metadata):
            description = (t.extra_json_schema or {}).get("description", description)
            t = t.type
        elif isinstance(t, msgspec.inspect.UnionType):
            rest = [u for u in t.types if not isinstance(u, msgspec.inspect.NoneType)]
            if len(rest) != 1:
                return t, description
            t = rest[0]
        else:
            return t, description


def _show(value: Any) -> str:
    """A value as the operator wrote it, on one short line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # as written: 2.0 stays 2.0
    if isinstance(value, str):
        text = json.dumps(value)
        return text if len(text) <= 48 else text[:44] + '..."'
    if isinstance(value, list):
        return f"array of {len(value)}"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def _got(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    name = kind.get(type(value), type(value).__name__)
    shown = _show(value)
    return name if shown in ("table", name) or shown.startswith("array") else f"{name} {shown}"


def _num(x: float) -> str:
    if isinstance(x, float) and math.isfinite(x) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _rule_for(t: Any, description: str | None, value: Any) -> str | None:
    """The rule ``value`` breaks under declared type ``t``, or None if we cannot tell."""
    ins = msgspec.inspect
    if isinstance(t, ins.LiteralType):
        options = ", ".join(json.dumps(v) for v in t.values)
        return f"must be one of {options} (got {_show(value)})"
    if isinstance(t, ins.BoolType):
        return f"must be true or false (got {_got(value)})"
    if isinstance(t, ins.IntType | ins.FloatType):
        is_int = isinstance(t, ins.IntType)
        ok_type = isinstance(value, int) if is_int else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type:
            return f"must be {'an integer' if is_int else 'a number'} (got {_got(value)})"
        return _bound_rule(t, value)
    if isinstance(t, ins.StrType):
        if not isinstance(value, str):
            return f"must be a string (got {_got(value)})"
        if t.min_length is not None and len(value) < t.min_length:
            return "must not be empty" if t.min_length == 1 else f"must be at least {t.min_length} characters"
        if t.max_length is not None and len(value) > t.max_length:
            return f"must be at most {t.max_length} characters (got {len(value)})"
        if t.pattern is not None and not re.search(t.pattern, value):
            return f"must be {description or 'matching ' + t.pattern} (got {_show(value)})"
        return None
    if isinstance(t, ins.VarTupleType | ins.ListType):
        if not isinstance(value, list):
            return f"must be an array (got {_got(value)})"
        if t.min_length is not None and len(value) < t.min_length:
            return f"must have at least {t.min_length} item{'s' if t.min_length > 1 else ''}"
        if t.max_length is not None and len(value) > t.max_length:
            return f"must have at most {t.max_length} items (got {len(value)})"
        return None
    if isinstance(t, ins.StructType):
        return f"must be a table (got {_got(value)})" if not isinstance(value, dict) else None
    return None


def _bound_rule(t: Any, value: float) -> str | None:
    for op, bound, holds in (
        (">", t.gt, lambda b: value > b),
        (">=", t.ge, lambda b: value >= b),
        ("<", t.lt, lambda b: value < b),
        ("<=", t.le, lambda b: value <= b),
    ):
        if bound is not None and not holds(bound):
            return f"must be {op} {_num(bound)} (got {_show(value)})"
    return None


# ---------------------------------------------------------------------------------------------------
# Rules msgspec cannot express


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def _split_host_port(text: str) -> tuple[str, str, str]:
    """``(host, ":" or "", port)`` for ``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or bare v6."""
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            return text, "", ""
        return host, rest[:1], rest[1:]
    if text.count(":") > 1:  # a bare IPv6 literal has no port
        return text, "", ""
    host, sep, port = text.partition(":")
    return host, sep, port


def parse_host_port(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``"host[:port]"`` as ``(host, port)``; raises ValueError with the rule on a bad address."""
    host, sep, port_text = _split_host_port(text)
    rule = f"must be host or host:port with a port in 1..65535 (got {_show(text)})"
    if not _is_host(host):
        raise ValueError(rule)
    if not sep:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(rule)
    return host, int(port_text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_host(text: str) -> bool:
    return _is_ip(text) or bool(_HOSTNAME.match(text))


def decode_key(text: str) -> bytes:
    """A base64 cluster key as bytes; raises ValueError with the rule when it is not 32 bytes."""
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be a base64-encoded 32-byte key (not valid base64)") from None
    if len(key) != KEY_LEN:
        raise ValueError(f"must be a base64-encoded 32-byte key (got {len(key)} bytes)")
    return key


def _problems(cfg: Config) -> Iterator[tuple[str, str]]:
    """Every rule beyond types and ranges, as ``(dotted path, rule)``; the loader reports the first."""
    node, net, keys, swim = cfg.node, cfg.net, cfg.keyring, cfg.swim
    for i, role in enumerate(node.roles):
        if role in node.roles[:i]:
            yield f"node.roles[{i}]", f"duplicate role {_show(role)}"
    for i, seed in enumerate(node.seeds):
        try:
            parse_host_port(seed)
        except ValueError as exc:
            yield f"node.seeds[{i}]", str(exc)
    if not _is_ip(net.bind):
        yield "net.bind", f"must be an IP address (got {_show(net.bind)})"
    if net.advertise and not _is_ip(net.advertise):
        yield "net.advertise", f"must be an IP address or empty (got {_show(net.advertise)})"
    for i, key in enumerate(keys.keys):
        try:
            decode_key(key)
        except ValueError as exc:
            yield f"keyring.keys[{i}]", str(exc)
        if key in keys.keys[:i]:
            yield f"keyring.keys[{i}]", "duplicate key"
    if net.insecure and keys.keys:
        yield "net.insecure", "cannot be true while keyring.keys is set"
    if net.insecure and keys.key_file:
        yield "net.insecure", "cannot be true while keyring.key_file is set"
    yield from _ordered(swim, "probe_timeout", "<", "probe_interval")
    yield from _ordered(swim, "seed_retry_min", "<=", "seed_retry_max")
    half = net.max_frame // 2
    if cfg.replication.sync_budget_bytes > half:
        got = cfg.replication.sync_budget_bytes
        yield "replication.sync_budget_bytes", f"must be <= net.max_frame / 2 = {half} (got {got})"
    if cfg.spread.refractory_ms >= cfg.spread.deadline_ms:
        got = cfg.spread.refractory_ms
        yield "spread.refractory_ms", f"must be < spread.deadline_ms = {cfg.spread.deadline_ms} (got {got})"


def _ordered(swim: SwimSection, low: str, op: str, high: str) -> Iterator[tuple[str, str]]:
    """Check ``low op high`` on the resolved knobs and blame the one the operator set."""
    resolved = swim.resolve()
    a, b = getattr(resolved, low), getattr(resolved, high)
    if (a < b) if op == "<" else (a <= b):
        return
    flipped = {"<": ">", "<=": ">="}[op]
    blame_low = getattr(swim, low) is not None or getattr(swim, high) is None
    mine, other, rel = (low, high, op) if blame_low else (high, low, flipped)
    value, other_value = getattr(resolved, mine), getattr(resolved, other)
    origin = "" if getattr(swim, other) is not None else f" from profile {swim.profile}"
    yield f"swim.{mine}", f"must be {rel} swim.{other} = {_num(other_value)}{origin} (got {_num(value)})"


# ---------------------------------------------------------------------------------------------------
# Showing the effective config


def key_fingerprint(key: str) -> str:
    """A short, non-secret name for a key, so operators can compare keyrings without showing them."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def effective(cfg: Config) -> dict[str, Any]:
    """The config as plain data with the swim profile resolved and keys replaced by fingerprints."""
    out: dict[str, Any] = msgspec.to_builtins(cfg)
    out["swim"] = {"profile": cfg.swim.profile, **msgspec.to_builtins(cfg.swim.resolve())}
    out["keyring"]["keys"] = [f"<redacted {key_fingerprint(k)}>" for k in cfg.keyring.keys]
    return out


def render_toml(data: Mapping[str, Mapping[str, Any]]) -> str:
    """Sections of scalars and arrays as TOML (enough for :func:`effective`; not a general writer)."""
    lines: list[str] = []
    for section, table in data.items():
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")
