"""The keyring: sealing, rejection of foreign or tampered packets, rotation, key encoding, keygen."""

from __future__ import annotations

import argparse
import base64
import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.commands import keys as keys_command
from engramp2p.net.seal import (
    HEADER_LEN,
    KEY_LEN,
    SEAL_OVERHEAD,
    Keyring,
    KeyringError,
    SealError,
    decode_key,
    encode_key,
    generate_key,
)
from engramp2p.net.wire import MAGIC, PROTOCOL_VERSION, WireError

K1, K2, K3 = (bytes([i]) * KEY_LEN for i in (1, 2, 3))


def test_seal_open_round_trip_with_fresh_nonces() -> None:
    ring = Keyring([K1], label="fleet")
    a, b = ring.seal(b"hello"), ring.seal(b"hello")
    assert a != b  # random nonce per packet
    assert ring.open(a) == ring.open(b) == b"hello"
    assert len(a) == len(b"hello") + SEAL_OVERHEAD
    assert a[:3] == MAGIC + bytes([PROTOCOL_VERSION])
    assert Keyring([K1], label="fleet").open(a) == b"hello"  # another node with the same key and label


def test_foreign_key_and_foreign_label_are_rejected() -> None:
    sealed = Keyring([K1], label="fleet").seal(b"x")
    with pytest.raises(SealError, match="no installed key"):
        Keyring([K2, K3], label="fleet").open(sealed)
    with pytest.raises(SealError, match="no installed key"):
        Keyring([K1], label="other").open(sealed)
    with pytest.raises(SealError):
        Keyring([K1]).open(sealed)  # the empty label is a label too


@settings(max_examples=300, deadline=None)
@given(plain=st.binary(max_size=64), data=st.data())
def test_any_single_bit_flip_is_rejected(plain: bytes, data: st.DataObject) -> None:
    ring = Keyring([K1, K2], label="fleet")
    sealed = bytearray(ring.seal(plain))
    pos = data.draw(st.integers(0, len(sealed) - 1))
    sealed[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(SealError):
        ring.open(bytes(sealed))


@settings(max_examples=200, deadline=None)
@given(plain=st.binary(max_size=64), cut=st.integers(0, 200))
def test_truncated_or_extended_packets_are_rejected(plain: bytes, cut: int) -> None:
    ring = Keyring([K1])
    sealed = ring.seal(plain)
    if cut < len(sealed):
        with pytest.raises(SealError):
            ring.open(sealed[:cut])
    with pytest.raises(SealError):
        ring.open(sealed + bytes(cut % 7 + 1))


def test_header_errors_say_what_is_wrong() -> None:
    ring = Keyring([K1])
    sealed = ring.seal(b"payload")
    with pytest.raises(SealError, match="too short"):
        ring.open(b"EP")
    with pytest.raises(SealError, match="bad magic"):
        ring.open(b"XX" + sealed[2:])
    with pytest.raises(SealError, match="protocol version 9"):
        ring.open(MAGIC + b"\x09" + sealed[3:])
    with pytest.raises(SealError, match="too short"):
        ring.open(sealed[: HEADER_LEN + 20])
    assert issubclass(SealError, WireError) and issubclass(SealError, ValueError)


def test_rotation_install_use_remove() -> None:
    a, b = Keyring([K1], label="l"), Keyring([K1], label="l")
    # 1) every node installs the new key: nothing changes on the wire yet.
    a.install(K2)
    b.install(K2)
    a.install(K2)  # idempotent
    assert a.keys() == [K1, K2] and a.primary == K1
    # 2) nodes switch primary one by one; old and new primaries still understand each other.
    a.use(K2)
    assert a.primary == K2 and a.keys() == [K2, K1]
    assert b.open(a.seal(b"from a")) == b"from a"
    assert a.open(b.seal(b"from b")) == b"from b"
    b.use(K2)
    # 3) the old key is retired; a straggler still sealing with it is now refused.
    a.remove(K1)
    b.remove(K1)
    assert a.keys() == b.keys() == [K2]
    straggler = Keyring([K1], label="l")
    with pytest.raises(SealError):
        a.open(straggler.seal(b"late"))
    assert a.open(b.seal(b"ok")) == b"ok"


def test_removing_the_primary_or_unknown_keys_is_refused() -> None:
    ring = Keyring([K1, K2])
    with pytest.raises(KeyringError, match="cannot remove the primary"):
        ring.remove(K1)
    assert ring.keys() == [K1, K2]
    with pytest.raises(KeyringError, match="not installed"):
        ring.remove(K3)
    with pytest.raises(KeyringError, match="not installed"):
        ring.use(K3)
    with pytest.raises(KeyringError, match="32 bytes"):
        ring.install(b"short")
    with pytest.raises(KeyringError, match="at least one key"):
        Keyring([])
    with pytest.raises(KeyringError, match="label"):
        Keyring([K1], label="x" * 256)


def test_insecure_mode_is_explicit_and_does_not_mix_with_sealed() -> None:
    plain_ring, sealed_ring = Keyring.insecure(), Keyring([K1])
    packet = plain_ring.seal(b"hi")
    assert packet == MAGIC + bytes([PROTOCOL_VERSION, 0]) + b"hi"
    assert plain_ring.open(packet) == b"hi"
    assert plain_ring.is_insecure and plain_ring.primary is None and plain_ring.keys() == []
    with pytest.raises(SealError, match="requires encryption"):
        sealed_ring.open(packet)
    with pytest.raises(SealError, match="insecure"):
        plain_ring.open(sealed_ring.seal(b"hi"))
    with pytest.raises(KeyringError, match="insecure"):
        plain_ring.install(K1)


def test_key_encoding() -> None:
    key = generate_key()
    assert len(key) == KEY_LEN and key != generate_key()
    text = encode_key(key)
    assert decode_key(text) == key
    assert decode_key(f"  {text}\n") == key
    with pytest.raises(KeyringError, match="not valid base64"):
        decode_key("not*base64!")
    with pytest.raises(KeyringError, match="must be 32 bytes, got 16"):
        decode_key(base64.b64encode(bytes(16)).decode())
    with pytest.raises(KeyringError, match="32 bytes"):
        encode_key(bytes(31))


def test_keygen_prints_a_key_that_decodes_to_32_bytes() -> None:
    parser = argparse.ArgumentParser(prog="engramp2p")
    keys_command.register(parser.add_subparsers(dest="command"))
    outputs = []
    for _ in range(2):
        args = parser.parse_args(["keygen"])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert args.func(args) == 0
        outputs.append(out.getvalue())
    for text in outputs:
        assert text.endswith("\n") and text.count("\n") == 1
        assert len(decode_key(text)) == 32
    assert outputs[0] != outputs[1]
