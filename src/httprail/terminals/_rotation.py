"""What ``HttpxTerminal`` knows about an HTTP/2 connection the server closed under a request.

Servers rotate connections: hypercorn sends a GOAWAY after 1,000 requests on a connection (its
``keep_alive_max_requests``), load balancers and proxies do it on deploys and idle timers. The
streams in flight on such a connection fail in httpcore as ``WriteError``, ``ReadError`` or
``RemoteProtocolError`` depending on which side of the race each was on; over TLS the GOAWAY
itself is usually lost (the server resets the connection when more frames arrive after its
``close_notify``, and the client's TLS layer drops what it had not read). Three facts are
enough to tell what happened to each request, all gathered without touching the hot path more
than a counter:

- **which connection and stream** carried the request: an httpcore ``trace`` hook
  (:class:`StreamProbe`) sees ``http2.send_request_headers.started`` with the stream id, and
  the connection it is called from;
- **whether a byte of it was written**: the connection's network stream is wrapped
  (:class:`Wire`) to number its write calls and remember the first that failed. httpcore
  drains the whole HTTP/2 output buffer into one write call under a lock, so the request's
  HEADERS frame is in the first write call after the probe saw the stream start; if that call
  (or an earlier one) failed with a write error, no byte of the request left the client;
- **whether the connection had served requests**: the probe marks the wire when a response
  head arrives on it. A connection that answered and then broke says the server was up and
  ended the connection (a rotation, a restart); one that never answered says nothing good about
  the server, so its failures stay ordinary ones.

:func:`classify` turns them into a verdict: ``"refused"`` (the server cannot have processed the
request: RFC 9113 §6.8 for a stream above the GOAWAY's ``last_stream_id``, §8.7 for
``REFUSED_STREAM``, or nothing written), ``"rotated"`` (a used connection closed under the
request: maybe processed) or ``None`` (an ordinary failure). Anything unexpected in httpcore's
internals (another version, a custom transport) gives ``None``: the ordinary mapping.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Awaitable, Callable, Iterable
from types import FrameType
from typing import Any, Literal

import httpcore
import httpx

try:  # httpx[http2] brings h2; without it there is no HTTP/2 to classify
    import h2.errors
    import h2.events
    from httpcore._async.http2 import AsyncHTTP2Connection
except ImportError:  # pragma: no cover - h2 is a dependency (httpx[http2])
    AsyncHTTP2Connection = None  # type: ignore[assignment,misc]

__all__ = ["StreamProbe", "Verdict", "Wire", "WireBackend", "classify", "probe_request"]

Verdict = Literal["refused", "rotated"]
TraceHook = Callable[[str, dict[str, Any]], Awaitable[None]]

_STARTED = "http2.send_request_headers.started"
_ANSWERED = "http2.receive_response_headers.complete"


class Wire(httpcore.AsyncNetworkStream):
    """A network stream that numbers its write calls and remembers the first that broke.

    ``broke_at`` is set only by a write error (the peer closed or reset the connection), never
    by a write timeout or a cancellation: those may leave bytes on their way, so they prove
    nothing about what was sent.
    """

    __slots__ = ("_inner", "answered", "broke_at", "writes")

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self.writes = 0
        self.broke_at: int | None = None
        self.answered = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.writes += 1
        number = self.writes
        try:
            await self._inner.write(buffer, timeout)
        except httpcore.WriteError:
            if self.broke_at is None:
                self.broke_at = number
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return Wire(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    @property
    def _stream(self) -> Any:
        """The wrapped stream's own ``_stream`` (the anyio stream), for code that reaches the
        socket through httpcore's streams (``HttpxTerminal._discard_backend``)."""
        return getattr(self._inner, "_stream", None)


class WireBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend whose streams are :class:`Wire` s."""

    __slots__ = ("_inner",)

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return Wire(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return Wire(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _connection_of(frame: FrameType | None) -> Any:
    """The ``AsyncHTTP2Connection`` whose method is among the callers of ``frame``, or None."""
    for _ in range(4):
        if frame is None or AsyncHTTP2Connection is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, AsyncHTTP2Connection):
            return owner
        frame = frame.f_back
    return None


class StreamProbe:
    """httpcore ``trace`` hook of one attempt: which HTTP/2 connection and stream carried it.

    A ``trace`` the caller set on the request is called after it, unchanged.
    """

    __slots__ = ("connection", "mark", "stream_id", "user", "wire")

    def __init__(self, user: TraceHook | None) -> None:
        self.user = user
        self.connection: Any = None
        self.wire: Wire | None = None
        self.stream_id = 0
        self.mark = 0

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        if self.user is not None:
            await self.user(name, info)
        if name == _STARTED:
            # Our HEADERS frame is buffered right after this returns, with no await between:
            # it goes out in the wire's next write call.
            connection = _connection_of(sys._getframe(1))
            wire = getattr(connection, "_network_stream", None)
            self.connection = connection
            self.stream_id = info.get("stream_id") or 0
            self.wire = wire if isinstance(wire, Wire) else None
            self.mark = wire.writes if isinstance(wire, Wire) else 0
        elif name == _ANSWERED and self.wire is not None:
            self.wire.answered = True


def probe_request(request: httpx.Request) -> StreamProbe:
    """Install a fresh :class:`StreamProbe` as ``request``'s trace hook (keeping the caller's)."""
    extensions = request.extensions
    current = extensions.get("trace")
    user = current.user if isinstance(current, StreamProbe) else current
    probe = StreamProbe(user)
    extensions["trace"] = probe
    return probe


def _goaway_of(connection: Any) -> Any:
    event = getattr(connection, "_connection_terminated", None)
    return event if isinstance(event, h2.events.ConnectionTerminated) else None


def classify(exc: BaseException, probe: StreamProbe | None) -> Verdict | None:
    """What a failed attempt's error means: ``"refused"``, ``"rotated"`` or ``None``."""
    if probe is None or not isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return None
    if isinstance(exc, httpx.TimeoutException):  # pragma: no cover - not a NetworkError today
        return None
    cause = exc.__cause__.args[0] if exc.__cause__ is not None and exc.__cause__.args else None
    if isinstance(cause, h2.events.StreamReset):
        # The server reset this one stream: refused unprocessed (RFC 9113 §8.7), or a real error.
        return "refused" if cause.error_code == h2.errors.ErrorCodes.REFUSED_STREAM else None
    if probe.connection is None:
        return None
    goaway = _goaway_of(probe.connection)
    if goaway is not None and probe.stream_id > (goaway.last_stream_id or 0):
        return "refused"  # RFC 9113 §6.8: streams above last_stream_id were not processed
    wire = probe.wire
    served = wire is not None and wire.answered  # the connection had answered requests
    broke_at = wire.broke_at if wire is not None else None
    if served and broke_at is not None and broke_at <= probe.mark + 1:
        return "refused"  # the write carrying our HEADERS (or an earlier one) failed
    if served or (goaway is not None and goaway.error_code == h2.errors.ErrorCodes.NO_ERROR):
        return "rotated"
    return None
