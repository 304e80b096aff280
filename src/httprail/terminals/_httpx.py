"""``HttpxTerminal``: one pooled, HTTP/2-capable ``httpx.AsyncClient`` (the terminal for HTTP/2)."""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import certifi
import httpcore
import httpx

from .._errors import ConfigError, ConnectionRotatedError, RefusedStreamError, RequestError
from .._settings import HttpSettings
from .._tls import ALL_PROXY_SCHEMES, Proxies, ProxyRouter, resolve_tls
from ._gated import DEFAULT_MAX_ERROR_BODY, GatedTerminal, read_capped
from ._loops import release_socket
from ._rotation import StreamProbe, WireBackend, classify, probe_request

__all__ = ["DEFAULT_MAX_ERROR_BODY", "HttpxTerminal", "read_capped", "reclaim_orphaned_connections"]

# How many times a request the server refused unprocessed is sent again at once, on another
# connection, before the terminal returns ``RefusedStreamError`` (which ``Retry`` may resend).
RESENDS = 2


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

    HTTP/2 is offered unless ``settings.http2`` is ``False`` (negotiated by ALPN over TLS,
    HTTP/1.1 otherwise); pool limits and timeouts come from :class:`HttpSettings`. A server that
    rotates its HTTP/2 connections (GOAWAY, or a reset of a connection that served requests)
    costs no failure that says nothing: a request it refused unprocessed is sent again at once
    on another connection (up to ``RESENDS`` times, then ``RefusedStreamError``), and one it may
    have processed fails as ``ConnectionRotatedError``, which ``Retry`` resends for idempotent
    methods and the breaker does not count (see ``httprail.terminals._rotation``).

    At most ``max_connections`` requests are handed to httpx at once; the rest wait in a FIFO
    queue here (bounded by the pool timeout), because
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
        verify: TLS verification, winning over ``HTTP_VERIFY``/``HTTP_CA_BUNDLE``: ``True``,
            ``False``, a CA bundle path or an ``ssl.SSLContext`` (default: from the settings,
            which also give the client certificate, the proxy and ``trust_env``; see
            ``docs/security.md``). With ``client`` or ``transport``, TLS and proxy settings
            cannot be applied: setting any is a ``ConfigError``.
        follow_redirects: must stay ``False``: the terminal never follows a redirect (a
            followed redirect would carry credentials to another origin); add the
            ``Redirects`` stage instead (``HTTP_FOLLOW_REDIRECTS=true``). ``True`` is a
            ``ConfigError``. A ``client`` of your own is sent through with redirects off too.
    """

    name = "httpx"

    def __init__(
        self,
        settings: HttpSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        client: httpx.AsyncClient | None = None,
        max_error_body: int = DEFAULT_MAX_ERROR_BODY,
        verify: bool | str | ssl.SSLContext | None = None,
        follow_redirects: bool = False,
    ) -> None:
        super().__init__(settings, max_error_body=max_error_body)
        self._transport = transport
        self._client = client
        self._owns_client = client is None
        tls = resolve_tls(self.settings, verify, "httpx")
        given = self.settings.tls_or_proxy_set
        if (client is not None or transport is not None) and (given or verify is not None):
            what = "client" if client is not None else "transport"
            names = ", ".join(f"HTTP_{name.upper()}" for name in given) or "verify"
            raise ConfigError(
                f"the httpx terminal cannot apply {names} to the {what} it was given; "
                f"configure TLS and proxies on that {what}, or let the terminal make its own"
            )
        self._verify = tls.ssl_context("httpx", default_cafile=certifi.where())
        socks = importlib.util.find_spec("socksio") is not None
        schemes = ALL_PROXY_SCHEMES if socks else ALL_PROXY_SCHEMES - {"socks5", "socks5h"}
        self._proxies = Proxies(self.settings, "httpx", schemes=schemes)
        if follow_redirects is not False:
            raise ConfigError(
                "HttpxTerminal(follow_redirects=...) must be False: a terminal never follows "
                "redirects; add the Redirects stage (HTTP_FOLLOW_REDIRECTS=true) instead"
            )
        self._follow_redirects = False
        self._timeout = self.settings.httpx_timeout()
        self._timeout_ext = self._timeout.as_dict()

    def __repr__(self) -> str:
        return f"HttpxTerminal(http2={self.http2})"

    @property
    def http2(self) -> bool:
        """Whether HTTP/2 is offered (``settings.http2`` unless it is ``False``)."""
        return self.settings.http2 is not False

    def _get_client(self) -> httpx.AsyncClient:
        client = self._client
        if client is None:
            settings = self.settings
            limits = settings.httpx_limits()
            transport = self._transport
            if transport is None:
                proxies = self._proxies
                if proxies.never or proxies.fixed is not None:
                    transport = self._new_transport(proxies.fixed)
                else:  # proxies from the environment: chosen per request (NO_PROXY)
                    transport = ProxyRouter(proxies, self._new_transport)
            client = httpx.AsyncClient(
                http2=self.http2,
                limits=limits,
                timeout=self._timeout,
                transport=transport,
                verify=self._verify,
                trust_env=False,  # the environment's proxies are chosen by self._proxies
                follow_redirects=self._follow_redirects,
            )
            self._client = client
        return client

    def _new_transport(self, proxy: str | None) -> httpx.AsyncHTTPTransport:
        """A pooled transport, straight to servers or through ``proxy``."""
        transport = httpx.AsyncHTTPTransport(
            verify=self._verify,
            http2=self.http2,
            limits=self.settings.httpx_limits(),
            proxy=proxy,
            trust_env=self.settings.trust_env,  # SSL_CERT_FILE/SSL_CERT_DIR, as httpx reads them
        )
        _count_writes(transport)
        return transport

    @property
    def client(self) -> httpx.AsyncClient:
        """The underlying ``httpx.AsyncClient`` (created on first use)."""
        return self._get_client()

    async def _open(self, request: httpx.Request) -> httpx.Response:
        extensions = request.extensions
        if "timeout" not in extensions:
            extensions["timeout"] = self._timeout_ext
        client = self._get_client()
        http2 = self.http2  # only HTTP/2 connections are watched for rotation
        resends = RESENDS if http2 and isinstance(request.stream, httpx.ByteStream) else 0
        while True:
            probe = probe_request(request) if http2 else None
            try:
                response = await client.send(request, stream=True, follow_redirects=False)
                break
            except httpx.TransportError as exc:
                await reclaim_orphaned_connections(client)
                if resends and classify(exc, probe) == "refused":
                    resends -= 1  # not processed: safe to send again, whatever the method
                    continue
                raise
            except BaseException:
                await reclaim_orphaned_connections(client)
                raise
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _UninterruptedClose(response.stream)
        return response

    def map_error(self, exc: Exception, request: httpx.Request) -> RequestError:
        """The error-tree value for ``exc``; a connection the server rotated under the request
        gives ``RefusedStreamError`` or ``ConnectionRotatedError`` (see the class docstring)."""
        error = super().map_error(exc, request)
        probe = request.extensions.get("trace")
        verdict = classify(exc, probe if isinstance(probe, StreamProbe) else None)
        if verdict is None:
            return error
        kind = RefusedStreamError if verdict == "refused" else ConnectionRotatedError
        what = (
            "the server refused the request unprocessed"
            if verdict == "refused"
            else "the server closed a used connection under the request"
        )
        rotated = kind(f"{what} ({error.message})", request=request)
        rotated.__cause__ = exc
        return rotated

    async def _close_backend(self) -> None:
        """Close the connection pool (if this terminal created it)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()

    def _forget_backend(self) -> None:
        if self._owns_client:
            self._client = None  # a client given to the terminal is the caller's to rebind

    def _discard_backend(self) -> None:
        client = self._client
        self._forget_backend()
        if client is None or not self._owns_client:
            return
        # httpcore's connections, each over an anyio stream over an asyncio transport.
        pool = getattr(getattr(client, "_transport", None), "_pool", None)
        for connection in list(getattr(pool, "_connections", None) or ()):
            inner = getattr(connection, "_connection", None)
            stream = getattr(getattr(inner, "_network_stream", None), "_stream", None)
            stream = getattr(stream, "transport_stream", stream)  # under TLS
            release_socket(getattr(stream, "_transport", None))


def _count_writes(transport: httpx.AsyncHTTPTransport) -> None:
    """Wrap the network streams of ``transport``'s pool in ``Wire`` s (no-op if httpcore's
    internals are not the expected ones)."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend) and not isinstance(backend, WireBackend):
        pool._network_backend = WireBackend(backend)  # type: ignore[union-attr]
