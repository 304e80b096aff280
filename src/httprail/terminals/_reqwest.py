"""``PyreqwestTerminal``: requests sent by Rust's reqwest/hyper through pyreqwest, directly.

pyreqwest is an optional dependency (``pip install 'httprail[reqwest]'``), imported when the
terminal is built, never when httprail is imported. Its exceptions become httpx ones
(``_reqwest_errors``), so the error tree comes out as from every other terminal.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import time
from asyncio import get_running_loop as _running_loop
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import httpx

from .._cache import remember, url_text
from .._context import EXTENSION_KEY, RequestContext
from .._deadlines import current_task_of
from .._errors import ConfigError, ConnectionRotatedError, RequestError
from .._fast import header_items, read_plain, response_of
from .._settings import HttpSettings
from .._tls import Proxies, resolve_tls
from ._gated import DEFAULT_MAX_ERROR_BODY, ReadWhole
from ._lean import LeanTerminal, import_backend, timeout_of
from ._limits import MAX_BODY_EXTENSION, BodyTooLarge, counted, settle
from ._mocked import mocking
from ._reqwest_errors import Rotations, cut_before_head, stream_cut, translate
from ._reqwest_thread import keep_runtime_thread_state

if TYPE_CHECKING:
    from pyreqwest.client import Client
    from pyreqwest.request import StreamRequest
    from pyreqwest.response import Response

__all__ = ["PyreqwestTerminal"]

_modules = sys.modules
MAX_HEAD = 64 * 1024
"""The largest response head taken (names, values and their separators), as h11 allows."""
_VERSIONS = {"HTTP/1.1": b"HTTP/1.1", "HTTP/2.0": b"HTTP/2", "HTTP/1.0": b"HTTP/1.0"}
_HTTP2 = _VERSIONS["HTTP/2.0"]
_NOTHING = httpx.ByteStream(b"")  # the stream a response is built with before its body is put in
# pyreqwest reads up to 64 KiB of the body (``streamed_read_buffer_limit``) before it hands the
# head over. A body read whole keeps that: most bodies then come in the same hand-over from
# pyreqwest's thread as the head (raw pyreqwest at c=64: 5,770 rps with it, 4,681 without). A
# stream asks for none: an event stream would wait for 64 KiB of events. The price: a request
# cancelled before that read ends is abandoned, not aborted (see docs/terminals.md).
# Request bodies at most this big are handed over as bytes; bigger ones as a stream of pieces
# (reqwest takes bytes without copying, but a stream lets a huge upload go out as it is read).
_PIECE = 1024 * 1024


# After a client is closed, reqwest's runtime thread still drops its connections and tasks for a
# moment, and some hold Python objects. If the interpreter is finalizing by then, that thread
# takes the GIL of a dying interpreter: "Fatal Python error: PyGILState_Release" (seen in 3 of
# 61 runs of a closed client at exit, none of 41 with 0.1 s between the close and the exit). So
# an exit less than this long after the last close waits for the rest (``_settle``).
SETTLE = 0.1
# How long ``aclose()`` waits for the runtime thread to close the dropped client's connections.
CLOSE_GRACE = 0.05
_closed_at: list[float] = []


def _settle() -> None:
    """At exit: wait until :data:`SETTLE` seconds have passed since the last client closed."""
    if _closed_at:
        left = _closed_at[0] + SETTLE - time.monotonic()
        if left > 0:
            time.sleep(left)


def _closed_now() -> None:
    if not _closed_at:
        atexit.register(_settle)
        _closed_at.append(0.0)
    _closed_at[0] = time.monotonic()


T = TypeVar("T")


async def _resisting(awaitable: Awaitable[T]) -> T:
    """``await awaitable``, raising ``CancelledError`` if pyreqwest swallowed one.

    pyreqwest's futures can complete with their result when the task awaiting them is
    cancelled at the same moment (about 1 cancel in 40 at a random await): the caller must
    still see ``CancelledError``, so each await of ours checks the task's cancel count.
    """
    task = current_task_of(_running_loop())
    before = task.cancelling() if task is not None else 0
    result = await awaitable
    if task is not None and task.cancelling() > before:  # swallowed (see _resisting)
        raise asyncio.CancelledError
    return result


class _ReqwestBody(httpx.AsyncByteStream):
    """The body of a pyreqwest response, raising httpx exceptions; closing frees the connection.

    ``read_timeout``: the longest wait for each chunk when the terminal keeps the read timeout
    itself (a request with its own ``extensions["timeout"]``); ``None``: reqwest keeps it.
    """

    __slots__ = ("_read_timeout", "_request", "_response", "_terminal", "head")

    def __init__(
        self,
        request: StreamRequest,
        response: Response,
        terminal: PyreqwestTerminal,
        read_timeout: float | None,
        head: _Head | None = None,
    ) -> None:
        self._request: StreamRequest | None = request
        self._response: Response | None = response
        self._terminal = terminal
        self._read_timeout = read_timeout
        self.head = head

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self._reader()
        each = self._read_timeout
        errors = self._terminal._errors
        while True:
            try:
                if each is None:
                    chunk = await _resisting(reader.read_chunk())
                else:
                    async with asyncio.timeout(each):
                        chunk = await _resisting(reader.read_chunk())
            except TimeoutError as exc:
                if isinstance(exc, errors):  # reqwest's own timeout (a TimeoutError subclass)
                    raise self._terminal.translate(exc) from exc
                raise httpx.ReadTimeout("no data within the read timeout") from None
            except errors as exc:
                raise self._terminal._body_error(exc) from exc
            if chunk is None:
                return
            yield bytes(chunk)

    async def read_all(self) -> bytes:
        """The rest of the body in one call (reqwest gathers it; used when it is known to fit)."""
        try:
            each = self._read_timeout
            if each is None:
                return bytes(await _resisting(self._reader().bytes()))
            return b"".join([chunk async for chunk in self])
        except self._terminal._errors as exc:
            raise self._terminal._body_error(exc) from exc

    def _reader(self) -> Any:
        """The response's body reader.

        Raises:
            httpx.StreamClosed: the body was closed (its response is let go then).
        """
        response = self._response
        if response is None:
            raise httpx.StreamClosed
        return response.body_reader

    async def aclose(self) -> None:
        request, self._request = self._request, None
        # the pyreqwest response is let go now: the httpx response that holds this body is
        # often in a reference cycle (the gated stream points back at it), and until the cyclic
        # GC came by, each closed response kept reqwest's read buffers (~0.4 MiB each)
        self._response = None
        if request is not None:
            await request.__aexit__(None, None, None)  # drops the body: reqwest frees the slot


class PyreqwestTerminal(LeanTerminal):
    """Send requests over one lazily built pyreqwest ``Client`` (Rust reqwest over hyper).

    It speaks httpx ``Request``/``Response`` to the pipeline like the other terminals; the
    connection pool, TLS (rustls) and HTTP/1.1 and HTTP/2 run in Rust, on pyreqwest's Tokio
    runtime thread. Limits and timeouts come from :class:`HttpSettings`: at most
    ``max_connections`` requests in flight (others queue here, up to ``timeout_pool``), at most
    ``max_keepalive`` idle connections per host kept for ``keepalive_expiry`` seconds,
    ``timeout_connect`` for the TCP/TLS connect and ``timeout_read`` between two reads. A
    request's own ``extensions["timeout"]`` wins. Redirects are returned, bodies are not
    decompressed by reqwest (the ``httpx.Response`` does it, as with httpx), no cookie jar,
    no ``Referer``.

    HTTP/2: offered by ALPN over TLS unless ``settings.http2`` is ``False``; ``h2c=True`` speaks
    HTTP/2 with prior knowledge on every connection (``http://`` as h2c; an ``https://`` server
    must then speak HTTP/2). A request on an HTTP/2 connection the server ends after answering
    on it (a rotation) fails as ``ConnectionRotatedError``; one it refused unprocessed (GOAWAY,
    ``REFUSED_STREAM``) hyper sends again by itself. Differences from the other terminals are
    listed in ``docs/terminals.md``.

    Args:
        settings: timeouts, pool limits, TLS and proxy (defaults: ``HttpSettings()``).
        max_error_body: how many bytes of an error response's body to keep.
        verify: TLS verification, winning over ``HTTP_VERIFY``/``HTTP_CA_BUNDLE``: ``True``,
            ``False`` or a CA bundle path. An ``ssl.SSLContext`` is a ``ConfigError``: reqwest
            does its own TLS (rustls) and would drop it.
        h2c: HTTP/2 with prior knowledge (cleartext h2c on ``http://``).

    Raises:
        ConfigError: pyreqwest is not installed; an ``SSLContext``; ``h2c`` with ``http2=False``;
            a CA bundle, certificate or key that cannot be loaded.
    """

    name = "reqwest"
    speaks_http2 = True

    def __init__(
        self,
        settings: HttpSettings | None = None,
        *,
        max_error_body: int = DEFAULT_MAX_ERROR_BODY,
        verify: bool | str | None = None,
        h2c: bool = False,
    ) -> None:
        self._pyreqwest: Any = import_backend("pyreqwest.client", "reqwest")
        exceptions = import_backend("pyreqwest.exceptions", "reqwest")
        self._proxy_module: Any = import_backend("pyreqwest.proxy", "reqwest")
        super().__init__(settings, max_error_body=max_error_body)
        settings = self.settings
        if h2c and settings.http2 is False:
            raise ConfigError(
                "PyreqwestTerminal: h2c=True asks for HTTP/2 but the settings say http2=False "
                "(HTTP_HTTP2=false): drop one of them"
            )
        self._h2c = h2c
        self._tls = resolve_tls(settings, verify, "reqwest", accepts_context=False)
        self._tls.ssl_context("reqwest")  # loads the files: a bad one is a ConfigError now
        self._identity = _identity(self._tls.client_cert, self._tls.client_key)
        self._ca = _read(self._tls.ca_bundle, "HTTP_CA_BUNDLE")
        _check_pems(self._pyreqwest, self._ca, self._identity)
        self._proxies = Proxies(settings, "reqwest", schemes=("http", "https", "socks5"))
        self._errors: tuple[type[Exception], ...] = (exceptions.PyreqwestError,)
        self._connect = settings.timeout_connect
        self._read_timeout = settings.timeout_read
        self._client: Client | None = None
        # The same client without reqwest's read timeout, built for the requests whose own read
        # timeout is longer than the settings' (or none): reqwest's cannot be lengthened per
        # request, so the terminal keeps theirs (``_open``).
        self._untimed: Client | None = None
        self._rotations = Rotations()  # which HTTP/2 connections had answered when they broke
        self._last_url: tuple[httpx.URL | None, str] = (None, "")
        # The request headers as pyreqwest takes them (``str`` pairs): the last request's, as
        # most requests of a client carry the same, and the sets seen before (requests taking
        # turns between hosts differ in ``Host``), kept by ``remember``.
        self._last_headers: tuple[list[tuple[bytes, bytes, bytes]], list[tuple[str, str]]] = (
            [],
            [],
        )
        self._header_lists: dict[
            tuple[tuple[bytes, bytes, bytes], ...], list[tuple[str, str]] | None
        ] = {}
        # The last response head as pyreqwest gave it, and converted: most responses of an
        # upstream repeat the previous one's headers (converting them cost ~10k instructions).
        self._last_head: tuple[list[tuple[str, str]] | None, _Head | None] = (None, None)

    def __repr__(self) -> str:
        return f"PyreqwestTerminal(http2={self.settings.http2 is not False}, h2c={self._h2c})"

    @property
    def client(self) -> Client:
        """The underlying pyreqwest ``Client`` (built on first use)."""
        client = self._client
        if client is None:
            client = self._client = self._build()
        return client

    def _untimed_client(self) -> Client:
        client = self._untimed
        if client is None:
            client = self._untimed = self._build(read_timeout=False)
        return client

    def _build(self, *, read_timeout: bool = True) -> Client:
        # once per process: pyreqwest's runtime thread keeps one thread state (_reqwest_thread)
        keep_runtime_thread_state(self._pyreqwest, self._proxy_module)
        settings = self.settings
        builder = (
            self._pyreqwest.ClientBuilder()
            .follow_redirects(False)
            .referer(False)
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .default_cookie_store(False)
            .max_connections(None)  # the gate in front keeps the limit (and its pool timeout)
            .pool_max_idle_per_host(settings.max_keepalive)
            .pool_idle_timeout(
                timedelta(seconds=settings.keepalive_expiry) if settings.keepalive_expiry else None
            )
        )
        if settings.keepalive_expiry == 0:
            builder = builder.pool_max_idle_per_host(0)
        # reqwest's read timeout runs from the start of the request, connecting included: a
        # slow connect must not use it up, so it is the two together (docs/terminals.md).
        builder = builder.connect_timeout(timedelta(seconds=self._connect))
        if read_timeout:
            builder = builder.read_timeout(timedelta(seconds=self._read_timeout + self._connect))
        if self._h2c:
            builder = builder.http2_prior_knowledge()
        elif settings.http2 is False:
            builder = builder.http1_only()
        else:
            builder = builder.http2(True)
        tls = self._tls
        if not tls.verify:
            builder = builder.danger_accept_invalid_certs(True)
        elif self._ca is not None:
            builder = builder.add_root_certificate_pem(self._ca)
        if self._identity is not None:
            builder = builder.identity_pem(self._identity)
        builder = builder.no_proxy()
        if not self._proxies.never:
            proxies = self._proxies
            builder = builder.proxy(
                self._proxy_module.ProxyBuilder.custom(
                    lambda url: proxies.for_url(httpx.URL(str(url)))
                )
            )
        try:
            client: Client = builder.build()
        except RuntimeError as exc:  # pyreqwest's runtime started before this process forked
            raise httpx.LocalProtocolError(
                f"the reqwest terminal cannot send from this process: {exc}"
            ) from None
        return client

    async def _open(self, request: httpx.Request) -> httpx.Response:
        if "respx.mocks" in _modules or "pytest_httpx2" in _modules:  # a test may mock httpx
            library = mocking()
            if library is not None:
                return await self._open_mocked(library, request)
        url = request.url
        last_url, text = self._last_url
        if last_url is not url:  # the client hands out one URL object per distinct URL
            text = url_text(url)
            self._last_url = (url, text)
        items = header_items(request.headers)
        last_items, converted = self._last_headers
        if items != last_items or not items:  # not the last request's: converted, or found
            converted = remember(self._header_lists, tuple(items), _str_pairs)
            self._last_headers = (list(items), converted)
        client = self._client
        read = head = None
        if "timeout" in request.extensions:  # its own timeouts: kept here (reqwest's are fixed)
            read = timeout_of(request, "read", self._read_timeout)
            connect = timeout_of(request, "connect", self._connect)
            # reqwest keeps the client's connect timeout; the head comes within the read
            # timeout of the connection being made, and the connect is the shorter of the two
            connect = self._connect if connect is None else min(connect, self._connect)
            head = None if read is None else read + connect
            if read is None or read > self._read_timeout:  # reqwest's would cut it short
                client = self._untimed_client()
        if client is None:
            client = self.client
        try:
            builder = client.request(request.method, text).headers(converted)
        except ValueError as exc:
            if isinstance(exc, self._errors):  # a BuilderError: translated as any of its kind
                raise
            # a plain ValueError quotes what it refused (a header value may be a secret)
            raise httpx.LocalProtocolError(
                "pyreqwest refused the request's method, URL or headers"
            ) from None
        content = getattr(request, "_content", None)  # ``request.content``, without its frame
        if content is None:  # not read (a streamed body), or an httpx that keeps it elsewhere
            try:
                content = request.content
            except httpx.RequestNotRead:
                builder = builder.body_stream(request.stream)
        if content:
            builder = builder.body_bytes(content)
        ctx = request.extensions.get(EXTENSION_KEY)
        streamed = isinstance(ctx, RequestContext) and ctx.stream
        if streamed:
            builder = builder.streamed_read_buffer_limit(0)
        # The body may be read here, with the head (see below): a body read whole, timed by
        # reqwest, under the terminal's own limit (``send`` reads it under any other)
        whole = not streamed and read is None and MAX_BODY_EXTENSION not in request.extensions
        sending = builder.build_streamed()
        mark = self._rotations.seq
        task = current_task_of(_running_loop())
        before = task.cancelling() if task is not None else 0
        try:
            if head is None:
                response = await sending.__aenter__()
            else:
                async with asyncio.timeout(head):
                    response = await sending.__aenter__()
        except TimeoutError as exc:
            if isinstance(exc, self._errors):
                raise self.translate(exc) from exc
            raise httpx.ReadTimeout("no response head within the read timeout") from None
        except self._errors as exc:
            translated = self.translate(exc)
            if stream_cut(exc) and (
                not cut_before_head(exc) or self._rotations.broke(url, mark)
            ):  # the connection had answered: this request's head at least, or others
                translated.httprail_rotated = True  # type: ignore[attr-defined]
            raise translated from exc
        closed = False
        try:
            if task is not None and task.cancelling() > before:  # swallowed (see _resisting)
                raise asyncio.CancelledError
            version = _VERSIONS.get(response.version) or response.version.encode("ascii")
            if version is _HTTP2:
                self._rotations.answered(url)
            parsed = self._head_of(response.headers)
            extensions = {"http_version": version}
            status = response.status
            length = parsed.length
            if (
                whole
                and length is not None
                and 200 <= status < 400
                and not parsed.encoded
                and (self._max_body is None or length <= self._max_body)
            ):
                # The common answer, read whole now: its body came with the head (pyreqwest's
                # read-ahead), so ``bytes()`` answers at once, and no body object, ``_read``
                # and close follow (90 fewer bytecodes per request for the default stack).
                try:
                    content = bytes(await response.body_reader.bytes())
                except self._errors as exc:
                    raise self._body_error(exc) from exc
                finally:
                    closed = True
                    await sending.__aexit__(None, None, None)
                if task is not None and task.cancelling() > before:  # swallowed
                    raise asyncio.CancelledError
                answer = response_of(status, parsed.items, _NOTHING, request, extensions)
                read_plain(answer, content, ReadWhole)
                return answer
            body = _ReqwestBody(sending, response, self, read, parsed)
            return response_of(status, parsed.items, body, request, extensions)
        except BaseException:
            if not closed:
                await sending.__aexit__(None, None, None)
            raise

    def _body_error(self, exc: Exception) -> Exception:
        """The httpx exception for ``exc``, raised reading a body; an HTTP/2 connection that
        ended while the body came had answered (this response's head at least): marked as
        rotated (see ``map_error``)."""
        translated = self.translate(exc)
        if stream_cut(exc):
            translated.httprail_rotated = True  # type: ignore[attr-defined]
        return translated

    def _head_of(self, headers: Any) -> _Head:
        """The response head ``headers`` converted (:func:`_head`), or the last one when it
        repeats it."""
        try:
            pairs: list[tuple[str, str]] | None = list(headers.items())
        except ValueError:  # a value that is not ASCII: _head says which
            pairs = None
        last_pairs, head = self._last_head
        if head is None or pairs is None or pairs != last_pairs:
            head = _Head.of(_head(headers))
            self._last_head = (pairs, head)
        return head

    async def _read(self, response: httpx.Response, limit: int | None) -> None:
        stream = response.stream
        if not isinstance(stream, _ReqwestBody) or stream.head is None:  # a mocked response
            await super()._read(response, limit)
            return
        head = stream.head  # the head's framing, as the response's headers say it
        encoded = head.encoded
        if encoded and limit is not None:
            await super()._read(response, limit)  # counted as it is inflated
            return
        try:
            if limit is None or head.fits(limit, response):
                body = await stream.read_all()
            else:
                body = b"".join([chunk async for chunk in counted(stream, limit, response.request)])
        finally:
            await stream.aclose()
        if encoded or (limit is not None and len(body) > limit):
            settle(response, body, limit, encoded)
        else:
            read_plain(response, body)  # what settle does with it

    def map_error(self, exc: Exception, request: httpx.Request) -> RequestError:
        """The error-tree value for ``exc``; a request whose HTTP/2 connection the server
        closed after answering on it gives ``ConnectionRotatedError`` (see ``Rotations``)."""
        error = super().map_error(exc, request)
        if not getattr(exc, "httprail_rotated", False):
            return error
        what = "the server closed a used connection under the request"
        rotated = ConnectionRotatedError(f"{what} ({error.message})", request=request)
        rotated.__cause__ = error.__cause__
        return rotated

    def translate(self, exc: Exception) -> Exception:
        """The httpx exception for a pyreqwest one (its ``__cause__`` is ``exc``)."""
        return self._translate(exc) or httpx.TransportError(f"{type(exc).__name__}: {exc}")

    def _translate(self, exc: Exception) -> Exception | None:
        if isinstance(exc, httpx.HTTPError) or not isinstance(exc, self._errors):
            return None
        return translate(exc)

    async def _close_backend(self) -> None:
        clients = [client for client in (self._client, self._untimed) if client is not None]
        self._client = self._untimed = None
        self._rotations = Rotations()
        if clients:
            try:
                while clients:  # each dropped once closed: the list holds the last reference
                    await clients.pop().close()
            finally:
                # pyreqwest closes the connections when the client is dropped, on its runtime
                # thread (~5 ms here): the close waits for that, so no socket outlives aclose()
                clients.clear()
                _closed_now()
                await asyncio.sleep(CLOSE_GRACE)

    def _forget_backend(self) -> None:
        self._client = self._untimed = None
        self._rotations = Rotations()  # the connections it knew are gone
        self._last_url = (None, "")
        self._last_headers = ([], [])

    def _discard_backend(self) -> None:
        if self._client is not None or self._untimed is not None:
            _closed_now()  # dropped: reqwest closes their connections on its thread
        self._forget_backend()


class _Head(NamedTuple):
    """A response head converted once: its items as httpx keeps them, and its framing."""

    items: list[tuple[bytes, bytes, bytes]]  # (name, lowered name, value)
    encoded: bool  # a Content-Encoding header
    length: int | None  # the Content-Length when it frames the body and is one number

    @classmethod
    def of(cls, pairs: list[tuple[bytes, bytes]]) -> _Head:
        items = [(name, name.lower(), value) for name, value in pairs]
        lengths = [value for _, lowered, value in items if lowered == b"content-length"]
        length = int(lengths[0]) if len(lengths) == 1 and lengths[0].isdigit() else None
        if length is not None and any(lowered == b"transfer-encoding" for _, lowered, _ in items):
            # hyper frames such a body by its Transfer-Encoding (RFC 9112 6.3), however long:
            # a Content-Length beside it says nothing of its size, so it is read counted
            length = None
        encoded = any(lowered == b"content-encoding" for _, lowered, _ in items)
        return cls(items, encoded, length)

    def fits(self, limit: int, response: httpx.Response) -> bool:
        """:func:`~._limits.declared_fit` from the head's figures.

        Raises:
            BodyTooLarge: the declared length is over ``limit``.
        """
        length = self.length
        if length is None:
            return False
        if length > limit:
            raise BodyTooLarge(request=response.request, limit=limit)
        return True


def _head(headers: Any) -> list[tuple[bytes, bytes]]:
    """The response's headers as byte pairs, in order.

    Raises:
        httpx.RemoteProtocolError: a head larger than :data:`MAX_HEAD` (hyper takes up to
            ~400 KiB, the other terminals' parsers refuse far less), or a header value that is
            not ASCII: pyreqwest cannot hand its bytes over (docs/terminals.md).
    """
    try:
        pairs = [(name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()]
    except ValueError:
        for name in headers.keys():  # noqa: SIM118 - a HeaderMap
            try:
                headers.getall(name)
            except ValueError:
                raise httpx.RemoteProtocolError(
                    f"the response header {name!r} has a value that is not ASCII, which "
                    "pyreqwest cannot hand over"
                ) from None
        raise  # pragma: no cover - every value was readable one by one
    if sum(len(name) + len(value) + 4 for name, value in pairs) > MAX_HEAD:
        raise httpx.RemoteProtocolError(f"the response head is larger than {MAX_HEAD:,} bytes")
    return pairs


def _str_pairs(items: tuple[tuple[bytes, bytes, bytes], ...]) -> list[tuple[str, str]]:
    """Header items as the ``(name, value)`` text pairs pyreqwest takes."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, _, value in items]


def _read(path: object, name: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(str(path), "rb") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(f"the reqwest terminal cannot read {name}: {exc.strerror}") from None


_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_TRUSTED = b"-----BEGIN TRUSTED CERTIFICATE-----"


def _check_pems(pyreqwest: Any, ca: bytes | None, identity: bytes | None) -> None:
    """Refuse what rustls would drop or fail on at the first request, though OpenSSL loaded it.

    Raises:
        ConfigError: a CA bundle with OpenSSL's ``TRUSTED CERTIFICATE`` blocks (rustls skips
            them: every TLS request would fail as an unknown issuer) or with no certificate; a
            client certificate or key rustls cannot use (an Ed448 key).
    """
    if ca is not None and (_TRUSTED in ca or _CERTIFICATE not in ca):
        raise ConfigError(
            "the reqwest terminal reads only '-----BEGIN CERTIFICATE-----' blocks from "
            "HTTP_CA_BUNDLE (rustls skips OpenSSL's 'TRUSTED CERTIFICATE' form): convert it "
            "with 'openssl x509 -in FILE -out FILE.pem'"
        )
    if identity is None:
        return
    try:  # no TLS handshake: only rustls reading the PEM (without the system's roots)
        pyreqwest.ClientBuilder().danger_accept_invalid_certs(True).identity_pem(identity).build()
    except ValueError as exc:  # pyreqwest's BuilderError
        raise ConfigError(
            "the reqwest terminal cannot use HTTP_CLIENT_CERT / HTTP_CLIENT_KEY "
            f"(rustls: {type(exc).__name__}); RSA, ECDSA and Ed25519 keys in PEM work"
        ) from None


def _identity(cert: object, key: object) -> bytes | None:
    """The client certificate and its key as one PEM, as reqwest takes them."""
    if cert is None:
        return None
    pem = _read(cert, "HTTP_CLIENT_CERT") or b""
    if key is not None:
        pem = pem.rstrip(b"\n") + b"\n" + (_read(key, "HTTP_CLIENT_KEY") or b"")
    return pem
