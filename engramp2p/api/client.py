"""Python clients of the agent's control socket: ``Client`` (blocking) and ``AsyncClient`` (trio).

The CLI uses ``Client``: a plain ``socket`` keeps ``engramp2p members`` from importing trio at all.
Both speak the same frames as ``engramp2p.api.server`` and turn every failure into a ``ClientError``
with one line for the user; a missing or refused socket says plainly that no agent is running.
Typed convenience methods (``members``, ``info``, ``join``, ...) wrap ``call``; ``events`` subscribes
on a connection of its own, so a client can stream events and still issue commands.

Replication methods (``space_create`` ... ``fault_heal``) take memory ids as 16 raw bytes or 32 hex
characters and vectors as a sequence of numbers, a numpy array or raw little-endian float32 bytes; a
malformed argument is a ``ClientError`` before anything is sent. ``remember_batch`` splits any number
of memories into requests of at most ``BATCH`` items and ``BATCH_BYTES`` bytes (the agent refuses
request frames over 1 MiB), so a caller never has to know the frame limit.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from engramp2p.api.messages import (
    AckName,
    AnyRequest,
    AnyResult,
    EdgeAssociate,
    EdgeDissociate,
    EdgeList,
    EdgeRetract,
    EdgeRow,
    Event,
    FaultDrop,
    FaultHeal,
    FaultPeer,
    FaultState,
    Info,
    Join,
    KeyList,
    KeysInstall,
    KeysList,
    KeysRemove,
    KeysUse,
    Leave,
    MemberList,
    MemberRow,
    Members,
    MemberStatus,
    MemoryEdges,
    MemoryForget,
    MemoryFound,
    MemoryGet,
    MemoryItem,
    MemoryRecord,
    MemoryRemember,
    NodeInfo,
    Response,
    SpaceCreate,
    SpaceInfo,
    SpaceList,
    SpaceRow,
    Spaces,
    SpaceStatus,
    Subscribe,
    Written,
    decode_response,
    encode_request,
)
from engramp2p.bounds import MEMORY_ID_LEN
from engramp2p.crdt.entry import Dot
from engramp2p.net.framing import frame
from engramp2p.net.wire import WireError

if TYPE_CHECKING:
    import trio

SOCKET_NAME = "control.sock"
MAX_RESPONSE = 16 * 1024 * 1024
DEFAULT_TIMEOUT = 10.0
_LENGTH = struct.Struct(">I")
_NOT_RUNNING = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR)

BATCH = 256
"""Memories per ``remember`` request in ``remember_batch``: big enough to amortise a round trip and a
group commit, small enough that one request of 384-d memories stays far below the 1 MiB frame limit."""
BATCH_BYTES = 640 * 1024
"""Byte budget of one ``remember`` request (vectors, content, metadata), whatever the dimension."""
ITEM_OVERHEAD = 64
"""Bytes of msgpack framing and field names per ``MemoryItem``, for the batch budget."""

R = TypeVar("R")
ItemLike = MemoryItem | Mapping[str, Any]


class ClientError(Exception):
    """A failed command or connection, with a one-line message meant for the user."""


class AgentNotRunning(ClientError):
    """Nothing listens on the control socket."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(f"no agent running at {path} (is 'engramp2p agent' started?)")
        self.path = Path(path)


def control_path(data_dir: str | os.PathLike[str]) -> Path:
    """Where the agent of ``data_dir`` listens."""
    return Path(data_dir) / SOCKET_NAME


def _with_id(req: AnyRequest, req_id: int) -> AnyRequest:
    return msgspec.structs.replace(req, id=req_id)


def _check(body: bytes, req_id: int, path: Path) -> Response:
    """Decode a response and turn ``ok=False`` into a ``ClientError`` carrying the agent's message."""
    try:
        resp = decode_response(body)
    except WireError as exc:
        raise ClientError(f"agent at {path} sent an unreadable response: {exc}") from None
    if not resp.ok:
        raise ClientError(resp.error or "the agent refused the request")
    if resp.id != req_id:
        raise ClientError(f"agent at {path} answered request {resp.id}, expected {req_id}")
    return resp


def _expect(result: AnyResult | None, kind: type[R]) -> R:
    if not isinstance(result, kind):
        raise ClientError(f"agent answered with {type(result).__name__}, expected {kind.__name__}")
    return result


# -- argument conversion (shared by both clients) ------------------------------------------------------


def memory_id(value: bytes | str, field: str = "id") -> bytes:
    """16 raw bytes or 32 hex characters as 16 bytes; ``ClientError`` naming ``field`` otherwise."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    elif isinstance(value, str):
        try:
            raw = bytes.fromhex(value.strip())
        except ValueError:
            raise ClientError(f"{field}: {value!r} is not hexadecimal") from None
    else:
        raise ClientError(f"{field}: must be {2 * MEMORY_ID_LEN} hex characters or {MEMORY_ID_LEN} bytes")
    if len(raw) != MEMORY_ID_LEN:
        raise ClientError(f"{field}: must be {MEMORY_ID_LEN} bytes ({2 * MEMORY_ID_LEN} hex), got {len(raw)}")
    return raw


def vector_bytes(vector: Any, field: str = "vector") -> bytes:
    """A vector as little-endian float32 bytes: raw bytes pass through, numbers are packed.

    Finiteness and the space's dimension are the agent's to check (it knows the space); a value that
    does not fit float32 at all is refused here because packing it would fail anyway.
    """
    if isinstance(vector, (bytes, bytearray, memoryview)):
        raw = bytes(vector)
        if len(raw) % 4:
            raise ClientError(f"{field}: raw bytes must be a whole number of float32 values")
        return raw
    if hasattr(vector, "__array__"):
        import numpy as np

        arr = np.asarray(vector)
        if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ClientError(f"{field}: must be a one-dimensional array of numbers")
        with np.errstate(over="ignore", invalid="ignore"):
            return arr.astype("<f4").tobytes()
    if isinstance(vector, (str, Mapping)) or not isinstance(vector, Iterable):
        raise ClientError(f"{field}: must be a list of numbers")
    values = list(vector)
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in values):
        raise ClientError(f"{field}: must be a list of numbers")
    try:
        return struct.pack(f"<{len(values)}f", *values)
    except (OverflowError, struct.error):
        # beyond float32: send inf so the agent refuses it with its usual message
        return struct.pack(f"<{len(values)}f", *(x if abs(x) < 3.4e38 or not math.isfinite(x)
                                                  else math.copysign(math.inf, x) for x in values))


def memory_item(item: ItemLike, n: int | None = None) -> MemoryItem:
    """A ``MemoryItem`` from one itself or a mapping ``{"id"?, "content"?, "vector", "confidence"?, "meta"?}``."""
    if isinstance(item, MemoryItem):
        return item
    where = "" if n is None else f"item {n}: "
    if not isinstance(item, Mapping):
        raise ClientError(f"{where}must be a mapping with at least 'vector'")
    unknown = set(item) - {"id", "content", "vector", "confidence", "meta"}
    if unknown:
        raise ClientError(f"{where}unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    if "vector" not in item:
        raise ClientError(f"{where}vector: missing")
    try:
        raw_id = item.get("id")
        return msgspec.convert(
            {
                "id": None if raw_id is None else memory_id(raw_id),
                "content": item.get("content", ""),
                "vector": vector_bytes(item["vector"]),
                "confidence": item.get("confidence", 1.0),
                "meta": item.get("meta") or {},
            },
            MemoryItem,
        )
    except ClientError as exc:
        raise ClientError(f"{where}{exc}") from None
    except msgspec.ValidationError as exc:
        raise ClientError(f"{where}{validation_message(exc)}") from None


def item_size(item: MemoryItem) -> int:
    """Roughly the encoded bytes of ``item`` (content counted as characters: a bound, not an exact size)."""
    meta = sum(len(k) + len(v) + 4 for k, v in item.meta.items())
    return len(item.vector) + 4 * len(item.content) + meta + ITEM_OVERHEAD


def batches(items: Iterable[ItemLike], count: int = BATCH, budget: int = BATCH_BYTES) -> Iterator[list[MemoryItem]]:
    """Consecutive requests' worth of items: at most ``count`` items and about ``budget`` bytes each."""
    out: list[MemoryItem] = []
    size = 0
    for n, raw in enumerate(items):
        item = memory_item(raw, n)
        s = item_size(item)
        if out and (len(out) >= count or size + s > budget):
            yield out
            out, size = [], 0
        out.append(item)
        size += s
    if out:
        yield out


def _remember_one(space: str, vector: Any, content: str, id: bytes | str | None, confidence: float,
                  meta: Mapping[str, str] | None, ack: AckName | None) -> MemoryRemember:
    item = memory_item({"id": id, "content": content, "vector": vector, "confidence": confidence,
                        "meta": dict(meta or {})})
    return _request(MemoryRemember, space=space, items=[item], ack=ack)


def _request(kind: type[R], **fields: Any) -> R:
    """Build a request, turning a bound violation (bad name, weight out of range) into ``ClientError``."""
    try:
        return msgspec.convert(fields, kind, from_attributes=True)
    except msgspec.ValidationError as exc:
        raise ClientError(validation_message(exc)) from None


def validation_message(exc: msgspec.ValidationError) -> str:
    """msgspec's "Expected ... - at `$.weight`" as "weight: expected ..." (the field first, as the agent says it)."""
    text = str(exc)
    head, sep, where = text.rpartition(" - at `$.")
    if not sep:
        return text
    field = where.rstrip("`")
    return f"{field}: {head[:1].lower()}{head[1:]}"


def _one_dot(result: AnyResult | None) -> Dot:
    dots = _expect(result, Written).dots
    if len(dots) != 1:
        raise ClientError(f"agent answered with {len(dots)} log positions, expected 1")
    return dots[0]


def _batch_error(exc: ClientError, done: int) -> ClientError:
    """A failed request of a batch: the earlier requests are durable, so say how many."""
    return ClientError(f"{exc} (in the request starting at item {done}; the {done} before it were written)")


class Client:
    """Blocking client over one Unix socket connection, opened on first use."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_response: int = MAX_RESPONSE,
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.max_response = max_response
        self._sock: socket.socket | None = None
        self._next_id = 0

    @classmethod
    def for_data_dir(cls, data_dir: str | os.PathLike[str], **kwargs: Any) -> Client:
        return cls(control_path(data_dir), **kwargs)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            if exc.errno in _NOT_RUNNING or isinstance(exc, FileNotFoundError | ConnectionRefusedError):
                raise AgentNotRunning(self.path) from None
            raise ClientError(f"cannot connect to agent at {self.path}: {exc.strerror or exc}") from None
        return sock

    def _recv_exactly(self, sock: socket.socket, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = sock.recv(min(n - len(buf), 65536))
            except TimeoutError:
                raise ClientError(f"agent at {self.path} did not answer within {self.timeout} s") from None
            except OSError as exc:
                raise ClientError(f"lost the agent at {self.path}: {exc.strerror or exc}") from None
            if not chunk:
                raise ClientError(f"agent at {self.path} closed the connection")
            buf += chunk
        return bytes(buf)

    def _read_response(self, sock: socket.socket, req_id: int) -> Response:
        (length,) = _LENGTH.unpack(self._recv_exactly(sock, 4))
        if length > self.max_response:
            raise ClientError(
                f"agent at {self.path} sent a {length}-byte response (limit {self.max_response})"
            )
        return _check(self._recv_exactly(sock, length), req_id, self.path)

    def _send(self, sock: socket.socket, req: AnyRequest) -> None:
        try:
            sock.sendall(frame(encode_request(req)))
        except OSError as exc:
            raise ClientError(f"lost the agent at {self.path}: {exc.strerror or exc}") from None

    def call(self, req: AnyRequest) -> AnyResult | None:
        """Send one request and return its result; a failure on the agent's side is a ``ClientError``."""
        if self._sock is None:
            self._sock = self._connect(self.timeout)
        self._next_id += 1
        try:
            self._send(self._sock, _with_id(req, self._next_id))
            return self._read_response(self._sock, self._next_id).result
        except ClientError:
            self.close()  # the connection may be mid-frame: never reuse it
            raise

    def events(self) -> Iterator[Event]:
        """Stream events (recent history first) until the agent goes away, which raises ``ClientError``."""
        sock = self._connect(self.timeout)
        try:
            self._send(sock, Subscribe(id=1))
            self._read_response(sock, 1)
            sock.settimeout(None)  # events come when they come
            while True:
                result = self._read_response(sock, 1).result
                if isinstance(result, Event):
                    yield result
        finally:
            sock.close()

    def members(self, status: MemberStatus | None = None) -> list[MemberRow]:
        return _expect(self.call(Members(status=status)), MemberList).members

    def info(self) -> NodeInfo:
        return _expect(self.call(Info()), NodeInfo)

    def join(self, addrs: Sequence[str]) -> None:
        self.call(Join(addrs=list(addrs)))

    def leave(self) -> None:
        self.call(Leave())

    def keys_list(self) -> KeyList:
        return _expect(self.call(KeysList()), KeyList)

    def keys_install(self, key: bytes) -> None:
        self.call(KeysInstall(key=key))

    def keys_use(self, key: bytes) -> None:
        self.call(KeysUse(key=key))

    def keys_remove(self, key: bytes) -> None:
        self.call(KeysRemove(key=key))

    # -- replication ---------------------------------------------------------------------------------

    def space_create(self, name: str, dim: int, shards: int = 1, replicas: int = 3) -> SpaceRow:
        req = _request(SpaceCreate, name=name, dim=dim, shards=shards, replicas=replicas)
        spaces = _expect(self.call(req), Spaces).spaces
        if not spaces:
            raise ClientError("agent created no space")
        return spaces[0]

    def space_list(self) -> list[SpaceRow]:
        return _expect(self.call(SpaceList()), Spaces).spaces

    def space_info(self, name: str) -> SpaceStatus:
        return _expect(self.call(_request(SpaceInfo, name=name)), SpaceStatus)

    def remember(self, space: str, vector: Any, content: str = "", *, id: bytes | str | None = None,
                 confidence: float = 1.0, meta: Mapping[str, str] | None = None,
                 ack: AckName | None = None) -> bytes:
        """Remember one memory; returns its id (the agent picks one when ``id`` is None)."""
        req = _remember_one(space, vector, content, id, confidence, meta, ack)
        ids = _expect(self.call(req), Written).ids
        if len(ids) != 1:
            raise ClientError(f"agent answered with {len(ids)} ids, expected 1")
        return ids[0]

    def remember_batch(self, space: str, items: Iterable[ItemLike], *, ack: AckName | None = None,
                       batch: int = BATCH, progress: Callable[[int], None] | None = None) -> list[bytes]:
        """Remember many memories, ``batch`` per request; ``progress(n)`` after each acknowledged request.

        Requests go one after another, each acknowledged before the next is sent, so when one fails every
        earlier one is durable and the error says how many were written.
        """
        ids: list[bytes] = []
        for chunk in batches(items, batch):
            try:
                req = _request(MemoryRemember, space=space, items=chunk, ack=ack)
                got = _expect(self.call(req), Written).ids
            except ClientError as exc:
                raise _batch_error(exc, len(ids)) from None
            ids.extend(got)
            if progress is not None:
                progress(len(chunk))
        return ids

    def associate(self, space: str, src: bytes | str, dst: bytes | str, weight: float, confidence: float = 1.0,
                  *, ack: AckName | None = None) -> Dot:
        req = _request(EdgeAssociate, space=space, src=memory_id(src, "src"), dst=memory_id(dst, "dst"),
                       weight=weight, confidence=confidence, ack=ack)
        return _one_dot(self.call(req))

    def dissociate(self, space: str, src: bytes | str, dst: bytes | str, *, ack: AckName | None = None) -> Dot:
        req = _request(EdgeDissociate, space=space, src=memory_id(src, "src"), dst=memory_id(dst, "dst"), ack=ack)
        return _one_dot(self.call(req))

    def retract(self, space: str, src: bytes | str, dst: bytes | str, *, ack: AckName | None = None) -> Dot:
        req = _request(EdgeRetract, space=space, src=memory_id(src, "src"), dst=memory_id(dst, "dst"), ack=ack)
        return _one_dot(self.call(req))

    def forget(self, space: str, id: bytes | str, *, ack: AckName | None = None) -> Dot:
        return _one_dot(self.call(_request(MemoryForget, space=space, mem_id=memory_id(id), ack=ack)))

    def get(self, space: str, id: bytes | str) -> MemoryRecord | None:
        """The memory from this agent's replica, or ``None`` if it holds no visible memory by that id."""
        return _expect(self.call(_request(MemoryGet, space=space, mem_id=memory_id(id))), MemoryFound).memory

    def edges(self, space: str, id: bytes | str) -> list[EdgeRow]:
        return _expect(self.call(_request(MemoryEdges, space=space, mem_id=memory_id(id))), EdgeList).edges

    def fault_drop(self, peers: Sequence[str]) -> list[FaultPeer]:
        """Drop traffic with ``peers`` (agents started with fault injection only); returns the dropped set."""
        return _expect(self.call(_request(FaultDrop, peers=list(peers))), FaultState).dropped

    def fault_heal(self, peers: Sequence[str] = ()) -> list[FaultPeer]:
        """Stop dropping ``peers`` (all when empty); returns what is still dropped."""
        return _expect(self.call(_request(FaultHeal, peers=list(peers))), FaultState).dropped


class AsyncClient:
    """The same client for trio code (``top``, tests): ``async with AsyncClient(path) as c: ...``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_response: int = MAX_RESPONSE,
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.max_response = max_response
        self._stream: trio.SocketStream | None = None
        self._next_id = 0

    @classmethod
    def for_data_dir(cls, data_dir: str | os.PathLike[str], **kwargs: Any) -> AsyncClient:
        return cls(control_path(data_dir), **kwargs)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.aclose()

    async def _connect(self) -> trio.SocketStream:
        import trio

        try:
            return await trio.open_unix_socket(str(self.path))
        except OSError as exc:
            if exc.errno in _NOT_RUNNING or isinstance(exc, FileNotFoundError | ConnectionRefusedError):
                raise AgentNotRunning(self.path) from None
            raise ClientError(f"cannot connect to agent at {self.path}: {exc.strerror or exc}") from None

    async def _exchange_io(self, stream: trio.SocketStream, req: AnyRequest | None, req_id: int) -> Response:
        """Optionally send ``req``, then read one response; stream errors become ``ClientError``."""
        import trio

        from engramp2p.net.framing import FrameTooLarge, read_frame

        try:
            if req is not None:
                await stream.send_all(frame(encode_request(req)))
            body = await read_frame(stream, self.max_response)
        except FrameTooLarge:
            raise ClientError(
                f"agent at {self.path} sent a response over {self.max_response} bytes"
            ) from None
        except (OSError, WireError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ClientError(f"lost the agent at {self.path}: {exc}") from None
        if body is None:
            raise ClientError(f"agent at {self.path} closed the connection")
        return _check(body, req_id, self.path)

    async def call(self, req: AnyRequest) -> AnyResult | None:
        import trio

        if self._stream is None:
            self._stream = await self._connect()
        self._next_id += 1
        try:
            with trio.fail_after(self.timeout if self.timeout is not None else float("inf")):
                resp = await self._exchange_io(self._stream, _with_id(req, self._next_id), self._next_id)
        except trio.TooSlowError:
            await self.aclose()
            raise ClientError(f"agent at {self.path} did not answer within {self.timeout} s") from None
        except ClientError:
            await self.aclose()
            raise
        return resp.result

    async def events(self) -> AsyncIterator[Event]:
        """Stream events (recent history first) until the agent goes away, which raises ``ClientError``."""
        stream = await self._connect()
        async with stream:
            await self._exchange_io(stream, Subscribe(id=1), 1)
            while True:
                result = (await self._exchange_io(stream, None, 1)).result
                if isinstance(result, Event):
                    yield result

    async def members(self, status: MemberStatus | None = None) -> list[MemberRow]:
        return _expect(await self.call(Members(status=status)), MemberList).members

    async def info(self) -> NodeInfo:
        return _expect(await self.call(Info()), NodeInfo)

    async def join(self, addrs: Sequence[str]) -> None:
        await self.call(Join(addrs=list(addrs)))

    async def leave(self) -> None:
        await self.call(Leave())

    async def keys_list(self) -> KeyList:
        return _expect(await self.call(KeysList()), KeyList)

    async def keys_install(self, key: bytes) -> None:
        await self.call(KeysInstall(key=key))

    async def keys_use(self, key: bytes) -> None:
        await self.call(KeysUse(key=key))

    async def keys_remove(self, key: bytes) -> None:
        await self.call(KeysRemove(key=key))

    # -- replication ---------------------------------------------------------------------------------

    async def space_create(self, name: str, dim: int, shards: int = 1, replicas: int = 3) -> SpaceRow:
        req = _request(SpaceCreate, name=name, dim=dim, shards=shards, replicas=replicas)
        spaces = _expect(await self.call(req), Spaces).spaces
        if not spaces:
            raise ClientError("agent created no space")
        return spaces[0]

    async def space_list(self) -> list[SpaceRow]:
        return _expect(await self.call(SpaceList()), Spaces).spaces

    async def space_info(self, name: str) -> SpaceStatus:
        return _expect(await self.call(_request(SpaceInfo, name=name)), SpaceStatus)

    async def remember(self, space: str, vector: Any, content: str = "", *, id: bytes | str | None = None,
                 confidence: float = 1.0, meta: Mapping[str, str] | None = None,
                 ack: AckName | None = None) -> bytes:
        """Remember one memory; returns its id (the agent picks one when ``id`` is None)."""
        req = _remember_one(space, vector, content, id, confidence, meta, ack)
        ids = _expect(await self.call(req), Written).ids
        if len(ids) != 1:
            raise ClientError(f"agent answered with {len(ids)} ids, expected 1")
        return ids[0]

    async def remember_batch(self, space: str, items: Iterable[ItemLike], *, ack: AckName | None = None,
                       batch: int = BATCH, progress: Callable[[int], None] | None = None) -> list[bytes]:
        """Remember many memories, ``batch`` per request; ``progress(n)`` after each acknowledged request.

        Requests go one after another, each acknowledged before the next is sent, so when one fails every
        earlier one is durable and the error says how many were written.
        """
        ids: list[bytes] = []
        for chunk in batches(items, batch):
            try:
                req = _request(MemoryRemember, space=space, items=chunk, ack=ack)
                got = _expect(await self.call(req), Written).ids
            except ClientError as exc:
                raise _batch_error(exc, len(ids)) from None
            ids.extend(got)
            if progress is not None:
                progress(len(chunk))
        return ids

    async def associate(self, space: str, src: bytes | str, dst: bytes | str, weight: float, confidence: float = 1.0,
                  *, ack: AckName | None = None) -> Dot:
        req = _request(EdgeAssociate, space=space, src=memory_id(src, "src"), dst=memory_id(dst, "dst"),
                       weight=weight, confidence=confidence, ack=ack)
        return _one_dot(await self.call(req))

    async def dissociate(self, space: str, src: bytes | str, dst: bytes | str, *, ack: AckName | None = None) -> Dot:
        req = _request(EdgeDissociate, space=space, src=memory_id(src, "src"), dst=memory_id(dst, "dst"), ack=ack)
        return _one_dot(await self.call(req))

    async def retract(self, space: str, src: bytes | str, dst: bytes | str, *, ack: AckName | None = None) -> Dot:
        req = _request(EdgeRetract, space=space, src=memory_id(src, "src"), dst=memory_id(dst, "dst"), ack=ack)
        return _one_dot(await self.call(req))

    async def forget(self, space: str, id: bytes | str, *, ack: AckName | None = None) -> Dot:
        return _one_dot(await self.call(_request(MemoryForget, space=space, mem_id=memory_id(id), ack=ack)))

    async def get(self, space: str, id: bytes | str) -> MemoryRecord | None:
        """The memory from this agent's replica, or ``None`` if it holds no visible memory by that id."""
        return _expect(await self.call(_request(MemoryGet, space=space, mem_id=memory_id(id))), MemoryFound).memory

    async def edges(self, space: str, id: bytes | str) -> list[EdgeRow]:
        return _expect(await self.call(_request(MemoryEdges, space=space, mem_id=memory_id(id))), EdgeList).edges

    async def fault_drop(self, peers: Sequence[str]) -> list[FaultPeer]:
        """Drop traffic with ``peers`` (agents started with fault injection only); returns the dropped set."""
        return _expect(await self.call(_request(FaultDrop, peers=list(peers))), FaultState).dropped

    async def fault_heal(self, peers: Sequence[str] = ()) -> list[FaultPeer]:
        """Stop dropping ``peers`` (all when empty); returns what is still dropped."""
        return _expect(await self.call(_request(FaultHeal, peers=list(peers))), FaultState).dropped
