"""The agent's control socket: ``<data_dir>/control.sock``, length-prefixed msgspec requests and responses.

The socket file is created mode 0600 (umask narrowed around ``bind``, then ``chmod`` to be sure): the
file system is the authentication, so only the agent's user may connect, and frames are not sealed.
They are still bounded: a request frame longer than ``max_request`` is refused from its header, a
frame that does not decode gets an error response, and nothing a client sends can raise past the
connection handler.

Commands are handlers registered by request tag (``server.register("members", handler)``); a handler
takes the decoded request and returns a ``Result`` (or ``None``) and reports a user-facing failure by
raising ``CommandError``. One connection may carry many requests in turn. ``events_subscribe`` is built
in: it turns the connection into a stream of ``Event`` responses fed by ``publish``; each subscriber has
a bounded queue, and a subscriber that falls behind loses events (counted, and visible as gaps in
``Event.seq``) rather than slowing the agent down. A new subscriber first gets the recent history, so
``top`` starting late still shows what just happened.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import socket as _stdsocket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from engramp2p.api.client import control_path
from engramp2p.api.messages import (
    AnyRequest,
    AnyResult,
    Event,
    Response,
    Subscribe,
    decode_request,
    encode_response,
)
from engramp2p.net.framing import FrameTooLarge, frame, read_frame
from engramp2p.net.wire import WireError

log = logging.getLogger(__name__)

MAX_REQUEST = 1024 * 1024
SUBSCRIBER_QUEUE = 256
HISTORY = 64

Handler = Callable[[AnyRequest], Awaitable[AnyResult | None]]


class CommandError(Exception):
    """A command failed for a reason the user should read (one line); becomes ``ok=False``."""


class AgentAlreadyRunning(RuntimeError):
    """Another live agent owns the control socket of this data directory."""


def request_name(req: AnyRequest) -> str:
    """The tag a request travels under, which is also the name its handler is registered with."""
    return str(type(req).__struct_config__.tag)


class ControlServer:
    """Serves the control socket; run ``serve`` in the agent's nursery."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_request: int = MAX_REQUEST,
        subscriber_queue: int = SUBSCRIBER_QUEUE,
        history: int = HISTORY,
    ) -> None:
        self.path = Path(path)
        self.max_request = max_request
        self.subscriber_queue = subscriber_queue
        self._handlers: dict[str, Handler] = {}
        self._subscribers: set[trio.MemorySendChannel[Event]] = set()
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self.stats: dict[str, int] = {
            "connections": 0,
            "requests": 0,
            "bad_requests": 0,
            "errors": 0,
            "events_published": 0,
            "events_dropped": 0,
        }

    # -- registration and events ----------------------------------------------------------------

    def register(self, name: str, handler: Handler) -> None:
        """Answer requests tagged ``name`` with ``handler``; registering twice is a local error."""
        if name in self._handlers or name == request_name(Subscribe()):
            raise ValueError(f"a handler for {name!r} is already registered")
        self._handlers[name] = handler

    def publish(self, event: Event) -> None:
        """Send ``event`` to every subscriber without waiting; a full subscriber queue drops it."""
        self.stats["events_published"] += 1
        self._history.append(event)
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                self.stats["events_dropped"] += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(channel)

    @classmethod
    def for_data_dir(cls, data_dir: str | os.PathLike[str], **kwargs: int) -> ControlServer:
        return cls(control_path(data_dir), **kwargs)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    # -- serving --------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED) -> None:
        """Create the socket (mode 0600), report its path, and serve until cancelled; then remove it."""
        listener = await self._bind()
        inode = self.path.lstat().st_ino
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._handle, [listener])
                task_status.started(self.path)
        finally:
            # Synchronous clean-up first: we may be here because of a cancellation.
            with contextlib.suppress(OSError):
                if self.path.lstat().st_ino == inode:
                    self.path.unlink()
            listener.socket.close()

    async def _bind(self) -> trio.SocketListener:
        await self._clear_stale()
        sock = trio.socket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            await sock.bind(str(self.path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old_umask)
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)
        sock.listen(64)
        return trio.SocketListener(sock)

    async def _clear_stale(self) -> None:
        """Remove a socket file left by a dead agent; refuse to steal one from a live agent."""
        if not self.path.exists() and not self.path.is_symlink():
            return
        if not stat.S_ISSOCK(self.path.lstat().st_mode):
            raise FileExistsError(f"{self.path} exists and is not a socket")
        try:
            stream = await trio.open_unix_socket(str(self.path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise
            self.path.unlink(missing_ok=True)
            return
        await stream.aclose()
        raise AgentAlreadyRunning(f"an agent is already running at {self.path}")

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.stats["connections"] += 1
        async with stream:
            try:
                await self._conversation(stream)
            except FrameTooLarge:
                self.stats["bad_requests"] += 1
                with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._send(stream, Response(id=0, ok=False, error="request frame too large"))
            except (WireError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away mid-frame: nothing to answer

    async def _conversation(self, stream: trio.SocketStream) -> None:
        while True:
            body = await read_frame(stream, self.max_request)
            if body is None:
                return
            self.stats["requests"] += 1
            try:
                req = decode_request(body)
            except WireError as exc:
                self.stats["bad_requests"] += 1
                await self._send(stream, Response(id=0, ok=False, error=_one_line(str(exc))))
                continue
            if isinstance(req, Subscribe):
                await self._stream_events(stream, req)
                return
            await self._send(stream, await self._dispatch(req))

    async def _dispatch(self, req: AnyRequest) -> Response:
        name = request_name(req)
        handler = self._handlers.get(name)
        if handler is None:
            return Response(id=req.id, ok=False, error=f"this agent does not support {name!r}")
        try:
            result = await handler(req)
        except CommandError as exc:
            return Response(id=req.id, ok=False, error=_one_line(str(exc)))
        except Exception as exc:
            # A bug in one command must not take the agent down; log it in full, tell the user briefly.
            self.stats["errors"] += 1
            log.exception("control command %s failed", name)
            return Response(
                id=req.id, ok=False, error=_one_line(f"internal error: {type(exc).__name__}: {exc}")
            )
        return Response(id=req.id, ok=True, result=result)

    async def _stream_events(self, stream: trio.SocketStream, req: Subscribe) -> None:
        send, receive = trio.open_memory_channel[Event](self.subscriber_queue)
        for event in list(self._history)[-self.subscriber_queue :]:
            send.send_nowait(event)
        self._subscribers.add(send)
        try:
            await self._send(stream, Response(id=req.id, ok=True))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_eof, stream, nursery.cancel_scope)
                try:
                    async for event in receive:
                        await self._send(stream, Response(id=req.id, ok=True, result=event))
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the subscriber hung up
                nursery.cancel_scope.cancel()
        finally:
            self._subscribers.discard(send)
            send.close()

    async def _send(self, stream: trio.SocketStream, resp: Response) -> None:
        await stream.send_all(frame(encode_response(resp)))


async def _cancel_on_eof(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
    """A subscriber says nothing after subscribing; reading tells us when it hangs up."""
    try:
        while await stream.receive_some(4096):
            pass
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:4000]
