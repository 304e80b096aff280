"""``PipelineTransport``: a whole pipeline as an httpx transport, for httpx and httpx2 clients.

An httpx-based SDK (openai, anthropic, ...) sends through ``httpx.AsyncClient(transport=...)``
or ``httpx2.AsyncClient(transport=...)`` and gets httprail's retry, breaker, auth and telemetry.
The railway ends here, at the second seam, where values turn back into what the caller's client
expects:

- ``Success(response)``: the response is handed to the SDK.
- a ``Failure`` that carries a response (``StatusError``, a ``MaxRetriesExceededError`` whose
  last attempt was one): that response is handed to the SDK, body readable, so the SDK's own
  status handling (``openai.RateLimitError``, ...) stays right.
- any other ``Failure``: the matching exception of the caller's library is raised (see
  :func:`to_httpx_exception`), with the httprail error as its ``__cause__``.

Inside the pipeline every request is an ``httpx.Request``. A request from an ``httpx2`` client
is converted at this seam by :mod:`httprail.terminals._httpx2`, the one module that knows
httpx2; this module only tells an ``httpx`` request from another one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Collection
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict

import httpx
from returns.result import Success

from .._args import need, statuses_of
from .._context import EXTENSION_KEY, RequestContext
from .._errors import (
    BulkheadFullError,
    CircuitBreakerOpenError,
    ConfigError,
    ConnectError,
    DecodeError,
    InvalidRequestError,
    MaxRetriesExceededError,
    ProtocolError,
    RateLimitedError,
    ReadError,
    RequestError,
    RequestTimeoutError,
    StatusError,
    TimeoutPhase,
    TooManyRedirectsError,
    TransportError,
    WriteError,
)
from ..middleware._retry import RETRY_STATUSES_EXTENSION
from ._mapping import map_exception

if TYPE_CHECKING:
    from .._pipeline import Pipeline
    from ._httpx2 import Httpx2PipelineTransport

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SDK_RETRY_STATUSES",
    "PipelineTransport",
    "StreamPolicy",
    "TransportOptions",
    "response_of",
    "to_httpx_exception",
]

IDEMPOTENCY_HEADER = "Idempotency-Key"

SDK_RETRY_STATUSES: frozenset[int] = frozenset({408, 409, 429, *range(500, 600)})
"""The statuses the OpenAI and Anthropic SDKs retry (408, 409, 429 and every 5xx, Anthropic's
529 "overloaded" included): what a transport asks the chain's ``Retry`` to retry as well."""

StreamPolicy: TypeAlias = bool | Callable[[httpx.Request], bool]
"""Whether the chain hands the body over unread: always, never, or as a function decides."""


class TransportOptions(TypedDict, total=False):
    """The options of :class:`PipelineTransport` (and of ``as_httpx_transport()``)."""

    stream: StreamPolicy
    idempotency_keys: bool
    retry_statuses: Collection[int]


_REPEATABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

_TIMEOUTS: dict[TimeoutPhase, type[httpx.TimeoutException]] = {
    "connect": httpx.ConnectTimeout,
    "read": httpx.ReadTimeout,
    "write": httpx.WriteTimeout,
    "pool": httpx.PoolTimeout,
    # A deadline set by a Timeout stage spans the whole exchange; httpx has no such class, and
    # "waited for the server too long" is what ReadTimeout means to every httpx user.
    "attempt": httpx.ReadTimeout,
    "total": httpx.ReadTimeout,
}

# Most specific first: the first row the error is an instance of wins.
_ERRORS: tuple[tuple[type[RequestError], type[httpx.RequestError]], ...] = (
    (ConnectError, httpx.ConnectError),
    (ReadError, httpx.ReadError),
    (WriteError, httpx.WriteError),
    (ProtocolError, httpx.RemoteProtocolError),
    (TransportError, httpx.NetworkError),
    # Never sent: the upstream is taken to be down, as when a connection is refused.
    (CircuitBreakerOpenError, httpx.ConnectError),
    # Never sent: no local slot was free in time, as when httpx's pool is exhausted.
    (BulkheadFullError, httpx.PoolTimeout),
    (RateLimitedError, httpx.PoolTimeout),
    (InvalidRequestError, httpx.LocalProtocolError),
    (DecodeError, httpx.DecodingError),
    # The Redirects stage in the chain gave up (a hop too many, or a loop).
    (TooManyRedirectsError, httpx.TooManyRedirects),
)


def response_of(error: RequestError) -> httpx.Response | None:
    """The response ``error`` carries, if any.

    A ``StatusError``'s response; for ``MaxRetriesExceededError``, its last attempt's; for any
    other error, its ``response`` attribute when that is an ``httpx.Response``.
    """
    if isinstance(error, StatusError):
        return error.response
    if isinstance(error, MaxRetriesExceededError):
        return response_of(error.last)
    candidate = getattr(error, "response", None)
    return candidate if isinstance(candidate, httpx.Response) else None


def httpx_class(error: RequestError) -> type[httpx.RequestError]:
    """The httpx exception class :func:`to_httpx_exception` raises for ``error``."""
    if isinstance(error, MaxRetriesExceededError):
        return httpx_class(error.last)
    if isinstance(error, RequestTimeoutError):
        return _TIMEOUTS.get(error.phase, httpx.ReadTimeout)
    default: type[httpx.RequestError] = httpx.TransportError
    for source, target in _ERRORS:
        if isinstance(error, source):
            default = target
            break
    # An error the terminal made from a more precise httpx exception keeps that exception's
    # class when it fits the row (CloseError for a NetworkError, UnsupportedProtocol for an
    # invalid request, ...).
    cause = error.__cause__
    if isinstance(cause, httpx.RequestError) and (
        isinstance(cause, default) or default in (httpx.TransportError, httpx.LocalProtocolError)
    ):
        return type(cause)
    return default


def to_httpx_exception(
    error: RequestError, request: httpx.Request | None = None
) -> httpx.RequestError:
    """The httpx exception an httpx user would expect for ``error``; its ``__cause__`` is ``error``.

    ============================================  ======================================
    httprail error                                httpx exception
    ============================================  ======================================
    ``RequestTimeoutError`` connect/read/write    ``ConnectTimeout`` / ``ReadTimeout`` /
    / pool                                        ``WriteTimeout`` / ``PoolTimeout``
    ``RequestTimeoutError`` attempt / total       ``ReadTimeout``
    ``ConnectError`` / ``ReadError`` /            ``ConnectError`` / ``ReadError`` /
    ``WriteError`` / ``ProtocolError``            ``WriteError`` / ``RemoteProtocolError``
    other ``TransportError``                      ``NetworkError``
    ``CircuitBreakerOpenError``                   ``ConnectError``
    ``BulkheadFullError``, ``RateLimitedError``   ``PoolTimeout``
    ``InvalidRequestError``                       ``LocalProtocolError``
    ``DecodeError``                               ``DecodingError``
    ``MaxRetriesExceededError``                   as its last attempt's error
    anything else (``AuthError``, ...)            ``TransportError``
    ============================================  ======================================

    When the error was made from an httpx exception of a fitting, more precise class (a
    ``CloseError``, an ``UnsupportedProtocol``), that class is used.

    Args:
        error: the failure to translate.
        request: the request to attach (default: the error's).
    """
    kind = httpx_class(error)
    target = request if request is not None else error.request
    try:
        exc = kind(str(error), request=target)
    except TypeError:  # a backend's own subclass with another signature: its httpx base
        base = next(k for k in kind.__mro__ if k.__module__.partition(".")[0] == "httpx")
        exc = base(str(error), request=target)
    exc.__cause__ = error
    return exc


class RelayStream(httpx.AsyncByteStream):
    """An unread response's raw bytes, handed to the caller's client. While reading, an
    exception of the caller's library (``flavour.errors``) passes through; any other (a
    backend's, httpx's under an httpx2 client) becomes that library's (``flavour.exception``)."""

    def __init__(
        self, response: httpx.Response, request: Any, core: httpx.Request, flavour: Flavour
    ) -> None:
        self._response = response
        self._request = request
        self._core = core
        self._flavour = flavour

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except self._flavour.errors:
            raise
        except Exception as exc:  # noqa: BLE001 - the seam back: foreign becomes the caller's
            error = map_exception(exc, self._core)
            raise self._flavour.exception(error, self._request) from error

    async def aclose(self) -> None:
        await self._response.aclose()


def read_parts(response: httpx.Response) -> tuple[httpx.Headers, bytes]:
    """The headers and body to hand over for ``response``, whose body the chain has read.

    The body is decoded already, so a ``Content-Encoding`` goes, and the length is the
    decoded body's.
    """
    body = response.content  # read already (and decoded, if it was compressed)
    headers = response.headers
    if "content-encoding" in headers:
        headers = httpx.Headers(
            [
                (name, value)
                for name, value in headers.multi_items()
                if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
            ]
        )
        headers["Content-Length"] = str(len(body))
    return headers, body


class Flavour:
    """How the requests, responses and exceptions of one client library meet the pipeline's
    ``httpx`` ones. This one is httpx's (:data:`HTTPX`: its requests are the pipeline's own);
    the httpx2 flavour, a subclass, is in :mod:`httprail.terminals._httpx2`."""

    response_class: Callable[..., Any] = httpx.Response
    byte_stream: Callable[[bytes], Any] = httpx.ByteStream
    relay: type[RelayStream] = RelayStream  # on the library's AsyncByteStream base
    errors: tuple[type[Exception], ...] = (httpx.HTTPError, httpx.StreamError)
    """The library's own exceptions, passed through as they are while a body is read."""

    def adopt(self, request: Any) -> httpx.Request:
        """The pipeline's ``httpx.Request`` for the caller's ``request``; it shares the
        caller's ``extensions`` dict."""
        core: httpx.Request = request
        return core

    def headers(self, headers: httpx.Headers) -> Any:
        """``headers`` as the library's response takes them."""
        return headers

    def exception(self, error: RequestError, request: Any) -> Exception:
        """The caller's library's exception for ``error``."""
        return to_httpx_exception(error, request)

    def hand_over(self, response: httpx.Response, request: Any, core: httpx.Request) -> Any:
        """A fresh response of the caller's library carrying ``response``'s status and body
        (``core`` is the adopted request)."""
        if response.is_stream_consumed:
            headers, body = read_parts(response)
            stream = self.byte_stream(body)
        else:
            headers, stream = response.headers, self.relay(response, request, core, self)
        return self.response_class(
            response.status_code,
            headers=self.headers(headers),
            stream=stream,
            extensions=dict(response.extensions),
        )


HTTPX = Flavour()


def _foreign_flavour(request: object) -> Flavour:
    """The flavour of a request that is not an ``httpx.Request``: httpx2's, or a ConfigError."""
    try:
        from ._httpx2 import HTTPX2  # only a client of another library reaches here
    except ImportError:  # pragma: no cover - an httpx2 request implies httpx2 is installed
        owned = False
    else:
        owned = HTTPX2.owns(request)
    if not owned:
        raise ConfigError(
            f"PipelineTransport serves httpx and httpx2 clients; it was given a "
            f"{type(request).__module__}.{type(request).__qualname__}"
        )
    return HTTPX2


class TransportBase:
    """What :class:`PipelineTransport` and ``Httpx2PipelineTransport`` share: sending a request
    of either library through the pipeline. Not a transport by itself (no library's base)."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        context: RequestContext | None = None,
        stream: StreamPolicy = True,
        idempotency_keys: bool = True,
        retry_statuses: Collection[int] = SDK_RETRY_STATUSES,
    ) -> None:
        from .._pipeline import Pipeline  # here: _pipeline imports the terminals

        owner = type(self).__name__
        need(isinstance(pipeline, Pipeline), owner, "pipeline", "a Pipeline", pipeline)
        need(context is None or isinstance(context, RequestContext), owner, "context",
             "a RequestContext or None", context)  # fmt: skip
        need(isinstance(stream, bool) or callable(stream), owner, "stream",
             "True, False or a function of the request", stream)  # fmt: skip
        need(isinstance(idempotency_keys, bool), owner, "idempotency_keys", "True or False",
             idempotency_keys)  # fmt: skip
        statuses = statuses_of(owner, "retry_statuses", retry_statuses)
        self._pipeline = pipeline
        base = context if context is not None else pipeline.new_context()
        self._contexts = (base.replace(stream=False), base.replace(stream=True))
        self._stream = stream
        self._idempotency_keys = idempotency_keys
        self._retry_statuses = statuses or None
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._pipeline!r})"

    @property
    def pipeline(self) -> Pipeline:
        """The chain requests are sent through."""
        return self._pipeline

    async def _handle(self, request: Any) -> Any:
        """Send a request of either library; return that library's response or raise its
        exception."""
        if self._closed:
            raise RuntimeError("Cannot send a request, as the transport has been closed.")
        flavour = HTTPX if isinstance(request, httpx.Request) else _foreign_flavour(request)
        if self._idempotency_keys and request.method not in _REPEATABLE_METHODS:
            headers = request.headers  # the caller's: a request sent again keeps its key
            if IDEMPOTENCY_HEADER not in headers:
                headers[IDEMPOTENCY_HEADER] = f"httprail-{uuid.uuid4()}"
        core = flavour.adopt(request)
        policy = self._stream
        stream = policy if isinstance(policy, bool) else bool(policy(core))
        extensions = core.extensions
        ctx = extensions.get(EXTENSION_KEY)
        if isinstance(ctx, RequestContext):
            # Each send is a new logical call, even of a request object sent before (an auth
            # flow resends the same one): keep who it is for, not a past attempt or deadline.
            ctx = ctx.replace(attempt=1, deadline=None, stream=stream)
        else:
            ctx = self._contexts[stream]
        extensions[EXTENSION_KEY] = ctx
        if self._retry_statuses is not None and RETRY_STATUSES_EXTENSION not in extensions:
            extensions[RETRY_STATUSES_EXTENSION] = self._retry_statuses
        outcome = await self._pipeline.send(core)
        if type(outcome) is Success:
            response = outcome.unwrap()
        else:
            error = outcome.failure()
            found = response_of(error)
            if found is None:
                raise flavour.exception(error, request) from error
            response = found
        return flavour.hand_over(response, request, core)

    async def aclose(self) -> None:
        """Close the pipeline (and with it the terminal's connections); idempotent."""
        if not self._closed:
            self._closed = True
            await self._pipeline.aclose()


class PipelineTransport(TransportBase, httpx.AsyncBaseTransport):
    """A :class:`~httprail.Pipeline` as an ``httpx.AsyncBaseTransport``, for httpx-based SDKs.

    Build it with ``pipeline.as_httpx_transport()`` (or ``client.as_httpx_transport()``).
    Responses and error responses reach the caller's client as responses; other failures are
    raised as httpx exceptions (:func:`to_httpx_exception`) whose ``__cause__`` is the httprail
    error. The caller's timeouts (``request.extensions["timeout"]``, set by its
    ``httpx.AsyncClient``) are the terminal's. Closing the transport closes the pipeline.

    It serves an ``httpx2.AsyncClient`` too (requests are converted at the seam; errors are
    raised as httpx2's exceptions); ``pipeline.as_httpx2_transport()`` gives the same transport
    with httpx2's base class, for type checkers and for SDKs that refuse any ``httpx`` object
    (anthropic's ``DefaultAsyncHttpxClient``).

    Args:
        pipeline: the chain to send through.
        context: the request context given to each request (its ``stream`` flag is set per
            request); default: a fresh one from the pipeline.
        stream: ``True`` (default): every 2xx/3xx body is handed over unread, so it streams to
            the caller; retries happen before the response headers only, and a body that
            breaks raises the httpx error while being read. ``False``: the chain reads every
            body, so a body that breaks is a failure the chain can retry, but nothing streams.
            A function of the request decides per request.
        idempotency_keys: ``True`` (default): give every request of another method than GET,
            HEAD, OPTIONS, PUT, DELETE, TRACE (a POST, a PATCH) without an ``Idempotency-Key``
            header a fresh one, kept across the chain's retries, so that ``Retry`` may repeat it
            as the SDK would have. ``False``: such requests are repeated only when the error
            proves the server did not act on them.
        retry_statuses: statuses the chain's ``Retry`` retries for these requests besides its
            own ``retry_statuses`` (default :data:`SDK_RETRY_STATUSES`, what the SDKs retry;
            ``()`` for none).

    Example:
        >>> transport = pipeline.as_httpx_transport()  # doctest: +SKIP
        >>> sdk = openai.AsyncOpenAI(
        ...     http_client=httpx.AsyncClient(transport=transport), max_retries=0
        ... )
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the pipeline; return a response or raise an httpx error."""
        response: httpx.Response = await self._handle(request)
        return response

    def __enter__(self) -> None:
        raise ConfigError(_SYNC_USE)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Refused: an ``httpx.Client`` (sync) cannot use this async transport (ConfigError)."""
        raise ConfigError(_SYNC_USE)


# What httpx.Client(transport=<this async transport>) gets instead of AttributeError: __enter__.
_SYNC_USE = (
    "as_httpx_transport() of an AsyncClient or Pipeline is an httpx.AsyncBaseTransport, for "
    "httpx.AsyncClient; for httpx.Client use httprail.Client(...).as_httpx_transport()"
)


def httpx2_transport(
    pipeline: Pipeline, *, context: RequestContext | None = None, **options: Any
) -> Httpx2PipelineTransport:
    """``pipeline`` as an ``httpx2.AsyncBaseTransport``; a ConfigError without httpx2."""
    try:
        from ._httpx2 import Httpx2PipelineTransport
    except ImportError as exc:
        raise ConfigError(
            "as_httpx2_transport() needs the httpx2 package (pip install httpx2); "
            "as_httpx_transport() serves httpx clients"
        ) from exc
    return Httpx2PipelineTransport(pipeline, context=context, **options)
