"""``AiohttpTerminal``: requests sent by one pooled ``aiohttp.ClientSession``, no httpx transport.

aiohttp is an optional dependency (``pip install 'httprail[aiohttp]'``), imported when the
terminal is built, never when httprail is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import io
import os
import re
import ssl
import sys
import warnings
import weakref
from asyncio import _get_running_loop as _running_loop
from collections.abc import AsyncIterator
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx

from .._cache import remember, url_text
from .._deadlines import DeadlineQueue, current_task_of
from .._errors import ConfigError
from .._fast import header_items, read_plain
from .._fast import response as new_response
from .._settings import HttpSettings
from .._tls import Proxies, resolve_tls
from ._aiohttp_direct import DirectRoad, plain_url
from ._gated import DEFAULT_MAX_ERROR_BODY
from ._lean import CLOSED_UNDER, LeanTerminal, http_version, import_backend, timeout_of
from ._limits import BodyTooLarge, counted, settle
from ._loops import release_socket
from ._mocked import mocking

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpTerminal"]

_modules = sys.modules

_OS_ERROR_NAMED = re.compile(
    r"\b(ConnectionResetError|ConnectionAbortedError|BrokenPipeError|ClientOSError|OSError)\("
)

# Bigger request bodies are handed to aiohttp as a file (it warns about, and blocks on, raw bytes).
_LARGE_BODY = 1024 * 1024

# Request headers aiohttp adds on its own when a request lacks them; the httpx request says what
# to send, so the missing ones are named to aiohttp as "skip". Only then: aiohttp builds two extra
# header dicts per request when given a skip list (~17 µs per request in the throughput loop).
_AUTO_HEADERS = (b"accept", b"accept-encoding", b"user-agent")
_CONTENT_TYPE_SKIPPED = ("Content-Type",)
# ``response.version`` of the usual versions as httpx stores them (others: ``http_version``).
_BY_VERSION = {(1, 1): b"HTTP/1.1", (1, 0): b"HTTP/1.0"}
# Methods for which aiohttp adds a Content-Type even without a body.
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "CONNECT", "TRACE"})


class _HeaderSet(NamedTuple):
    """A request's headers for aiohttp, and the automatic headers aiohttp must not add."""

    headers: Any  # multidict.CIMultiDictProxy[str]
    skip: tuple[str, ...] | None  # without a body
    skip_with_body: tuple[str, ...] | None  # also Content-Type, unless the request has one


class _AiohttpBody(httpx.AsyncByteStream):
    """The body of an aiohttp response, raising httpx exceptions; closing frees the connection.

    ``read_timeout``: the longest wait for each chunk, when the terminal keeps the read timeout
    itself (``None``: aiohttp's ``sock_read`` does, or there is none).
    """

    __slots__ = ("_read_timeout", "_response", "_terminal")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        terminal: AiohttpTerminal,
        read_timeout: float | None,
    ) -> None:
        self._response = response
        self._terminal = terminal
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        each = self._read_timeout
        while True:
            try:
                if each is None:
                    chunk = await content.readany()
                else:
                    async with asyncio.timeout(each):
                        chunk = await content.readany()
            except self._terminal._errors as exc:
                arrived = _arrived(content)
                if arrived:  # what came before the break is the caller's, as on other terminals
                    yield arrived
                raise self._terminal.translate_or_wrap(exc) from exc
            except RuntimeError as exc:  # pragma: no cover - aiohttp's "Connection closed."
                # (the terminal closed under a read _end_bodies_in_flight could not reach)
                raise httpx.ReadError(
                    f"the connection was closed while the response was arriving ({exc})"
                ) from exc
            if not chunk:
                return
            yield chunk

    def release(self) -> None:
        """Give the connection back to the pool (body read to the end) or close it."""
        response = self._response
        if response.content.at_eof():
            response.release()  # the connection goes back to the pool
        else:
            response.close()  # a half-read body: the connection cannot be reused

    async def aclose(self) -> None:
        self.release()


def _arrived(content: aiohttp.StreamReader) -> bytes:
    """The body bytes aiohttp holds but has not handed out, once the connection broke.

    aiohttp's reader raises a broken connection's error before it hands out the bytes that came
    before the break (``readany`` checks the error first): a consumer slower than the network
    lost the last piece of a stream cut mid-way (an event of an SSE stream). Those bytes are
    taken from its buffer here; where aiohttp keeps them differently, nothing is taken and the
    error is raised as before.
    """
    if not getattr(content, "_buffer", None):
        return b""
    try:
        arrived = content._read_nowait(-1)
    except Exception:  # noqa: BLE001 - aiohttp's internals differ: the break alone is raised
        return b""
    return arrived if isinstance(arrived, bytes) else b""


def _end_bodies_in_flight(connector: object, aiohttp: Any) -> None:
    """Fail the bodies still arriving on ``connector``'s connections, which it is about to
    close: aiohttp closes them under a read that then waits on (raw aiohttp forever; here
    until the read timeout, reported as one). Where aiohttp keeps them differently, nothing is
    done and the read ends on its timeout as before."""
    for protocol in list(getattr(connector, "_acquired", ())):
        payload = getattr(protocol, "_payload", None)
        if payload is not None and not payload.is_eof():
            with contextlib.suppress(Exception):
                payload.set_exception(aiohttp.ClientConnectionError(CLOSED_UNDER))


HTTP2_REFUSED = (
    "AiohttpTerminal speaks HTTP/1.1 only, but HTTP/2 was asked for (http2=True, "
    "HTTP_HTTP2=true): use HttpxTerminal (HTTP/2 by ALPN over TLS), or leave http2 unset"
)


class AiohttpTerminal(LeanTerminal):
    """Send requests over one lazily created ``aiohttp.ClientSession`` (HTTP/1.1).

    It speaks httpx ``Request``/``Response`` to the pipeline but sends with aiohttp directly,
    which is several times faster than httpcore under concurrency (see ``docs/terminals.md``).
    Limits and timeouts come from :class:`HttpSettings`: at most ``max_connections`` requests
    in flight (others queue here, up to ``timeout_pool``), idle connections kept for
    ``keepalive_expiry`` seconds, ``timeout_connect`` for the TCP/TLS connect and
    ``timeout_read`` between two reads. A request's own ``extensions["timeout"]`` wins.
    Every aiohttp, asyncio and OS exception becomes the same error :class:`HttpxTerminal` gives
    for the same fault. Bodies are not decompressed by aiohttp; the ``httpx.Response`` does it,
    as with httpx.

    Limits of the backend: no HTTP/2 (``http2=True`` is a ``ConfigError``), no separate write
    timeout (a stalled
    upload ends on the read timeout), and no cap on the number of idle connections
    (``max_keepalive``).

    Args:
        settings: timeouts and pool limits (defaults: ``HttpSettings()``).
        max_error_body: how many bytes of an error response's body to keep.
        verify: TLS verification, winning over ``HTTP_VERIFY``/``HTTP_CA_BUNDLE``: ``True``,
            ``False``, a CA bundle path or an ``SSLContext`` (default: from the settings, which
            also give the client certificate, the proxy and ``trust_env``; an http:// or
            https:// proxy only: a SOCKS proxy is a ``ConfigError``).

    Raises:
        ConfigError: aiohttp is not installed, or the settings ask for HTTP/2.

    Example:
        >>> client = AsyncClient(url, terminal=AiohttpTerminal(settings))  # doctest: +SKIP
    """

    name = "aiohttp"
    speaks_http2 = False
    _short_road = True
    """Whether requests take aiohttp's steps directly where that does the same
    (:class:`DirectRoad`); off, every request goes through ``ClientSession.request`` (the
    tests check both roads, the benchmarks measure both)."""

    def __init__(
        self,
        settings: HttpSettings | None = None,
        *,
        max_error_body: int = DEFAULT_MAX_ERROR_BODY,
        verify: bool | str | ssl.SSLContext | None = None,
    ) -> None:
        self._aiohttp = import_backend("aiohttp", "aiohttp")
        self._url = import_backend("yarl", "aiohttp").URL
        super().__init__(settings, max_error_body=max_error_body)
        if self.settings.http2:
            raise ConfigError(HTTP2_REFUSED)
        self._verify = resolve_tls(self.settings, verify, "aiohttp").ssl_context("aiohttp")
        proxies = Proxies(self.settings, "aiohttp", schemes=("http", "https"))
        self._proxies = None if proxies.never else proxies  # chosen here: no trust_env/.netrc
        self._session: aiohttp.ClientSession | None = None
        self._direct: DirectRoad | None = None  # the short road, when it does the same
        self._urls: dict[str, tuple[Any, bool] | None] = {}
        self._last_url: tuple[httpx.URL | None, tuple[Any, bool]] = (None, (None, False))
        self._header_sets: dict[tuple[tuple[bytes, bytes, bytes], ...], _HeaderSet | None] = {}
        self._last_headers: tuple[list[tuple[bytes, bytes, bytes]], _HeaderSet | None] = ([], None)
        self._multidict = import_backend("multidict", "aiohttp")
        settings = self.settings
        self._connect = settings.timeout_connect
        self._read_timeout = settings.timeout_read
        # aiohttp keeps the read timeout (``sock_read``) of uploads and of requests with their
        # own timeouts. For the rest, the terminal keeps it: ``sock_read`` arms and cancels two
        # timer handles per response (35k of the 468k instructions of a default-stack request).
        self._default_timeout = self._client_timeout(self._connect, self._read_timeout)
        self._watched_timeout = self._client_timeout(self._connect, None)
        self._head_queue: DeadlineQueue | None = None
        a = self._aiohttp
        # What a body read can raise: aiohttp's own errors, the OS's, and timeouts.
        self._errors: tuple[type[Exception], ...] = (a.ClientError, OSError, TimeoutError)
        # aiohttp < 3.10 has neither class (it raises ServerTimeoutError / InvalidURL).
        self._connect_timeout_class: type[Exception] | None = getattr(
            a, "ConnectionTimeoutError", None
        )
        self._non_http_class: type[Exception] | None = getattr(a, "NonHttpUrlClientError", None)

    def __repr__(self) -> str:
        return f"AiohttpTerminal(max_connections={self.settings.max_connections})"

    def _client_timeout(self, connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
        # ``connect`` (pool wait + connect) is a backstop only: the gate in front keeps aiohttp's
        # pool from ever being waited on.
        backstop = None if connect is None else connect + self.settings.timeout_pool
        timeout: aiohttp.ClientTimeout = self._aiohttp.ClientTimeout(
            total=None, connect=backstop, sock_connect=connect, sock_read=read
        )
        return timeout

    def _yarl_url(self, url: httpx.URL) -> tuple[Any, bool]:
        """``url`` as a ``yarl.URL``, built once per distinct URL (bounded cache), and whether
        it may take the short road (:func:`plain_url`).

        aiohttp computes and keeps a dozen derived values on the URL object of each request
        (host, port, origin...); a URL object shared by the requests that go to the same URL
        saves all of that, ~25 µs per request. The client hands out one ``httpx.URL`` object
        per distinct URL, so the last one seen is also kept by identity, and the text of each
        comes from ``url_text``.
        """
        last = self._last_url
        if last[0] is url:
            return last[1]
        converted = remember(self._urls, url_text(url), self._parse_url)
        self._last_url = (url, converted)
        return converted

    def _parse_url(self, url: str) -> tuple[Any, bool]:
        parsed = self._url(url, encoded=True)
        return parsed, plain_url(parsed)

    def _headers_for(self, request: httpx.Request) -> _HeaderSet:
        """The request headers as aiohttp takes them, converted once per distinct set.

        Most requests of a client carry the same headers: the last set is compared as it is
        (a list compare, ~0.1 µs), others are looked up in a bounded cache; an immutable
        ``CIMultiDictProxy`` saves decoding them on every request.
        """
        items = header_items(request.headers)
        last, converted = self._last_headers
        if converted is None or items != last:
            converted = remember(self._header_sets, tuple(items), self._convert_headers)
            self._last_headers = (list(items), converted)
        return converted

    def _convert_headers(self, items: tuple[tuple[bytes, bytes, bytes], ...]) -> _HeaderSet:
        # One spelling per name: aiohttp keeps a repeated header only when every copy is
        # spelled alike (``X-A`` then ``x-a`` would leave just the second).
        spelling: dict[bytes, str] = {}
        pairs = []
        for name, folded, value in items:
            if folded != b"transfer-encoding":
                text = spelling.setdefault(folded, name.decode("latin-1"))
                pairs.append((text, value.decode("latin-1")))
        multidict = self._multidict
        skip = tuple(name.decode() for name in _AUTO_HEADERS if name not in spelling)
        return _HeaderSet(
            multidict.CIMultiDictProxy(multidict.CIMultiDict(pairs)),
            skip or None,
            (*skip, *_CONTENT_TYPE_SKIPPED) if b"content-type" not in spelling else skip or None,
        )

    def _ssl(self) -> bool | ssl.SSLContext:
        return self._verify

    @property
    def session(self) -> aiohttp.ClientSession:
        """The underlying ``aiohttp.ClientSession`` (created on first use, in a running loop)."""
        session = self._session
        if session is None:
            a = self._aiohttp
            settings = self.settings
            expiry = settings.keepalive_expiry
            connector = _watching_connector(a)(
                limit=settings.max_connections,
                limit_per_host=0,
                ssl=self._ssl(),
                force_close=expiry == 0,
                **({"keepalive_timeout": expiry} if expiry > 0 else {}),
            )
            # Weakly: a terminal nobody holds is then freed (and its __del__ closes the
            # connector) before the connector could be collected unclosed.
            connector.terminal = weakref.ref(self)
            session = a.ClientSession(
                connector=connector,
                timeout=self._default_timeout,
                auto_decompress=False,
                cookie_jar=a.DummyCookieJar(),
                trust_env=False,
            )
            # aiohttp quietly sends an idempotent request a second time when the connection
            # drops (ClientOSError, ServerDisconnectedError); retrying is Retry's job, counted
            # and budgeted, so the upstream must see one request per attempt.
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            self._session = session
            self._direct = DirectRoad.of(a, session) if self._short_road else None
        return session

    def _connecting(self, task: asyncio.Task[Any] | None) -> DeadlineQueue | None:
        """A new connection is being made for ``task``: its read timeout pauses while the
        connect timeout applies. Returns the queue it was paused in, if it had one."""
        queue = self._head_queue
        if task is None or queue is None or task not in queue:
            return None
        queue.finish(task)
        return queue

    def _connected(self, task: asyncio.Task[Any], queue: DeadlineQueue) -> None:
        """``task`` has its new connection: its read timeout starts now."""
        queue.add(task, _monotonic() + self._read_timeout)

    async def _open(self, request: httpx.Request) -> httpx.Response:
        if "respx.mocks" in _modules or "pytest_httpx2" in _modules:  # a test may mock httpx
            library = mocking()
            if library is not None:
                return await self._open_mocked(library, request)
        data: Any = getattr(request, "_content", None)  # ``request.content``, without its frame
        if data is None:  # not read (a streamed body), or an httpx that keeps it elsewhere
            try:
                data = request.content
            except httpx.RequestNotRead:
                data = _body(request.stream)  # type: ignore[arg-type]
        if not data:
            data = None
        elif type(data) is bytes and len(data) > _LARGE_BODY:
            data = io.BytesIO(data)  # aiohttp writes big bytes bodies in one go otherwise
        if "timeout" in request.extensions:
            timeout = self._client_timeout(
                timeout_of(request, "connect", self._connect),
                timeout_of(request, "read", self._read_timeout),
            )
        elif data is None:
            timeout = self._watched_timeout
        else:
            timeout = self._default_timeout
        # The last request's header set and URL, compared here (``_headers_for`` and
        # ``_yarl_url`` are called for others: a Python call each saved on the rule).
        items = header_items(request.headers)
        last_items, headers = self._last_headers
        if headers is None or items != last_items:
            headers = self._headers_for(request)
        url = request.url
        last_url = self._last_url
        yarl_url, plain = last_url[1] if last_url[0] is url else self._yarl_url(url)
        method = request.method
        session = self._session
        if session is None:
            session = self.session
        skip = (
            headers.skip if data is None and method in _BODYLESS_METHODS else headers.skip_with_body
        )
        proxy = None if self._proxies is None else self._proxies.for_url(url)
        # The short road (aiohttp's own steps, without ``ClientSession._request``'s work around
        # them: ~60k instructions per request) where it does what the session's road does.
        direct = self._direct
        if plain and proxy is None and direct is not None and direct.usable():
            sending = direct.send(method, yarl_url, headers.headers, skip, data, timeout)
        else:
            sending = session.request(
                method,
                yarl_url,
                headers=headers.headers,
                skip_auto_headers=skip,
                data=data,
                allow_redirects=False,
                timeout=timeout,
                proxy=proxy,
            )
        watched = timeout is self._watched_timeout
        loop = _running_loop() if watched else None
        task = None if loop is None else current_task_of(loop)
        if loop is None or task is None:
            response = await sending
        else:
            # The read timeout of a bodiless request runs from here to the head: the request
            # is written at once on a pooled connection, and a new connection pauses it while
            # connecting (``_connecting``/``_connected``), so it counts what ``sock_read``
            # counts. Every such request has the same budget: one DeadlineQueue watches all.
            queue = self._head_queue
            if queue is None or queue.loop is not loop:
                queue = self._head_queue = DeadlineQueue(loop)
            queue.add(task, _monotonic() + self._read_timeout)  # in order: one budget for all
            cancelling = task.cancelling()
            try:
                response = await sending
            except asyncio.CancelledError:
                if queue.finish(task) and task.uncancel() <= cancelling:
                    raise httpx.ReadTimeout("no response head within the read timeout") from None
                raise
            except BaseException:
                queue.finish(task)
                raise
            # ``queue.finish(task)``, called only when the task was not watched any more
            if queue.watched.pop(task, None) is None and queue.finish(task):  # pragma: no cover
                task.uncancel()  # the head came as the timer fired: it wins
        try:
            version = response.version
            reason = response.reason or ""
            try:  # aiohttp decodes the status line as UTF-8 with surrogateescape: undo it
                reason_bytes = reason.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:  # pragma: no cover - a lone surrogate: not from aiohttp
                reason_bytes = reason.encode("utf-8", "replace")
            if not version:
                known = b"HTTP/1.1"
            else:
                known = _BY_VERSION.get(version) or http_version(version.major, version.minor)
            extensions = {
                "http_version": known,
                "reason_phrase": reason_bytes,
            }
            body = _AiohttpBody(response, self, self._read_timeout if watched else None)
            return new_response(response.status, response.raw_headers, body, request, extensions)
        except BaseException:  # whatever the head held, the connection is not left open
            response.close()
            raise

    async def _read(self, response: httpx.Response, limit: int | None) -> None:
        stream = response.stream
        if not isinstance(stream, _AiohttpBody):  # pragma: no cover - _open always sets it
            await super()._read(response, limit)
            return
        raw = stream._response
        encoded = "Content-Encoding" in raw.headers
        if encoded and limit is not None:
            # Counted as it is inflated, chunk by chunk (a small body can inflate to gigabytes).
            await super()._read(response, limit)
            return
        # The whole body in one call (aiohttp reads it faster than chunk by chunk) when it is
        # known to fit; a body that had all arrived with the head is read without any timer.
        try:
            if raw.content.is_eof() or (
                stream._read_timeout is None and _declared_fit(raw, limit, response)
            ):
                try:
                    body = await raw.read()
                except self._errors as exc:
                    raise self.translate_or_wrap(exc) from exc
            else:
                body = await _gathered(stream, limit, response)
        finally:
            if raw.content.at_eof():  # stream.release(), without its frame
                raw.release()  # the connection goes back to the pool
            else:
                raw.close()
        if encoded or (limit is not None and len(body) > limit):
            settle(response, body, limit, encoded)
        else:
            read_plain(response, body)  # what settle does with it

    def translate_or_wrap(self, exc: Exception) -> Exception:
        return self._translate(exc) or httpx.TransportError(f"{type(exc).__name__}: {exc}")

    def _translate(self, exc: Exception) -> Exception | None:
        a = self._aiohttp
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        translated: Exception
        if isinstance(exc, httpx.HTTPError):
            return None
        if isinstance(exc, a.ServerTimeoutError):
            kind = self._connect_timeout_class
            connect = isinstance(exc, kind) if kind else str(exc).startswith("Connection timeout")
            translated = httpx.ConnectTimeout(text) if connect else httpx.ReadTimeout(text)
        elif isinstance(exc, a.ClientConnectorError):
            translated = httpx.ConnectError(_connect_failure(exc))
        elif isinstance(exc, a.ServerDisconnectedError):
            translated = httpx.RemoteProtocolError(text)
        elif isinstance(exc, a.ClientPayloadError):
            broken = _os_error_in(exc)
            translated = httpx.ReadError(text) if broken else httpx.RemoteProtocolError(text)
        elif isinstance(exc, a.TooManyRedirects):
            translated = httpx.TooManyRedirects(text)
        elif isinstance(exc, a.ClientResponseError):  # a head that is not valid HTTP
            translated = httpx.RemoteProtocolError(_bad_head(exc))
        elif self._non_http_class is not None and isinstance(exc, self._non_http_class):
            translated = httpx.UnsupportedProtocol(text)
        elif isinstance(exc, a.InvalidURL):
            translated = httpx.InvalidURL(text)
        elif isinstance(exc, a.ClientOSError) and exc.errno == errno.EPIPE:
            translated = httpx.WriteError(text)
        elif isinstance(exc, a.ClientConnectionError):
            translated = httpx.ReadError(text)
        elif isinstance(exc, a.ClientError):
            translated = httpx.TransportError(text)
        elif isinstance(exc, TimeoutError):
            translated = httpx.ReadTimeout(text)
        elif isinstance(exc, ConnectionRefusedError):
            translated = httpx.ConnectError(text)
        elif isinstance(exc, OSError):
            translated = httpx.ReadError(text)
        elif isinstance(exc, ValueError):  # aiohttp refuses a header or method as given
            translated = httpx.LocalProtocolError(text)
        else:
            return None
        translated.__cause__ = exc
        return translated

    async def _close_backend(self) -> None:
        session, self._session = self._session, None
        self._direct = None
        self._head_queue = None
        if session is not None:
            _end_bodies_in_flight(session.connector, self._aiohttp)
            await session.close()

    def _forget_backend(self) -> None:
        # A copy for another loop (maybe another thread) gets its own session and caches.
        self._session = None
        self._direct = None
        self._head_queue = None
        self._urls = {}
        self._last_url = (None, (None, False))
        self._header_sets = {}
        self._last_headers = ([], None)

    def __del__(self) -> None:
        # Never closed: say so in httprail's words (aiohttp's own "Unclosed client session" /
        # "Unclosed connector" would name objects the user never made) and free the sockets.
        session = getattr(self, "_session", None)
        if session is not None and not session.closed:
            warnings.warn(
                f"{self!r} of an httprail client was never closed: use 'async with "
                "AsyncClient(...)' or 'await client.aclose()'",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )
            with contextlib.suppress(Exception):
                self._discard_backend()

    def _discard_backend(self) -> None:
        session = self._session
        self._forget_backend()
        connector = None if session is None else session.connector
        if connector is None or connector.closed:
            return
        if connector._loop.is_closed():  # its sockets, closed without the loop
            for entries in connector._conns.values():
                for protocol, _ in entries:
                    release_socket(protocol.transport)
            for protocol in connector._acquired:
                release_socket(protocol.transport)
        connector._close()  # marks it (and the session) closed; a live loop closes the rest


@functools.cache
def _watching_connector(aiohttp_module: Any) -> Any:
    """aiohttp's ``TCPConnector``, telling the terminal while it makes a new connection.

    ``_create_connection`` is the hook every aiohttp connector implements to open a connection
    (it runs only for new ones, not for pooled ones).
    """

    class WatchingConnector(aiohttp_module.TCPConnector):  # type: ignore[misc]
        terminal: weakref.ref[AiohttpTerminal] | None = None

        async def _create_connection(self, *args: Any, **kwargs: Any) -> Any:
            terminal = None if self.terminal is None else self.terminal()
            if terminal is None:  # pragma: no cover - set as soon as it is built
                return await super()._create_connection(*args, **kwargs)
            task = asyncio.current_task()
            paused = terminal._connecting(task)
            connection = await super()._create_connection(*args, **kwargs)
            if paused is not None and task is not None:
                terminal._connected(task, paused)
            return connection

    return WatchingConnector


def _connect_failure(exc: Any) -> str:
    """``cannot connect to HOST:PORT: <reason>`` for aiohttp's ``ClientConnectorError``
    (whose own text says ``ssl:default`` even for plain http and repeats the address)."""
    reason = exc.os_error
    code = getattr(reason, "errno", None)
    if isinstance(code, int) and code > 0:
        why = os.strerror(code).lower()
    else:
        why = " ".join(str(reason).split()) or type(reason).__name__
    return f"cannot connect to {exc.host}:{exc.port}: {why}"


def _bad_head(exc: Any) -> str:
    """What was wrong with a response head that is not HTTP, without the ``400`` aiohttp puts
    in front (a status it made up: the server sent none) or its caret lines."""
    message = str(getattr(exc, "message", "") or "")
    lines = [line.strip() for line in message.splitlines() if line.strip().strip("^")]
    detail = " ".join(lines) or "no detail"
    return f"the response is not valid HTTP: {detail}"


def _os_error_in(exc: BaseException) -> bool:
    """Whether an OS-level error (a reset, say) is behind ``exc``.

    aiohttp names the connection error of a payload cut short only in the message
    (``"Response payload is not completed: <...>. ConnectionResetError(104, ...)"``).
    """
    if _OS_ERROR_NAMED.search(str(exc)):
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            return True
        current = current.__cause__ or current.__context__
    return False


def _declared_fit(raw: aiohttp.ClientResponse, limit: int | None, response: httpx.Response) -> bool:
    """Whether the body is known to fit ``limit`` (by its ``Content-Length``; no limit: yes).

    Raises:
        BodyTooLarge: the declared length is over the limit (nothing is read).
    """
    if limit is None:
        return True
    length = raw.content_length
    if length is not None and length > limit:
        raise BodyTooLarge(request=response.request, limit=limit)
    return length is not None


async def _gathered(stream: _AiohttpBody, limit: int | None, response: httpx.Response) -> bytes:
    """The body, chunk by chunk (each read timed), stopping past ``limit`` bytes."""
    if _declared_fit(stream._response, limit, response) or limit is None:
        return b"".join([chunk async for chunk in stream])
    return b"".join([chunk async for chunk in counted(stream, limit, response.request)])


async def _body(stream: httpx.AsyncByteStream) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk
