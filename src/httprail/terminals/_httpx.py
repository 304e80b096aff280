"""``HttpxTerminal``: the default terminal, one pooled HTTP/2-capable ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from returns.result import Failure, Success

from .._context import EXTENSION_KEY, RequestContext
from .._errors import InvalidRequestError, RequestTimeoutError, StatusError
from .._result import Outcome
from .._settings import HttpSettings
from ._mapping import map_exception

__all__ = ["DEFAULT_MAX_ERROR_BODY", "HttpxTerminal", "read_capped"]

DEFAULT_MAX_ERROR_BODY = 64 * 1024


async def read_capped(response: httpx.Response, limit: int) -> httpx.Response:
    """Read at most ``limit`` bytes of an error response's body and close it.

    Returns a new, fully read response carrying the (possibly truncated) decoded body, so a
    Failure never holds an open connection or an unbounded body. A body that breaks while being
    read keeps what arrived.
    """
    chunks: list[bytes] = []
    size = 0
    truncated = False
    try:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                truncated = size > limit
                break
    except httpx.HTTPError:
        truncated = True
    finally:
        await response.aclose()
    body = b"".join(chunks)[:limit]
    headers = [
        (k, v)
        for k, v in response.headers.multi_items()
        if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    extensions = dict(response.extensions)
    extensions["httprail.truncated"] = truncated
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        request=response.request,
        extensions=extensions,
    )


class _GatedStream(httpx.AsyncByteStream):
    """A streamed body that gives its admission slot back when it is closed."""

    def __init__(self, inner: httpx.AsyncByteStream, gate: asyncio.Semaphore) -> None:
        self._inner = inner
        self._gate: asyncio.Semaphore | None = gate

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            gate, self._gate = self._gate, None
            if gate is not None:
                gate.release()


class HttpxTerminal:
    """Send requests over one lazily created, pooled ``httpx.AsyncClient``.

    HTTP/2 is on by default (negotiated by ALPN over TLS, HTTP/1.1 otherwise); pool limits and
    timeouts come from :class:`HttpSettings`. At most ``max_connections`` requests are handed to
    httpx at once; the rest wait in a FIFO queue here (bounded by the pool timeout), because
    httpcore's own pool slows down quadratically with the number of waiting requests (1,000
    queued requests stall the event loop for seconds). Non-streaming bodies are read here, so a
    body that breaks or times out is a ``Failure`` like any other. Responses with status >= 400
    become ``Failure(StatusError)`` with the body read up to ``max_error_body`` bytes, unless
    the request's context asks for raw statuses.

    Args:
        settings: timeouts, limits and HTTP/2 switch (defaults: ``HttpSettings()``).
        transport: an httpx transport to use instead of the network (for tests and benchmarks).
        client: an existing ``httpx.AsyncClient`` to send with; it is not closed by ``aclose``.
        max_error_body: how many bytes of an error response's body to keep.
        verify: TLS verification, as in httpx.
        follow_redirects: as in httpx (off by default).
    """

    name = "httpx"

    def __init__(
        self,
        settings: HttpSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        client: httpx.AsyncClient | None = None,
        max_error_body: int = DEFAULT_MAX_ERROR_BODY,
        verify: bool | str = True,
        follow_redirects: bool = False,
    ) -> None:
        self.settings = settings if settings is not None else HttpSettings()
        self._transport = transport
        self._client = client
        self._owns_client = client is None
        self._max_error_body = max_error_body
        self._verify = verify
        self._follow_redirects = follow_redirects
        self._timeout = self.settings.httpx_timeout()
        self._timeout_ext = self._timeout.as_dict()
        self._pool_timeout = self.settings.timeout_pool
        self._gate = asyncio.Semaphore(self.settings.max_connections)
        self._closed = False

    def __repr__(self) -> str:
        return f"HttpxTerminal(http2={self.settings.http2})"

    def _get_client(self) -> httpx.AsyncClient:
        client = self._client
        if client is None:
            settings = self.settings
            client = httpx.AsyncClient(
                http2=settings.http2,
                limits=settings.httpx_limits(),
                timeout=self._timeout,
                transport=self._transport,
                verify=self._verify,
                follow_redirects=self._follow_redirects,
            )
            self._client = client
        return client

    @property
    def client(self) -> httpx.AsyncClient:
        """The underlying ``httpx.AsyncClient`` (created on first use)."""
        return self._get_client()

    async def send(self, request: httpx.Request) -> Outcome:
        """Send ``request``; every backend exception comes back as a typed ``Failure``."""
        if self._closed:
            return Failure(InvalidRequestError("the terminal is closed", request=request))
        extensions = request.extensions
        if "timeout" not in extensions:
            extensions["timeout"] = self._timeout_ext
        ctx = extensions.get(EXTENSION_KEY)
        stream = raw_status = False
        if isinstance(ctx, RequestContext):
            stream, raw_status = ctx.stream, ctx.raw_status
        gate = self._gate
        if gate.locked():
            try:
                async with asyncio.timeout(self._pool_timeout):
                    await gate.acquire()
            except TimeoutError:
                return Failure(
                    RequestTimeoutError(
                        "no connection slot free within the pool timeout",
                        phase="pool",
                        request=request,
                    )
                )
        else:
            await gate.acquire()
        handed_over = False
        try:
            response = await self._get_client().send(request, stream=True)
            if response.status_code >= 400 and not raw_status:
                return Failure(
                    StatusError.from_response(await read_capped(response, self._max_error_body))
                )
            if stream and isinstance(response.stream, httpx.AsyncByteStream):
                response.stream = _GatedStream(response.stream, gate)
                handed_over = True
                return Success(response)
            try:
                await response.aread()
            finally:
                await response.aclose()
            return Success(response)
        except Exception as exc:  # noqa: BLE001 - the seam: every backend error becomes a value
            return Failure(map_exception(exc, request))
        finally:
            if not handed_over:
                gate.release()

    async def aclose(self) -> None:
        """Close the connection pool (if this terminal created it)."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
