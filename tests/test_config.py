"""Configuration: defaults, profiles, overrides, one-line errors, the check-config command, examples."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p import cli
from engramp2p.config import (
    Config,
    ConfigError,
    SwimSection,
    effective,
    load_config,
    parse_config,
    parse_host_port,
    render_toml,
)
from engramp2p.swim.config import SwimConfig

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "config").glob("*.toml"))
KEY_A = "A" * 43 + "="  # 32 zero bytes
KEY_B = "B" * 43 + "="


# --- defaults -----------------------------------------------------------------------------------


def test_empty_file_is_the_default_config() -> None:
    cfg = parse_config("")
    assert cfg == Config.default()
    assert cfg.node.name  # the host name, squeezed into a valid name
    assert cfg.node.roles == ("storage",)
    assert cfg.node.spaces == ("*",)
    assert cfg.node.seeds == ()
    assert (cfg.net.bind, cfg.net.advertise, cfg.net.port) == ("0.0.0.0", "", 7946)
    assert (cfg.net.packet_size, cfg.net.max_frame, cfg.net.insecure) == (1400, 8 * 1024 * 1024, False)
    assert cfg.swim.profile == "lan" and cfg.swim.overrides() == {}
    assert cfg.replication.ack == "one"
    assert cfg.replication.rebalance_delay == 60.0
    assert cfg.replication.max_clock_offset_ms == 60_000
    assert cfg.replication.fault_injection is False
    assert (cfg.index.ann_threshold, cfg.index.tail_rebuild_rows) == (20_000, 4000)
    assert (cfg.index.tail_rebuild_fraction, cfg.index.search_tree_leaf_budget) == (0.05, 16)
    assert cfg.index.n_neighbors == 30
    assert (cfg.spread.max_depth, cfg.spread.decay_rate, cfg.spread.threshold) == (4, 0.7, 0.01)
    assert cfg.spread.cycle_penalty == 0.93
    assert cfg.ui.refresh_hz == 4


def test_config_is_frozen() -> None:
    cfg = Config.default()
    with pytest.raises(AttributeError):
        cfg.net.port = 1  # type: ignore[misc]


# --- swim profiles ------------------------------------------------------------------------------


def test_swim_section_mirrors_every_swimconfig_knob() -> None:
    knobs = set(SwimSection.__struct_fields__) - {"profile"}
    assert knobs == set(SwimConfig.__struct_fields__)


@pytest.mark.parametrize("profile", ["lan", "wan", "local"])
def test_profile_resolves_to_memberlist_defaults(profile: str) -> None:
    cfg = parse_config(f'[swim]\nprofile = "{profile}"\n')
    assert cfg.swim.resolve() == SwimConfig.profile(profile)  # type: ignore[arg-type]


def test_overrides_apply_on_top_of_profile() -> None:
    cfg = parse_config('[swim]\nprofile = "wan"\nprobe_timeout = 2\nfast_confirm = false\n')
    resolved = cfg.swim.resolve()
    wan = SwimConfig.profile("wan")
    assert resolved.probe_timeout == 2.0 and isinstance(resolved.probe_timeout, float)
    assert resolved.fast_confirm is False
    assert resolved.probe_interval == wan.probe_interval == 5.0
    assert msgspec.structs.replace(resolved, probe_timeout=wan.probe_timeout, fast_confirm=True) == wan


# --- overrides ----------------------------------------------------------------------------------


def test_with_overrides_revalidates_and_leaves_original_alone() -> None:
    base = parse_config("[net]\nport = 7000\n")
    changed = base.with_overrides({"net.port": 7001, "node.seeds": ("10.0.0.1:7946",)})
    assert (base.net.port, changed.net.port) == (7000, 7001)
    assert changed.node.seeds == ("10.0.0.1:7946",)
    with pytest.raises(ConfigError) as err:
        base.with_overrides({"net.port": 70000})
    assert str(err.value) == "command line: net.port: must be <= 65535 (got 70000)"
    with pytest.raises(ConfigError) as err:
        base.with_overrides({"net.colour": "red"}, source="--set")
    assert str(err.value) == "--set: net.colour: unknown key"
    with pytest.raises(ConfigError) as err:
        base.with_overrides({"net.port.x": 1})
    assert str(err.value) == "command line: net.port.x: unknown key (net.port is not a table)"


def test_agent_flags() -> None:
    base = parse_config(f'[keyring]\nkeys = ["{KEY_B}"]\n[swim]\nprobe_timeout = 0.3\n')
    cfg = base.with_flags(
        name="n1",
        bind="127.0.0.1:7101",
        advertise="192.0.2.7",
        join=["127.0.0.1:7102", "[::1]:7103"],
        data_dir="/tmp/n1",
        profile="local",
        key=KEY_A,
    )
    assert cfg.node.name == "n1" and cfg.node.data_dir == "/tmp/n1"
    assert (cfg.net.bind, cfg.net.port, cfg.net.advertise) == ("127.0.0.1", 7101, "192.0.2.7")
    assert cfg.node.seed_addrs() == [("127.0.0.1", 7102), ("::1", 7103)]
    assert cfg.keyring.keys == (KEY_A, KEY_B)  # the flag's key is primary; the old one still opens
    assert cfg.keyring.key_bytes()[0] == bytes(32)
    assert cfg.swim.profile == "local" and cfg.swim.resolve().probe_timeout == 0.3
    assert base.with_flags() == base
    assert base.with_flags(bind="::").net == msgspec.structs.replace(base.net, bind="::")
    assert base.with_flags(key=KEY_B).keyring.keys == (KEY_B,)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"bind": "127.0.0.1:x"}, 'command line: net.port: must be an integer (got string "x")'),
        ({"bind": "localhost"}, 'command line: net.bind: must be an IP address (got "localhost")'),
        (
            {"profile": "moon"},
            'command line: swim.profile: must be one of "lan", "local", "wan" (got "moon")',
        ),
        (
            {"join": ["a:b"]},
            'command line: node.seeds[0]: must be host or host:port with a port in 1..65535 (got "a:b")',
        ),
        (
            {"key": "nope"},
            "command line: keyring.keys[0]: must be a base64-encoded 32-byte key (got 3 bytes)",
        ),
        (
            {"name": "a b"},
            "command line: node.name: must be letters, digits, '.', '_' and '-', "
            'starting with a letter or digit (got "a b")',
        ),
    ],
)
def test_bad_flags_are_reported_like_bad_files(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Config.default().with_flags(**flags)  # type: ignore[arg-type]
    assert str(err.value) == message


# --- one-line errors ----------------------------------------------------------------------------

BAD = [
    ("[swim]\nprobe_interval = -1\n", "swim.probe_interval: must be > 0 (got -1)"),
    ("[net]\ncolour = 'red'\n", "net.colour: unknown key"),
    ("colour = 1\n", "colour: unknown key"),
    ("[swim]\nprobe_intervall = 2\n", "swim.probe_intervall: unknown key (did you mean probe_interval?)"),
    ("[net]\nport = '7947'\n", 'net.port: must be an integer (got string "7947")'),
    ("[net]\nport = true\n", "net.port: must be an integer (got boolean true)"),
    ("[net]\nport = 65536\n", "net.port: must be <= 65535 (got 65536)"),
    ("[net]\npacket_size = 100\n", "net.packet_size: must be >= 512 (got 100)"),
    ("[net]\nmax_frame = 100000000\n", "net.max_frame: must be <= 67108864 (got 100000000)"),
    ("[net]\nlabel = '" + "x" * 65 + "'\n", "net.label: must be at most 64 characters (got 65)"),
    ("[net]\nlabel = 'a b'\n", "net.label: must be letters, digits, '.', '_' and '-' (got \"a b\")"),
    ("[net]\nbind = 'localhost'\n", 'net.bind: must be an IP address (got "localhost")'),
    ("[net]\nadvertise = '10.0.0.300'\n", 'net.advertise: must be an IP address or empty (got "10.0.0.300")'),
    ("net = 1\n", "net: must be a table (got integer 1)"),
    ("[swim]\nprofile = 'lab'\n", 'swim.profile: must be one of "lan", "local", "wan" (got "lab")'),
    ("[swim]\ntcp_timeout = inf\n", "swim.tcp_timeout: must be <= 600 (got inf)"),
    ("[swim]\ngossip_interval = nan\n", "swim.gossip_interval: must be > 0 (got nan)"),
    ("[swim]\nfast_confirm = 'yes'\n", 'swim.fast_confirm: must be true or false (got string "yes")'),
    (
        "[swim]\nprobe_interval = 0.3\n",
        "swim.probe_interval: must be > swim.probe_timeout = 0.5 from profile lan (got 0.3)",
    ),
    (
        "[swim]\nprofile = 'local'\nprobe_timeout = 2\n",
        "swim.probe_timeout: must be < swim.probe_interval = 1 from profile local (got 2)",
    ),
    (
        "[swim]\nprobe_interval = 2\nprobe_timeout = 2\n",
        "swim.probe_timeout: must be < swim.probe_interval = 2 (got 2)",
    ),
    (
        "[swim]\nseed_retry_min = 60\n",
        "swim.seed_retry_min: must be <= swim.seed_retry_max = 30 from profile lan (got 60)",
    ),
    ("[node]\nname = ''\n", "node.name: must not be empty"),
    ("[node]\nroles = 'storage'\n", 'node.roles: must be an array (got string "storage")'),
    (
        "[node]\nroles = ['Storage']\n",
        "node.roles[0]: must be a role name: lowercase letters, digits, '_' and '-' (got \"Storage\")",
    ),
    ("[node]\nroles = ['storage', 'storage']\n", 'node.roles[1]: duplicate role "storage"'),
    ("[node]\nspaces = []\n", "node.spaces: must have at least 1 item"),
    (
        "[node]\nspaces = ['Robots']\n",
        'node.spaces[0]: must be a space-name glob: [a-z0-9_-] with * ? [...] (got "Robots")',
    ),
    ("[node]\nseeds = [7946]\n", "node.seeds[0]: must be a string (got integer 7946)"),
    (
        "[node]\nseeds = ['10.0.0.1:7946', 'host:0']\n",
        'node.seeds[1]: must be host or host:port with a port in 1..65535 (got "host:0")',
    ),
    ("[keyring]\nkeys = ['abcd']\n", "keyring.keys[0]: must be a base64-encoded 32-byte key (got 3 bytes)"),
    (
        "[keyring]\nkeys = ['not base64!']\n",
        "keyring.keys[0]: must be a base64-encoded 32-byte key (not valid base64)",
    ),
    (f"[keyring]\nkeys = ['{KEY_A}', '{KEY_A}']\n", "keyring.keys[1]: duplicate key"),
    (
        f"[net]\ninsecure = true\n[keyring]\nkeys = ['{KEY_A}']\n",
        "net.insecure: cannot be true while keyring.keys is set",
    ),
    ("[storage]\nsynchronous = 'off'\n", 'storage.synchronous: must be one of "full", "normal" (got "off")'),
    ("[replication]\nack = 'two'\n", 'replication.ack: must be one of "all", "one", "quorum" (got "two")'),
    (
        "[net]\nmax_frame = 65536\n[replication]\nsync_budget_bytes = 65536\n",
        "replication.sync_budget_bytes: must be <= net.max_frame / 2 = 32768 (got 65536)",
    ),
    ("[index]\nsearch_tree_leaf_budget = 4\n", "index.search_tree_leaf_budget: must be >= 8 (got 4)"),
    ("[index]\ntail_rebuild_fraction = 0\n", "index.tail_rebuild_fraction: must be > 0 (got 0)"),
    ("[spread]\nthreshold = 1.0\n", "spread.threshold: must be < 1 (got 1.0)"),
    (
        "[spread]\nrefractory_ms = 5000\n",
        "spread.refractory_ms: must be < spread.deadline_ms = 2000 (got 5000)",
    ),
    ("[ui]\nrefresh_hz = 11\n", "ui.refresh_hz: must be <= 10 (got 11)"),
    ("[ui]\nrefresh_hz = 2.5\n", "ui.refresh_hz: must be an integer (got float 2.5)"),
    ("[ui]\nrefresh_hz = 1979-05-27\n", "ui.refresh_hz: must be an integer (got date)"),
    (
        "[net]\nport = 1\n[net]\nbind = '::'\n",
        "line 3, column 5: invalid TOML: Cannot declare ('net',) twice",
    ),
    ("[swim]\nprobe_interval = \n", "line 2, column 18: invalid TOML: Invalid value"),
    ("[node]\nname = 'x", 'line 2 (end of file): invalid TOML: Expected "\'"'),
    ("x = " + "[" * 2000 + "]" * 2000 + "\n", "invalid TOML: arrays or tables nested too deeply"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_config_is_one_exact_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "config/bad.toml")
    assert str(err.value) == f"config/bad.toml: {message}"
    assert "\n" not in str(err.value)


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[net]\ncolour = 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: net.colour: unknown key"
    assert (err.value.source, err.value.path, err.value.rule) == (str(path), "net.colour", "unknown key")

    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as err:
        load_config(missing)
    assert str(err.value) == f"{missing}: cannot read: No such file or directory"

    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"a = 1\n\xff\n")
    with pytest.raises(ConfigError) as err:
        load_config(binary)
    assert str(err.value) == f"{binary}: byte 6: not UTF-8 text"

    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ConfigError) as err:
        load_config(huge)
    assert str(err.value) == f"{huge}: file is larger than 1048576 bytes"


@pytest.mark.parametrize(
    ("text", "addr"),
    [
        ("10.0.0.1:7000", ("10.0.0.1", 7000)),
        ("10.0.0.1", ("10.0.0.1", 7946)),
        ("gateway-a.local:1", ("gateway-a.local", 1)),
        ("[::1]:7946", ("::1", 7946)),
        ("[fe80::1]", ("fe80::1", 7946)),
        ("::1", ("::1", 7946)),
    ],
)
def test_parse_host_port_accepts(text: str, addr: tuple[str, int]) -> None:
    assert parse_host_port(text) == addr


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":7946",
        "host:",
        "host:65536",
        "host:-1",
        "host:+1",
        "ho st:1",
        "[::1",
        "[::1]x",
        "a..b:1",
        "-a:1",
        "h:١",
    ],
)
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="must be host or host:port"):
        parse_host_port(text)


# --- numeric ranges, as a law over every bounded knob ------------------------------------------


def _numeric_knobs() -> list[tuple[str, str, msgspec.inspect.Type]]:
    out = []
    for section in msgspec.inspect.type_info(Config).fields:  # type: ignore[attr-defined]
        for f in section.type.fields:
            t = f.type
            if isinstance(t, msgspec.inspect.UnionType):
                t = next(u for u in t.types if not isinstance(u, msgspec.inspect.NoneType))
            if isinstance(t, msgspec.inspect.IntType | msgspec.inspect.FloatType):
                out.append((section.name, f.name, t))
    return out


NUMERIC = _numeric_knobs()
CROSS_FIELD = {  # in-range values may still break these relations
    "swim.probe_interval",
    "swim.probe_timeout",
    "swim.seed_retry_min",
    "swim.seed_retry_max",
    "replication.sync_budget_bytes",
    "spread.refractory_ms",
}


def test_every_numeric_knob_is_bounded_on_both_sides() -> None:
    assert len(NUMERIC) > 40
    for section, name, t in NUMERIC:
        assert (t.gt is not None or t.ge is not None) and (t.lt is not None or t.le is not None), (
            section,
            name,
        )


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_numeric_range_law(data: st.DataObject) -> None:
    """In range: accepted (or only a cross-field rule objects). Out of range: the violated bound, exactly."""
    section, name, t = data.draw(st.sampled_from(NUMERIC))
    lo = t.ge if t.ge is not None else t.gt
    hi = t.le if t.le is not None else t.lt
    is_int = isinstance(t, msgspec.inspect.IntType)
    side = data.draw(st.sampled_from(["in", "below", "above"]))
    if side == "in":
        value = (
            data.draw(st.integers(lo + (t.gt is not None), hi - (t.lt is not None)))
            if is_int
            else data.draw(st.floats(lo, hi, exclude_min=t.gt is not None, exclude_max=t.lt is not None))
        )
    elif side == "below":
        value = lo - data.draw(st.integers(0 if t.gt is not None else 1, 10**6))
    else:
        value = hi + data.draw(st.integers(0 if t.lt is not None else 1, 10**6))
    text = f"[{section}]\n{name} = {value!r}\n"
    key = f"{section}.{name}"
    if side == "in":
        try:
            cfg = parse_config(text)
        except ConfigError as exc:
            assert exc.path in CROSS_FIELD, str(exc)
        else:
            assert getattr(getattr(cfg, section), name) == value
        return
    with pytest.raises(ConfigError) as err:
        parse_config(text, "t.toml")
    op, bound = (
        (">" if t.gt is not None else ">=", lo)
        if side == "below"
        else ("<" if t.lt is not None else "<=", hi)
    )
    shown = str(int(bound)) if float(bound).is_integer() else repr(bound)
    assert str(err.value) == f"t.toml: {key}: must be {op} {shown} (got {value})"


KNOWN_KEYS = [
    f"{section.name}.{f.name}"
    for section in msgspec.inspect.type_info(Config).fields  # type: ignore[attr-defined]
    for f in section.type.fields
]
SCALAR = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20) | st.dates()
)
ANY_VALUE = (
    SCALAR
    | st.lists(SCALAR, max_size=3)
    | st.dictionaries(st.sampled_from(["x", "port"]), SCALAR, max_size=2)
)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(KNOWN_KEYS)
        | st.sampled_from(["colour", "net.colour", "swim.probe_intervall", "net.port.x", "ui.refresh_hz.y"]),
        ANY_VALUE,
        max_size=3,
    )
)
def test_any_value_anywhere_is_a_config_or_one_line(overrides: dict[str, object]) -> None:
    """Whatever an operator writes, the loader answers with a Config or one ConfigError line."""
    try:
        cfg = Config.default().with_overrides(overrides, source="h.toml")
    except ConfigError as exc:
        line = str(exc)
        assert line.startswith("h.toml: ") and "\n" not in line
        assert exc.path and exc.rule
    else:
        assert isinstance(cfg, Config)


# --- showing the effective config ---------------------------------------------------------------


def test_effective_config_round_trips_through_toml() -> None:
    cfg = load_config(REPO / "config" / "edge.toml")
    again = parse_config(render_toml(effective(cfg)))
    assert again.swim.resolve() == cfg.swim.resolve()
    assert again.swim.profile == cfg.swim.profile
    assert msgspec.structs.replace(again, swim=cfg.swim) == cfg


def test_effective_config_redacts_keys() -> None:
    cfg = parse_config(f"[keyring]\nkeys = ['{KEY_A}', '{KEY_B}']\n")
    data = effective(cfg)
    text = render_toml(data) + json.dumps(data)
    assert KEY_A not in text and KEY_B not in text
    assert len(data["keyring"]["keys"]) == 2
    assert all(k.startswith("<redacted sha256:") for k in data["keyring"]["keys"])


def test_check_config_prints_effective_toml(capsys: pytest.CaptureFixture[str]) -> None:
    path = REPO / "config" / "loopback-1.toml"
    assert cli.main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    shown = tomllib.loads(out)
    assert shown["swim"]["profile"] == "local"
    assert shown["swim"]["probe_timeout"] == 0.2  # the profile, resolved
    assert shown["net"]["port"] == 7101


def test_check_config_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", "--json", str(REPO / "config" / "single.toml")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["swim"] == {"profile": "lan", **msgspec.to_builtins(SwimConfig.profile("lan"))}
    assert data["node"]["name"] == "solo"


def test_check_config_bad_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[swim]\nprobe_interval = -1\n")
    assert cli.main(["check-config", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"engramp2p check-config: {bad}: swim.probe_interval: must be > 0 (got -1)\n"
    assert cli.main(["check-config", "--json", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# --- examples -----------------------------------------------------------------------------------


def test_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"single.toml", "loopback-1.toml", "loopback-2.toml", "loopback-3.toml", "edge.toml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_valid(path: Path) -> None:
    load_config(path)


def test_loopback_cluster_is_wired() -> None:
    cfgs = [load_config(REPO / "config" / f"loopback-{i}.toml") for i in (1, 2, 3)]
    addrs = {("127.0.0.1", c.net.port) for c in cfgs}
    assert len(addrs) == 3
    assert len({c.node.data_dir for c in cfgs}) == 3
    assert len({c.node.name for c in cfgs}) == 3
    for c in cfgs:
        assert c.net.bind == "127.0.0.1" and c.swim.profile == "local"
        assert set(c.node.seed_addrs()) == addrs - {("127.0.0.1", c.net.port)}


def test_config_import_stays_light() -> None:
    code = (
        "import sys, engramp2p.config, engramp2p.commands.config; "
        "heavy = {'trio', 'numpy', 'pynndescent', 'numba', 'cryptography'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
