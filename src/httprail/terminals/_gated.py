"""What every terminal shares: the connection-slot gate, status handling, reading, mapping.

A terminal subclass only opens a response (head received, body still to read, as an
``httpx.Response`` whose stream raises httpx exceptions) and closes its backend. The FIFO gate
with its pool timeout, ``StatusError`` with a size-capped body, reading non-streaming bodies,
handing streams over and the error tree live here, once, so every terminal behaves the same.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
from asyncio import _get_running_loop as _running_loop
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import timedelta

import httpx
from returns.result import Failure

from .._args import need
from .._context import EXTENSION_KEY, RequestContext
from .._errors import InvalidRequestError, RequestError, RequestTimeoutError, StatusError
from .._fast import use_decoder
from .._redact import install_backend_log_filters
from .._result import Outcome, success
from .._settings import HttpSettings
from .._slots import Slots
from .._validate import SendCheck
from ._limits import (
    MAX_BODY_EXTENSION,
    PIECE_BYTES,
    BodyTooLarge,
    CappedDecoder,
    counted,
    declared_too_large,
    decoded,
    limit_of,
    read_limited,
)
from ._loops import close_everywhere, send_elsewhere
from ._mapping import map_exception, safe_cause

__all__ = ["DEFAULT_MAX_ERROR_BODY", "GatedTerminal", "ReadWhole", "read_capped"]

DEFAULT_MAX_ERROR_BODY = 64 * 1024
# Headers that describe the body as it came, not the decoded body kept by ``read_capped``.
_BODY_FRAMING = (b"content-encoding", b"content-length", b"transfer-encoding")


async def read_capped(response: httpx.Response, limit: int) -> httpx.Response:
    """Read at most ``limit`` bytes of an error response's body and close it.

    Returns a new, fully read response carrying the (possibly truncated) decoded body, so a
    Failure never holds an open connection or an unbounded body. A body that breaks while being
    read keeps what arrived.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        if response.is_stream_consumed:  # read already (built with its content): decoded
            chunks.append(response.content)
            size = len(response.content)
        else:
            # Decoded through the bounded decoder: a compressed error body (a bomb) is inflated
            # a piece at a time and no further than the limit, not a whole chunk at once. Its
            # own bound is a piece beyond ours, so the pieces past ours come out before it stops.
            decoder = CappedDecoder(response, limit + PIECE_BYTES)
            async with contextlib.aclosing(decoded(response, decoder)) as pieces:
                async for piece in pieces:
                    chunks.append(piece)
                    size += len(piece)
                    if size > limit:
                        break
        truncated = size > limit
    except httpx.HTTPError:  # BodyTooLarge, a decoding error, a broken body: keep what came
        truncated = True
    finally:
        await response.aclose()
    body = b"".join(chunks)[:limit]
    # Raw bytes: a value that is not ASCII (``café`` in latin-1) is kept as it came.
    headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _BODY_FRAMING]
    extensions = dict(response.extensions)
    extensions["httprail.truncated"] = truncated
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        request=response.request,
        extensions=extensions,
    )


def credentials_from_url(request: httpx.Request) -> None:
    """Move the URL's userinfo into ``Authorization: Basic`` (unless the request has an
    ``Authorization`` header already: an explicit header wins), the same on every terminal:
    httpx let the URL win, curl the header, and aiohttp refused the pair."""
    url = request.url
    if "authorization" not in request.headers:
        pair = f"{url.username}:{url.password}".encode()
        request.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    request.url = url.copy_with(username=None, password=None)


class _GatedStream(httpx.AsyncByteStream):
    """A streamed body that gives its slot back (and stamps ``elapsed``) when closed.

    With a ``limit``, iterating raises :class:`BodyTooLarge` once more than ``limit`` bytes
    came (the raw bytes: what ``aiter_raw()`` and an SDK over ``as_httpx_transport()`` read;
    a compressed body's decoded bytes are counted by its :class:`CappedDecoder`).
    """

    __slots__ = ("_gate", "_inner", "_limit", "_response", "_started")

    def __init__(
        self,
        inner: httpx.AsyncByteStream,
        gate: Slots,
        response: httpx.Response,
        started: float,
        limit: int | None = None,
    ) -> None:
        self._inner = inner
        self._gate: Slots | None = gate
        self._response: httpx.Response | None = response  # let go on close: it holds this
        self._started = started
        self._limit = limit

    def __aiter__(self) -> AsyncIterator[bytes]:
        limit = self._limit
        if limit is None:
            return self._inner.__aiter__()  # no generator of our own in between
        response = self._response
        if response is None:
            raise httpx.StreamClosed
        return counted(self._inner, limit, response.request)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            gate, self._gate = self._gate, None
            # the response holds this stream: dropping the way back breaks the cycle, so a
            # closed response (and the backend's buffers its body keeps) goes with its last
            # reference, not at the cyclic GC's next pass (docs/terminals.md)
            response, self._response = self._response, None
            if gate is not None and response is not None:
                response.elapsed = timedelta(seconds=time.perf_counter() - self._started)
                gate.give()


class _CallerBody(httpx.AsyncByteStream):
    """A request body the caller streams (an async iterator), keeping what it raised.

    A backend reports a body that broke while it was sent in its own words (aiohttp as a
    connection error, reqwest as a transport error): kept here, it is told apart as the
    caller's error, not the upstream's.
    """

    __slots__ = ("_stream", "failed")

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream
        self.failed: Exception | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._stream.__aiter__()
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                self.failed = exc
                raise
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()

    def error(self, request: httpx.Request) -> InvalidRequestError:
        """The caller's error: its body raised (``failed`` is its cause)."""
        failed = self.failed
        error = InvalidRequestError(
            f"the request body raised {type(failed).__name__}: {failed}", request=request
        )
        if failed is not None:
            error.__cause__ = safe_cause(failed, request)
        return error


class _ThreadedBody(httpx.AsyncByteStream):
    """A request body the caller gave as a plain iterator (a generator, a file), read a piece
    at a time in a worker thread, so the event loop never waits on it. httpx's async client
    refuses such a body; httprail's terminals each failed on it in their own way."""

    __slots__ = ("_stream",)

    def __init__(self, stream: httpx.SyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pieces = iter(self._stream)
        while True:
            piece = await asyncio.to_thread(next, pieces, None)
            if piece is None:
                return
            yield piece

    async def aclose(self) -> None:
        await asyncio.to_thread(self._stream.close)


def _caller_body(request: httpx.Request) -> _CallerBody | None:
    """The request's streamed body, wrapped as :class:`_CallerBody` (once); ``None`` for a
    body in memory. A plain iterator's body is read in a thread (:class:`_ThreadedBody`)."""
    stream = request.stream
    if isinstance(stream, _CallerBody):
        return stream
    if isinstance(stream, httpx.SyncByteStream) and not isinstance(stream, httpx.AsyncByteStream):
        stream = _ThreadedBody(stream)
    elif isinstance(stream, httpx.ByteStream) or not isinstance(stream, httpx.AsyncByteStream):
        return None
    body = _CallerBody(stream)
    request.stream = body
    return body


class ReadWhole(httpx.ByteStream):
    """The body of a response its terminal read whole in ``_open``, within the body limit, with
    nothing to decode: :meth:`GatedTerminal.send` has nothing left to read. (The reqwest
    terminal's common answer: the body came with the head.)"""


class GatedTerminal:
    """Base of every terminal: at most ``max_connections`` requests out, the rest queued (FIFO).

    At most ``max_connections`` requests are handed to the backend at once; the rest wait here,
    bounded by the pool timeout. Non-streaming bodies are read here, so a body that breaks or
    times out is a ``Failure`` like any other. Responses with status >= 400 become
    ``Failure(StatusError)`` with the body read up to ``max_error_body`` bytes, unless the
    request's context asks for raw statuses. Subclasses implement :meth:`_open` and
    :meth:`_close_backend`, and may override :meth:`_read` and :meth:`map_error`.
    """

    name = "gated"

    def __init__(
        self, settings: HttpSettings | None = None, *, max_error_body: int = DEFAULT_MAX_ERROR_BODY
    ) -> None:
        need(settings is None or isinstance(settings, HttpSettings), type(self).__name__,
             "settings", "an HttpSettings or None", settings)  # fmt: skip
        self.settings = settings if settings is not None else HttpSettings()
        self._max_error_body = max_error_body
        self._pool_timeout = self.settings.timeout_pool
        self._gate = Slots(self.settings.max_connections)
        self._closed = False
        self._max_body = self.settings.max_body_bytes
        install_backend_log_filters()  # the backend's own log lines never carry a known secret
        self._check = SendCheck()
        # The event loop the backend and the gate belong to, and copies for other live loops
        # (see ``_loops``): a client may outlive a loop, or be used from several.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._copies: dict[asyncio.AbstractEventLoop, GatedTerminal] = {}
        self._parent: GatedTerminal | None = None
        self._sentinel: AsyncGenerator[None, None] | None = None
        self._binding_lock = threading.Lock()

    async def _open(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; return once the head arrived, with the body still to read.

        The response's stream must raise httpx exceptions and free the backend's connection
        when closed.
        """
        raise NotImplementedError

    async def _close_backend(self) -> None:
        """Close the backend's session and connections."""
        raise NotImplementedError

    def _forget_backend(self) -> None:
        """Drop the references to loop-bound backend state, so the next request builds its
        own (called on the copy of the terminal made for another event loop)."""

    def _discard_backend(self) -> None:
        """Release the backend of a closed event loop without that loop (its sockets), then
        forget it. The default forgets only."""
        self._forget_backend()

    async def _read(self, response: httpx.Response, limit: int | None) -> None:
        """Read the whole body of ``response`` and close it.

        Raises:
            BodyTooLarge: more than ``limit`` bytes, once decoded (``None``: no limit).
        """
        try:
            if limit is None:
                await response.aread()
            else:
                await read_limited(response, limit)
        finally:
            await response.aclose()

    def map_error(self, exc: Exception, request: httpx.Request) -> RequestError:
        """The error-tree value for ``exc``."""
        return map_exception(exc, request)

    async def send(self, request: httpx.Request) -> Outcome:
        """Send ``request``; every backend exception comes back as a typed ``Failure``."""
        if self._closed:
            return Failure(InvalidRequestError("the terminal is closed", request=request))
        if _running_loop() is not self._loop:  # another event loop: its own backend and gate
            return await send_elsewhere(self, request)
        check = self._check
        problem = check.problem(request)  # nothing that would smuggle a request out
        if problem is not None:
            return Failure(
                InvalidRequestError(f"refused before sending: {problem}", request=request)
            )
        if check.userinfo:
            credentials_from_url(request)
        limit = self._max_body
        if MAX_BODY_EXTENSION in request.extensions:
            try:
                limit = limit_of(request, limit)
            except ValueError as exc:
                return Failure(InvalidRequestError(str(exc), request=request))
        ctx = request.extensions.get(EXTENSION_KEY)
        stream = raw_status = False
        if isinstance(ctx, RequestContext):
            stream, raw_status = ctx.stream, ctx.raw_status
        gate = self._gate
        if gate.active < gate.limit and not gate.waiters:  # Slots.try_take, inlined
            gate.active += 1
        else:
            try:
                async with asyncio.timeout(self._pool_timeout):
                    await gate.take()
            except TimeoutError:
                return Failure(
                    RequestTimeoutError(
                        "no connection slot free within the pool timeout",
                        phase="pool",
                        request=request,
                    )
                )
        body = None if getattr(request, "_content", None) is not None else _caller_body(request)
        handed_over = False
        started = time.perf_counter()
        try:
            response = await self._open(request)
            if response.status_code < 200:  # no final answer: a 1xx, or a 101 nobody asked for
                await response.aclose()
                raise httpx.RemoteProtocolError(
                    f"no final response: the server answered {response.status_code} and stopped"
                )
            if response.status_code >= 400 and not raw_status:
                kept = await read_capped(response, self._max_error_body)
                kept.elapsed = timedelta(seconds=time.perf_counter() - started)
                return Failure(StatusError.from_response(kept))
            if stream and isinstance(response.stream, httpx.AsyncByteStream):
                if limit is not None:
                    if declared_too_large(response, limit):
                        await response.aclose()
                        raise BodyTooLarge(request=request, limit=limit)
                    if "content-encoding" in response.headers:
                        use_decoder(response, CappedDecoder(response, limit))
                response.stream = _GatedStream(response.stream, gate, response, started, limit)
                handed_over = True
                return success(response)
            if type(response.stream) is not ReadWhole:
                await self._read(response, limit)
            response.elapsed = timedelta(seconds=time.perf_counter() - started)
            return success(response)
        except Exception as exc:  # noqa: BLE001 - the seam: every backend error becomes a value
            if body is not None and body.failed is not None:  # the caller's body broke
                return Failure(body.error(request))
            return Failure(self.map_error(exc, request))
        finally:
            if not handed_over:
                gate.give()

    async def aclose(self) -> None:
        """Close the backend's connections (a closed terminal answers ``InvalidRequestError``)."""
        self._closed = True
        await close_everywhere(self)
