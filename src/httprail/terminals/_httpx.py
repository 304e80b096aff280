"""``HttpxTerminal``: the default terminal, one pooled HTTP/2-capable ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import httpx

from .._settings import HttpSettings
from ._gated import DEFAULT_MAX_ERROR_BODY, GatedTerminal, read_capped

__all__ = ["DEFAULT_MAX_ERROR_BODY", "HttpxTerminal", "read_capped", "reclaim_orphaned_connections"]


async def reclaim_orphaned_connections(client: httpx.AsyncClient) -> int:
    """Close pool entries that no request owns and that are not idle; return how many.

    httpcore 1.0.x (encode/httpcore#1093) assigns a connection to a waiting request before the
    request uses it. A request cancelled in between (while its new connection is being opened,
    or just after, before the first byte is written) leaves that connection in the pool for
    good: not idle, not closed, not usable, holding a slot (and sometimes an open socket) until
    the pool is full and every request times out. Hedging and deadlines cancel requests all the
    time, so this terminal sweeps such entries after any send that did not return. Anything
    unexpected in httpcore's internals (another version, a custom transport) makes this a no-op.
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    connections = getattr(pool, "_connections", None)
    waiting = getattr(pool, "_requests", None)
    close = getattr(pool, "_close_connections", None)
    if not isinstance(connections, list) or not isinstance(waiting, list) or close is None:
        return 0
    owned = {id(getattr(entry, "connection", None)) for entry in waiting}
    orphans = [
        connection
        for connection in connections
        if id(connection) not in owned and not connection.is_idle() and not connection.is_closed()
    ]
    for connection in orphans:
        connections.remove(connection)
    await close(orphans)  # httpcore shields this from cancellation
    return len(orphans)


async def close_uninterrupted(closing: Coroutine[Any, Any, None]) -> None:
    """Run ``closing`` to its end even if the caller is cancelled meanwhile; then re-raise.

    httpcore shields its clean-up with anyio cancel scopes, which a plain ``task.cancel()``
    goes through: a cancel that lands while a response is being closed leaves the connection
    marked busy and its pool request queued, for good (found by cancelling a request at every
    await it passes). The close runs as its own task, so a cancel only waits for it to finish
    (a lock and a socket close) and is then raised as usual.
    """
    task = asyncio.ensure_future(closing)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()


class _UninterruptedClose(httpx.AsyncByteStream):
    """An httpx response stream whose ``aclose`` a cancel cannot cut short."""

    __slots__ = ("_inner",)

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._inner.__aiter__()

    async def aclose(self) -> None:
        await close_uninterrupted(self._inner.aclose())


class HttpxTerminal(GatedTerminal):
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
        super().__init__(settings, max_error_body=max_error_body)
        self._transport = transport
        self._client = client
        self._owns_client = client is None
        self._verify = verify
        self._follow_redirects = follow_redirects
        self._timeout = self.settings.httpx_timeout()
        self._timeout_ext = self._timeout.as_dict()

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

    async def _open(self, request: httpx.Request) -> httpx.Response:
        extensions = request.extensions
        if "timeout" not in extensions:
            extensions["timeout"] = self._timeout_ext
        client = self._get_client()
        try:
            response = await client.send(request, stream=True)
        except BaseException:
            await reclaim_orphaned_connections(client)
            raise
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _UninterruptedClose(response.stream)
        return response

    async def _close_backend(self) -> None:
        """Close the connection pool (if this terminal created it)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
