"""``AsyncClient``: httpx's request API, returning a Result from a middleware pipeline."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from types import CoroutineType, MappingProxyType
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, Unpack, overload

import httpx
from httpx._types import QueryParamTypes  # httpx's own name for what params take
from returns.result import Failure, Result, Success

from ._args import items_of, need
from ._cache import remember
from ._closing import ClosesOnExit
from ._context import EXTENSION_KEY, RequestContext
from ._decode import decode_json, model_problem
from ._errors import ConfigError, InvalidRequestError, RequestError
from ._events import Observer
from ._fast import bodiless_request, header_items, request_again
from ._health import HealthSnapshot
from ._pipeline import MiddlewarePlugin, Pipeline, TerminalPlugin
from ._redact import is_sensitive_header, redact_text, redact_url, register_secret
from ._result import Outcome, resolved
from ._settings import HttpSettings
from ._validate import headers_problem
from ._version import __version__
from .middleware._auth import basic_credentials
from .middleware._defaults import default_plugins
from .middleware._metrics import Metrics, MetricsSnapshot
from .middleware._redirects import FOLLOW_EXTENSION, Redirects
from .terminals._aiohttp import AiohttpTerminal
from .terminals._limits import MAX_BODY_EXTENSION
from .terminals._transport import PipelineTransport, TransportOptions

if TYPE_CHECKING:
    from .services._paginate import PageStyle
    from .terminals._httpx2 import Httpx2PipelineTransport

__all__ = ["AsyncClient"]

T = TypeVar("T")

_DEFAULT_HEADERS = (
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate"),
    ("Connection", "keep-alive"),
    ("User-Agent", f"httprail/{__version__} httpx/{httpx.__version__}"),
)
_EMPTY: Mapping[str, str] = MappingProxyType({})


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def _merge_url(base: httpx.URL | None, url: httpx.URL | str) -> httpx.URL:
    target = httpx.URL(url)
    if base is None or not target.is_relative_url:
        return target
    base_path = base.raw_path.split(b"?", 1)[0]
    if not base_path.endswith(b"/"):
        base_path += b"/"
    return base.copy_with(raw_path=base_path + target.raw_path.lstrip(b"/"))


QueryParams = QueryParamTypes | None
"""Query parameters as httpx takes them: a mapping (a list value repeats its key), pairs (a key
may repeat), a query string, an ``httpx.QueryParams``, or ``None``."""


class RequestOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`AsyncClient.build_request` and of every call."""

    params: QueryParams
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None
    cookies: dict[str, str] | None
    content: Any
    data: Mapping[str, Any] | None
    files: Any
    json: Any
    timeout: float | httpx.Timeout | None
    tags: Mapping[str, str] | None
    raw_status: bool | None
    stream: bool
    extensions: Mapping[str, Any] | None
    max_body_bytes: int | None
    auth: tuple[str, str] | httpx.BasicAuth | None
    follow_redirects: bool


class ClientOptions(TypedDict, total=False):
    """The keyword arguments of :class:`AsyncClient` after ``base_url``, which
    :class:`~httprail.Client` passes on (``tests/unit/test_client.py`` keeps the two in step)."""

    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None
    params: QueryParams
    plugins: Sequence[MiddlewarePlugin] | None
    terminal: TerminalPlugin | None
    settings: HttpSettings | None
    observers: Sequence[Observer]
    raw_status: bool
    provider: str | None


class AsyncClient(ClosesOnExit):
    """An async HTTP client whose every call returns ``Result[httpx.Response, RequestError]``.

    Requests travel the pipeline: ``plugins`` (outermost first; ``None`` builds the default
    stack from ``settings``, ``[]`` is a bare chain) and then the terminal (a pooled
    ``AiohttpTerminal`` unless another is given). Requests and responses are httpx's objects
    and method arguments are httpx's, so moving from httpx is mostly a rename (the
    differences: docs/quickstart.md).

    Args:
        base_url: prefix for relative URLs.
        headers: headers sent with every request.
        params: query parameters sent with every request.
        plugins: the middleware stack, or ``None`` for the default one.
        terminal: what sends requests (default: the terminal ``settings.terminal`` names,
            ``HTTP_TERMINAL``; else ``AiohttpTerminal(settings)``, HTTP/1.1, with no
            dependency beyond the core; ``HttpxTerminal(settings)`` when ``settings.http2`` is
            true, as it speaks HTTP/2).
        settings: timeouts, retry, breaker and pool settings (default: from ``HTTP_*`` env).
        observers: extra receivers of retry / breaker events.
        raw_status: return every status as ``Success`` instead of ``Failure(StatusError)``.
        provider: a provider or service name, recorded in each request's context.

    Example:
        >>> async with AsyncClient(base_url="https://api.example.com") as client:  # doctest: +SKIP
        ...     match await client.get("/users/1"):
        ...         case Success(response):
        ...             print(response.json())
        ...         case Failure(StatusError(status_code=404)):
        ...             print("no such user")
        ...         case Failure(error):
        ...             print("failed:", error)
    """

    def __init__(
        self,
        base_url: httpx.URL | str = "",
        *,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        params: QueryParams = None,
        plugins: Sequence[MiddlewarePlugin] | None = None,
        terminal: TerminalPlugin | None = None,
        settings: HttpSettings | None = None,
        observers: Sequence[Observer] = (),
        raw_status: bool = False,
        provider: str | None = None,
    ) -> None:
        need(settings is None or isinstance(settings, HttpSettings), "AsyncClient", "settings",
             "an HttpSettings or None", settings)  # fmt: skip
        need(params is None or isinstance(params, Mapping | list | tuple | str | bytes),
             "AsyncClient", "params", "query parameters (a mapping, a list of pairs, a "
             "query string or httpx.QueryParams) or None", params)  # fmt: skip
        if plugins is not None:
            plugins = items_of("AsyncClient", "plugins", plugins, "a list of stages or None")
        observers = items_of("AsyncClient", "observers", observers, "a list of callables")
        need(provider is None or isinstance(provider, str), "AsyncClient", "provider",
             "a provider or service name (a string) or None", provider)  # fmt: skip
        self.settings = settings if settings is not None else HttpSettings()
        if base_url:
            try:
                self._base_url: httpx.URL | None = httpx.URL(base_url)
            except (httpx.InvalidURL, TypeError) as exc:
                raise ConfigError(
                    f"AsyncClient(base_url=...) is not a valid URL: {redact_text(str(exc))}"
                ) from None
            if self._base_url.is_relative_url:
                shown = redact_url(base_url).rpartition("@")[2]  # no userinfo, even unparsed
                raise ConfigError(f"AsyncClient(base_url={shown!r}) must be absolute")
            if self._base_url.password:
                register_secret(self._base_url.password, owner=self)
        else:
            self._base_url = None
        try:
            self._headers = httpx.Headers(_DEFAULT_HEADERS)
            self._headers.update(httpx.Headers(headers))
        except (TypeError, ValueError, AttributeError) as exc:  # a name or value not text
            raise ConfigError(f"AsyncClient(headers=...) is invalid: {exc}") from None
        problem = headers_problem(self._headers.raw)
        if problem is not None:
            raise ConfigError(f"AsyncClient(headers=...) is invalid: {problem}")
        for name, value in self._headers.items():
            if is_sensitive_header(name):  # known to the redactor while this client lives
                register_secret(value, owner=self)
                register_secret(value.partition(" ")[2], owner=self)
        try:  # refused now, not at the first request
            self._params = httpx.QueryParams(params)
        except (TypeError, ValueError, AttributeError, LookupError) as exc:
            raise ConfigError(f"AsyncClient(params=...) is invalid: {exc}") from None
        self._url_cache: dict[str, tuple[httpx.URL, str | None] | None] = {}
        # A bodiless request to a URL string with no per-call option is built again from the
        # first one's URL and header items (``request``'s quick path): URL -> (URL, items).
        # (kept by ``remember``: only a URL that comes back; ``None`` for one seen once.)
        self._again: dict[str, tuple[httpx.URL, list[tuple[bytes, bytes, bytes]]] | None] = {}
        stack = default_plugins(self.settings) if plugins is None else list(plugins)
        if self._base_url is not None:
            for plugin in stack:  # auth stages send their credentials to this origin only
                bind = getattr(plugin, "bind_origin", None)
                if callable(bind):
                    bind(self._base_url)
        self._terminal = terminal if terminal is not None else _default_terminal(self.settings)
        if self.settings.http2 and getattr(self._terminal, "speaks_http2", True) is False:
            raise ConfigError(
                f"AsyncClient: HTTP/2 was asked for (http2=True, HTTP_HTTP2=true) but "
                f"terminal={type(self._terminal).__name__} speaks HTTP/1.1 only: use "
                "HttpxTerminal (or no terminal: then HttpxTerminal is chosen), or leave http2 unset"
            )
        self._pipeline = Pipeline(stack, self._terminal, observers=observers)
        self._follows = any(isinstance(plugin, Redirects) for plugin in stack)
        self._dispatch = self._pipeline._handler
        self._context = self._pipeline.new_context(raw_status=raw_status, provider=provider)
        self._stream_context = self._context.replace(stream=True)

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={str(self._base_url or '')!r}, pipeline={self._pipeline!r})"

    @property
    def pipeline(self) -> Pipeline:
        """The frozen chain this client sends through."""
        return self._pipeline

    def _url_for(self, url: httpx.URL | str) -> tuple[httpx.URL, str | None]:
        """``url`` merged with the base URL, and why it cannot be sent (``None``: it can).

        String URLs are parsed and checked once and kept: parsing and joining cost ~110 µs per
        call in httpx, more than the whole middleware stack, and an ``httpx.URL`` is immutable,
        so the merged value is safe to share (the cache is bounded: :func:`remember`).
        """
        if not isinstance(url, str):
            return self._checked_url(url)
        return remember(self._url_cache, url, self._checked_url)

    def _checked_url(self, url: httpx.URL | str) -> tuple[httpx.URL, str | None]:
        merged = _merge_url(self._base_url, url)
        return merged, _url_problem(merged)

    def build_request(
        self, method: str, url: httpx.URL | str, **options: Unpack[RequestOptions]
    ) -> Result[httpx.Request, RequestError]:
        """The ``httpx.Request`` that :meth:`request` would send, or why it cannot be built.

        Options are httpx's (``params``, ``headers``, ``cookies``, ``content``, ``data``,
        ``files``, ``json``, ``timeout``) and httprail's (``tags``, ``raw_status``, ``stream``,
        ``extensions``, ``max_body_bytes``: this call's response size limit, ``None`` for none;
        docs/security.md#limits). ``extensions`` are added to the request's extensions (e.g.
        ``{httprail.middleware.NO_RETRY_EXTENSION: veto}``); the request context is httprail's.
        """
        built = self._build(method, url, **options)
        return built if type(built) is Failure else Success(built)

    def _build(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        params: QueryParams = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        cookies: dict[str, str] | None = None,
        content: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        json: Any = None,
        timeout: float | httpx.Timeout | None = UNSET,
        tags: Mapping[str, str] | None = None,
        raw_status: bool | None = None,
        stream: bool = False,
        extensions: Mapping[str, Any] | None = None,
        max_body_bytes: int | None = UNSET,
        auth: tuple[str, str] | httpx.BasicAuth | None = None,
        follow_redirects: bool | None = None,
    ) -> httpx.Request | Failure[RequestError]:
        """:meth:`build_request`'s request, unwrapped (no ``Success`` to build and unwrap)."""
        try:
            full_url, problem = self._url_for(url)
            if self._params or params:
                # added to the URL's own query, a key given here replacing the URL's (httpx
                # 0.28 drops the URL's query instead; docs/quickstart.md); repeats are kept
                full_url = full_url.copy_merge_params(self._params.merge(params))
            if headers:
                merged_headers = self._headers.copy()
                merged_headers.update(httpx.Headers(headers))
            else:
                merged_headers = self._headers
            if (
                problem is None
                and content is None
                and data is None
                and files is None
                and json is None
                and not cookies
                and method.upper() in _BODILESS
            ):
                request = bodiless_request(method, full_url, merged_headers)
                if type(url) is str and merged_headers is self._headers and not self._params:
                    self._remember_again(url, full_url, request, params)
            else:
                request = httpx.Request(
                    method,
                    full_url,
                    headers=merged_headers,
                    cookies=cookies,
                    content=content,
                    data=data,
                    files=files,
                    json=json,
                )
        except (
            httpx.InvalidURL,
            httpx.UnsupportedProtocol,
            TypeError,
            ValueError,
            AttributeError,  # httpx's answer to a header name, cookie jar or method not text
            LookupError,  # and to query parameters that are not pairs (``[""]``)
        ) as exc:
            shown = redact_url(url)
            return Failure(InvalidRequestError(f"cannot build {method} {shown!r}: {exc}"))
        if problem is not None:
            return Failure(
                InvalidRequestError(
                    f"cannot send {method} {redact_url(url)!r}: {problem}", request=request
                )
            )
        if tags is not None or extensions is not None:
            refused = _options_problem(tags, extensions)
            if refused is not None:
                return Failure(InvalidRequestError(refused, request=request))
        if extensions:
            request.extensions.update(extensions)
        if auth is not None or follow_redirects is not None:
            refused = self._per_call(request, auth, follow_redirects)
            if refused is not None:
                return Failure(InvalidRequestError(refused, request=request))
        if max_body_bytes is not UNSET:  # checked by the terminal
            request.extensions[MAX_BODY_EXTENSION] = max_body_bytes
        ctx = self._stream_context if stream else self._context
        if raw_status is not None or tags:
            ctx = ctx.replace(
                raw_status=ctx.raw_status if raw_status is None else raw_status,
                tags=MappingProxyType(dict(tags or _EMPTY)),
            )
        request.extensions[EXTENSION_KEY] = ctx
        if timeout is not UNSET:
            if not _valid_timeout(timeout):
                return Failure(
                    InvalidRequestError(
                        f"invalid timeout {timeout!r}: expected seconds > 0, None or httpx.Timeout",
                        request=request,
                    )
                )
            request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        return request

    def _per_call(
        self, request: httpx.Request, auth: object, follow_redirects: object
    ) -> str | None:
        """Apply a call's httpx-style ``auth`` and ``follow_redirects``; why not (``None``: done).

        ``auth``: a ``(username, password)`` pair or ``httpx.BasicAuth`` sends Basic
        credentials (unless the call gives an ``Authorization`` header); other httpx auth flows
        are refused: httprail's auth stages do that job. ``follow_redirects``: ``False`` keeps
        the ``Redirects`` stage from following this call's redirects; ``True`` needs one in the
        chain (``HTTP_FOLLOW_REDIRECTS=true``).
        """
        if auth is not None:
            if isinstance(auth, httpx.BasicAuth):
                header = getattr(auth, "_auth_header", None)  # all httpx keeps of the pair
                if isinstance(header, str):
                    register_secret(header.partition(" ")[2], owner=request)
            elif (
                isinstance(auth, tuple)
                and len(auth) == 2
                and all(isinstance(part, str | bytes) for part in auth)
            ):
                header = basic_credentials(*auth, owner=request)
            else:
                header = None
            if not isinstance(header, str):
                return (
                    f"auth=... takes a (username, password) pair or httpx.BasicAuth, got "
                    f"{type(auth).__name__}: use httprail's BearerAuth, ApiKeyAuth or BasicAuth "
                    "stage for other schemes"
                )
            request.headers.setdefault("Authorization", header)
        if follow_redirects is not None:
            if not isinstance(follow_redirects, bool):
                return f"follow_redirects=... must be True or False, got {follow_redirects!r}"
            if follow_redirects and not self._follows:
                return (
                    "follow_redirects=True: this client's chain has no Redirects stage "
                    "(HTTP_FOLLOW_REDIRECTS=true adds it to the default stack)"
                )
            request.extensions[FOLLOW_EXTENSION] = follow_redirects
        return None

    def _remember_again(
        self, url: str, full_url: httpx.URL, request: httpx.Request, params: object
    ) -> None:
        """Keep what ``request``'s quick path needs to build ``request`` again for ``url``."""
        if params:  # this call's own query: not what the URL alone gives
            return
        remember(self._again, url, lambda _: (full_url, list(header_items(request.headers))))

    async def send(self, request: httpx.Request) -> Outcome:
        """Send an already built request through the pipeline (anything but an
        ``httpx.Request`` is answered ``Failure(InvalidRequestError)``).

        Each send is a call of its own: a request sent before starts again at attempt 1 with
        no deadline (the stages leave the last attempt and the deadline in its context, where
        the logging stage reads them; a second send took them for its own and was given no
        retry, or failed at once on the old deadline).
        """
        if isinstance(request, httpx.Request):
            ctx = request.extensions.get(EXTENSION_KEY)
            if not isinstance(ctx, RequestContext):
                request.extensions[EXTENSION_KEY] = self._context
            elif ctx.attempt != 1 or ctx.deadline is not None:
                request.extensions[EXTENSION_KEY] = ctx.replace(attempt=1, deadline=None)
        return await self._pipeline.send(request)  # which refuses anything but a request

    def request(
        self, method: str, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]
    ) -> Coroutine[Any, Any, Outcome]:
        """Send one request; arguments as :meth:`build_request` (httpx's names).

        Awaiting the returned coroutine sends the request. The request is built when this is
        called, and the coroutine returned is the first stage's own: no frame of ours sits
        between the caller and the chain (each costs on every suspension and resumption).
        """
        if not kwargs and type(method) is str and method in _BODILESS and type(url) is str:
            # Sent before with no option: built again from that request's parts (the same
            # request _build builds, without its ~6k instructions; test_client checks both).
            again = self._again.get(url)
            if again is not None:
                extensions = {EXTENSION_KEY: self._context}
                sent = self._dispatch(request_again(method, again[0], again[1], extensions))
                return sent if type(sent) is CoroutineType else _awaited(sent)
        built = self._build(method, url, **kwargs)
        if type(built) is Failure:
            return resolved(built)
        sent = self._dispatch(built)  # the context is set: no Pipeline.send check
        return sent if type(sent) is CoroutineType else _awaited(sent)

    def get(
        self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]
    ) -> Coroutine[Any, Any, Outcome]:
        """Send a GET request (a coroutine to await, as :meth:`request`)."""
        return self.request("GET", url, **kwargs)

    def head(
        self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]
    ) -> Coroutine[Any, Any, Outcome]:
        """Send a HEAD request (a coroutine to await, as :meth:`request`)."""
        return self.request("HEAD", url, **kwargs)

    def options(
        self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]
    ) -> Coroutine[Any, Any, Outcome]:
        """Send an OPTIONS request (a coroutine to await, as :meth:`request`)."""
        return self.request("OPTIONS", url, **kwargs)

    def post(
        self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]
    ) -> Coroutine[Any, Any, Outcome]:
        """Send a POST request (a coroutine to await, as :meth:`request`)."""
        return self.request("POST", url, **kwargs)

    def put(
        self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]
    ) -> Coroutine[Any, Any, Outcome]:
        """Send a PUT request (a coroutine to await, as :meth:`request`)."""
        return self.request("PUT", url, **kwargs)

    def patch(
        self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]
    ) -> Coroutine[Any, Any, Outcome]:
        """Send a PATCH request (a coroutine to await, as :meth:`request`)."""
        return self.request("PATCH", url, **kwargs)

    def delete(
        self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]
    ) -> Coroutine[Any, Any, Outcome]:
        """Send a DELETE request (a coroutine to await, as :meth:`request`)."""
        return self.request("DELETE", url, **kwargs)

    @asynccontextmanager
    async def stream(
        self, method: str, url: httpx.URL | str, **kwargs: Any
    ) -> AsyncIterator[Outcome]:
        """Send a request whose response body is read by the caller, then closed on exit.

        Retries happen only before the response's headers arrive; once the body streams,
        a break is the caller's to see (as an httpx error while iterating).

        Example:
            >>> async with client.stream("GET", "/events") as outcome:  # doctest: +SKIP
            ...     if isinstance(outcome, Success):
            ...         async for line in outcome.unwrap().aiter_lines(): ...
        """
        outcome = await self._open_stream(method, url, **kwargs)
        try:
            yield outcome
        finally:
            if type(outcome) is Success:
                await outcome.unwrap().aclose()

    async def _open_stream(self, method: str, url: httpx.URL | str, **kwargs: Any) -> Outcome:
        """The outcome :meth:`stream` (and ``Client.stream``) yields: the head is in, the body
        is the caller's to read and close."""
        built = self._build(method, url, stream=True, **kwargs)
        return built if type(built) is Failure else await self._pipeline.send(built)

    @overload
    async def get_json(
        self, url: httpx.URL | str, model: None = None, **kwargs: Any
    ) -> Result[Any, RequestError]: ...
    @overload
    async def get_json(
        self, url: httpx.URL | str, model: type[T], **kwargs: Any
    ) -> Result[T, RequestError]: ...
    async def get_json(
        self, url: httpx.URL | str, model: Any = None, **kwargs: Any
    ) -> Result[Any, RequestError]:
        """GET ``url`` and decode the body as JSON, or as ``model`` (a pydantic model or type).

        Returns ``Failure(DecodeError)`` when the body is not JSON or does not fit ``model``,
        and ``Failure(InvalidRequestError)``, before sending, when ``model`` is not a type.
        """
        if model is not None:
            problem = model_problem(model)
            if problem is not None:
                return Failure(InvalidRequestError(f"get_json(model=...): {problem}"))
        outcome = await self.request("GET", url, **kwargs)
        return outcome.bind(lambda response: decode_json(response, model))

    def paginate(
        self, url: httpx.URL | str, *, style: PageStyle, item: Any = None, **options: Any
    ) -> AsyncIterator[Result[Any, RequestError]]:
        """Every item of every page of ``url`` as Results: :func:`httprail.services.paginate`
        with this client (``style``, ``item``, ``max_pages``, ``max_items``, request options)."""
        from .services._paginate import paginate

        return paginate(self, url, style=style, item=item, **options)

    def as_httpx_transport(self, **options: Unpack[TransportOptions]) -> PipelineTransport:
        """This client's chain as an ``httpx.AsyncBaseTransport``, for httpx-based SDKs.

        Requests carry this client's context (``provider``, ``raw_status``); its base URL,
        headers and params are not applied (the SDK builds whole requests). The transport
        shares this client's pipeline: closing either closes both. See
        :meth:`Pipeline.as_httpx_transport`.
        """
        return self._pipeline.as_httpx_transport(context=self._context, **options)

    def as_httpx2_transport(self, **options: Unpack[TransportOptions]) -> Httpx2PipelineTransport:
        """:meth:`as_httpx_transport` on ``httpx2``'s base class (see
        :meth:`Pipeline.as_httpx2_transport`)."""
        return self._pipeline.as_httpx2_transport(context=self._context, **options)

    def metrics(self) -> MetricsSnapshot:
        """Per-upstream counters and latency from the stack's ``Metrics`` stage (empty if none)."""
        stage = self._pipeline.find(Metrics)
        return stage.snapshot() if stage is not None else MappingProxyType({})

    async def health(self) -> HealthSnapshot:
        """The pipeline's :meth:`~httprail.Pipeline.health`: per upstream, the breaker's state
        and time to retry, retries left, recent error rate and latency, in flight and queued.

        Example:
            >>> snapshot = await client.health()  # doctest: +SKIP
            >>> snapshot.status, snapshot.to_dict()["upstreams"]  # doctest: +SKIP
        """
        return await self._pipeline.health()

    async def aclose(self) -> None:
        """Close the terminal and its connections."""
        await self._pipeline.aclose()


# Methods sent without a body (and without the ``Content-Length: 0`` httpx adds to bodiless
# POST, PUT and PATCH requests), which build_request builds without httpx's body encoding
# (``_fast.bodiless_request``; ``tests/unit/test_client.py`` checks it against httpx's).
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def _options_problem(tags: object, extensions: object) -> str | None:
    """What is wrong with a call's ``tags`` and ``extensions`` (``None``: nothing)."""
    for label, given in (("tags", tags), ("extensions", extensions)):
        if given is not None and not isinstance(given, Mapping):
            return f"{label}=... must be a mapping, got {type(given).__name__}"
    if isinstance(tags, Mapping) and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        return "tags=... must map str to str"
    return None


async def _awaited(outcome: Awaitable[Outcome]) -> Outcome:
    # A stage whose ``__call__`` returns another awaitable: callers get a coroutine regardless
    # (``asyncio.create_task`` takes only coroutines).
    return await outcome


def _default_terminal(settings: HttpSettings) -> TerminalPlugin:
    """The terminal ``settings.terminal`` names (``HTTP_TERMINAL``), else ``AiohttpTerminal``
    (HTTP/1.1), or ``HttpxTerminal`` when HTTP/2 is asked."""
    if settings.terminal is not None:
        from ._discovery import default_registry
        from ._stack import _build, _lookup

        where = "HTTP_TERMINAL"
        spec = _lookup(default_registry(), "transports", settings.terminal, where)
        built = _build(spec, {}, settings, None, f"{where}={settings.terminal}")
        if not isinstance(built, TerminalPlugin):
            raise ConfigError(f"{where}={settings.terminal} built {built!r}, not a terminal")
        return built
    if settings.http2:
        from .terminals._httpx import HttpxTerminal  # imported only for HTTP/2

        return HttpxTerminal(settings)
    return AiohttpTerminal(settings)


def _url_problem(url: httpx.URL) -> str | None:
    """Why ``url`` cannot be sent over HTTP, or ``None``."""
    if url.scheme not in ("http", "https"):
        return f"unsupported scheme {url.scheme!r} (http or https)" if url.scheme else "no scheme"
    host = url.host
    if not host:
        return "no host"
    if "%" in host or any(ch.isspace() for ch in host):
        return f"invalid host {host!r}"
    port = url.port
    if port is not None and not 0 < port < 65536:
        return f"port {port} is out of range (1-65535)"
    return None


def _valid_timeout(value: object) -> bool:
    if value is None or isinstance(value, httpx.Timeout):
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value > 0
