"""The httpx2 flavour: the one module that knows ``httpx2`` (CONVENTIONS 18).

``httpx2`` is the API-compatible continuation of httpx (``import httpx2``); recent ``openai``
and ``anthropic`` SDKs send through an ``httpx2.AsyncClient``. Inside the pipeline every request
stays an ``httpx.Request`` (stages never see the difference); at the seam:

- a caller's ``httpx2.Request`` becomes an ``httpx.Request`` with the same method, URL, headers
  and the same ``extensions`` dict. A body known in full (``content=``, ``json=``, ``data=``)
  becomes an ``httpx.ByteStream``, so ``Retry`` may replay it; a streamed body is handed on
  unread and is sent once.
- the pipeline's ``httpx.Response`` becomes an ``httpx2.Response`` (an unread body streams on);
- an httprail error is raised as the httpx2 exception of the same name that
  :func:`~httprail.terminals.to_httpx_exception` would raise, so an SDK's ``except
  httpx2.TimeoutException`` sees it.

This module imports httpx2, so it is imported only when an httpx2 client is served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2

from .._errors import RequestError
from ._transport import Flavour, RelayStream, TransportBase, httpx_class

__all__ = ["HTTPX2", "Httpx2PipelineTransport", "to_httpx2_exception"]

_TWINS: dict[type[httpx.RequestError], type[httpx2.RequestError]] = {}


def _twin(kind: type[httpx.RequestError]) -> type[httpx2.RequestError]:
    """httpx2's class for an httpx exception class: the same name, or its nearest httpx base's
    (for a backend's own subclass)."""
    found = _TWINS.get(kind)
    if found is None:
        found = httpx2.TransportError
        for cls in kind.__mro__:  # pragma: no branch - httpx.RequestError itself has a twin
            candidate = getattr(httpx2, cls.__name__, None) if cls.__module__ == "httpx" else None
            if isinstance(candidate, type) and issubclass(candidate, httpx2.RequestError):
                found = candidate
                break
        _TWINS[kind] = found
    return found


def to_httpx2_exception(
    error: RequestError, request: httpx2.Request | None = None
) -> httpx2.RequestError:
    """The httpx2 exception an httpx2 user would expect for ``error`` (the httpx2 class of the
    same name as :func:`~httprail.terminals.to_httpx_exception`'s); its ``__cause__`` is
    ``error``.

    Args:
        error: the failure to translate.
        request: the caller's httpx2 request to attach.
    """
    exc = _twin(httpx_class(error))(str(error), request=request)
    exc.__cause__ = error
    return exc


class _Body(httpx.AsyncByteStream):
    """A streamed httpx2 request body, handed to the pipeline unread (sent once, never
    replayed: ``Retry`` replays ``httpx.ByteStream`` bodies only)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk


class _RelayStream(RelayStream, httpx2.AsyncByteStream):
    """The relay of an unread body, on httpx2's base class too (an ``httpx2.Response`` reads
    only from an ``httpx2.AsyncByteStream``)."""


def _slow_core(
    request: httpx2.Request, body: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Request:
    """``request`` as httpx builds it from the parts (URL parsed again, headers normalised)."""
    url, headers = str(request.url), request.headers.raw
    core = httpx.Request(request.method, url, headers=headers, stream=body)
    if isinstance(body, httpx.ByteStream):
        core.read()
    return core


def _fast_core(
    request: httpx2.Request, body: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Request:
    """``request`` with the URL's parsed parts and the header list copied as they are: the two
    libraries keep the same private state (checked at import by :func:`_agrees`)."""
    url = object.__new__(httpx.URL)
    url._uri_reference = _ParseResult(*request.url._uri_reference)
    given = request.headers
    headers = object.__new__(httpx.Headers)
    headers._list = list(given._list)
    headers._encoding = given._encoding
    core = object.__new__(httpx.Request)
    core.method = request.method
    core.url = url
    core.headers = headers
    core.extensions = {}
    core.stream = body
    if isinstance(body, httpx.ByteStream):
        core._content = body._stream
    return core


def _state(request: httpx.Request) -> dict[str, Any]:
    state = dict(vars(request))
    state["url"] = request.url._uri_reference
    state["headers"] = (request.headers._list, request.headers._encoding)
    return state


def _agrees() -> bool:
    """Whether :func:`_fast_core` builds what :func:`_slow_core` builds, on a few requests."""
    samples = [
        httpx2.Request("GET", "https://user:pw@bücher.example:8443/a%20b/c?q=1&r=%C3%A9#frag"),
        httpx2.Request(
            "POST",
            "http://127.0.0.1/v1?x",
            headers=[(b"X-Key", "välue".encode()), (b"a", b"1")],
            json={"k": 1},
        ),
    ]
    try:
        for sample in samples:
            body = httpx.ByteStream(b"".join(sample.stream))  # type: ignore[arg-type]
            if _state(_fast_core(sample, body)) != _state(_slow_core(sample, body)):
                return False
    except Exception:  # noqa: BLE001 - any difference at all means: use the slow path
        return False
    return True


try:
    from httpx._urlparse import ParseResult as _ParseResult
except ImportError:  # pragma: no cover - another httpx layout: the slow path
    FAST = False
else:
    FAST = _agrees()
_core = _fast_core if FAST else _slow_core


class _Httpx2(Flavour):
    """The :class:`~httprail.terminals._transport.Flavour` of httpx2 clients."""

    response_class = httpx2.Response
    byte_stream = httpx2.ByteStream
    relay = _RelayStream
    errors = (httpx2.HTTPError, httpx2.StreamError)

    def owns(self, request: object) -> bool:
        return isinstance(request, httpx2.Request)

    def adopt(self, request: httpx2.Request) -> httpx.Request:
        stream = request.stream
        body: httpx.SyncByteStream | httpx.AsyncByteStream
        if isinstance(stream, httpx2.ByteStream):  # known in full: replayable
            body = httpx.ByteStream(b"".join(stream))
        else:
            body = _Body(stream)
        core = _core(request, body)
        core.extensions = request.extensions  # one dict: what the chain sets, the caller sees
        return core

    def headers(self, headers: httpx.Headers) -> list[tuple[bytes, bytes]]:
        return headers.raw  # pairs as they are: httpx2 would merge repeats of an httpx.Headers

    def exception(self, error: RequestError, request: httpx2.Request) -> Exception:
        return to_httpx2_exception(error, request)


HTTPX2 = _Httpx2()


class Httpx2PipelineTransport(TransportBase, httpx2.AsyncBaseTransport):
    """A :class:`~httprail.Pipeline` as an ``httpx2.AsyncBaseTransport``, for httpx2-based SDKs.

    The same transport as :class:`~httprail.terminals.PipelineTransport` (same options, same
    mapping; it serves an httpx client too), on httpx2's base class: for type checkers, and for
    SDKs that refuse any object of the ``httpx`` package (anthropic's
    ``DefaultAsyncHttpxClient(transport=...)``). Build it with
    ``pipeline.as_httpx2_transport()`` (or ``client.as_httpx2_transport()``).

    Example:
        >>> transport = pipeline.as_httpx2_transport()  # doctest: +SKIP
        >>> sdk = anthropic.AsyncAnthropic(
        ...     http_client=anthropic.DefaultAsyncHttpxClient(transport=transport), max_retries=0
        ... )
    """

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` through the pipeline; return a response or raise an httpx2 error."""
        response: httpx2.Response = await self._handle(request)
        return response
