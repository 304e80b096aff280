"""``HttpxTerminal``: the default terminal, one pooled HTTP/2-capable ``httpx.AsyncClient``."""

from __future__ import annotations

import httpx

from .._settings import HttpSettings
from ._gated import DEFAULT_MAX_ERROR_BODY, GatedTerminal, read_capped

__all__ = ["DEFAULT_MAX_ERROR_BODY", "HttpxTerminal", "read_capped"]


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
        return await self._get_client().send(request, stream=True)

    async def _close_backend(self) -> None:
        """Close the connection pool (if this terminal created it)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
