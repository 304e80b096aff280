"""``CurlTerminal``: requests sent by libcurl (curl_cffi's ``AsyncCurl`` multi handle), directly.

curl_cffi is an optional dependency (``pip install 'httprail[curl]'``), imported when the
terminal is built, never when httprail is imported.
"""

from __future__ import annotations

import asyncio
import collections
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from .._settings import HttpSettings
from .._tls import Proxies, resolve_tls
from ._gated import DEFAULT_MAX_ERROR_BODY
from ._lean import CLOSED_UNDER, LeanTerminal, http_version, import_backend, timeout_of
from ._mocked import mocking

if TYPE_CHECKING:
    from curl_cffi import AsyncCurl, Curl

__all__ = ["CurlTerminal"]

# How long past the connect timeout we wait for libcurl to report it before giving up on our own
# (libcurl has been seen hanging far past its timeouts; curl_cffi#578).
_CONNECT_GRACE = 0.05

# libcurl error codes (CURLE_*), by what they mean for the error tree.
_CONNECT = frozenset({5, 6, 7, 35, 58, 59, 60, 77, 83, 90, 91, 97})
_PROTOCOL = frozenset({8, 16, 18, 52, 92, 95, 100})  # 100: a head over libcurl's limits
_READ = frozenset({56})
_WRITE = frozenset({55})
_TIMEOUT = 28
_URL = frozenset({3})
_UNSUPPORTED = 1  # also what libcurl says of a response it cannot read (_about_the_response)
_REDIRECTS = 47
_DECODING = 61

# Backpressure: once this many bytes wait unread, the write callback pauses the transfer
# (libcurl keeps the chunk and stops reading the socket) until the reader has taken them all.
_HIGH_WATER = 256 * 1024
_WRITEFUNC_PAUSE = 0x10000001  # CURL_WRITEFUNC_PAUSE
_PAUSE_CONT = 0  # CURLPAUSE_CONT


class _Transfer:
    """One request in flight: what libcurl has delivered so far, and who waits for more."""

    __slots__ = (
        "buffered",
        "chunks",
        "curl",
        "done",
        "error",
        "finished",
        "head",
        "header_lines",
        "paused",
        "status_line",
        "waiter",
    )

    def __init__(self, curl: Curl, head: asyncio.Future[None]) -> None:
        self.curl = curl
        self.head = head
        self.status_line = b""
        self.header_lines: list[bytes] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0  # bytes in ``chunks``
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.finished = False
        self.error: BaseException | None = None
        self.done: asyncio.Future[None] | None = None

    def on_header(self, line: bytes) -> int:
        if line.startswith(b"HTTP/"):  # a new head (after a 1xx, or the first one)
            self.status_line = line.rstrip()
            self.header_lines = []
        elif line in (b"\r\n", b"\n"):
            informational = self.status_line[9:10] == b"1"
            if not informational and not self.head.done():
                self.head.set_result(None)
        elif line[:1] in (b" ", b"\t") and self.header_lines:  # an obsolete folded line
            self.header_lines[-1] += b" " + line.strip()
        else:
            self.header_lines.append(line.rstrip(b"\r\n"))
        return len(line)

    def on_body(self, chunk: bytes) -> int:
        if self.buffered >= _HIGH_WATER:
            self.paused = True
            return _WRITEFUNC_PAUSE  # libcurl hands this chunk over again when resumed
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        self._wake()
        return len(chunk)

    def take(self) -> bytes:
        """The oldest unread chunk (there must be one)."""
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        return chunk

    def resume(self) -> None:
        """Let libcurl deliver again (it may call ``on_body`` before this returns)."""
        self.paused = False
        self.curl.pause(_PAUSE_CONT)

    def on_done(self, future: asyncio.Future[None]) -> None:
        self.finished = True
        if not future.cancelled():
            self.error = future.exception()
        if not self.head.done():
            self.head.set_result(None)
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def headers(self) -> list[tuple[bytes, bytes]]:
        pairs = []
        for line in self.header_lines:
            name, _, value = line.partition(b":")
            pairs.append((name.strip(), value.strip()))
        return pairs


class _CurlBody(httpx.AsyncByteStream):
    """The body libcurl delivers, raising httpx exceptions; closing frees the handle."""

    __slots__ = ("_read_timeout", "_terminal", "_transfer")

    def __init__(self, transfer: _Transfer, terminal: CurlTerminal, read_timeout: float | None):
        self._transfer = transfer
        self._terminal = terminal
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        transfer = self._transfer
        chunks = transfer.chunks
        while True:
            if chunks:
                yield transfer.take()
                continue
            if transfer.paused:  # all read: let libcurl go on (backpressure, see _HIGH_WATER)
                try:
                    transfer.resume()
                except self._terminal._curl_cffi.CurlError as exc:  # pragma: no cover - defensive
                    raise self._terminal.translate_curl(exc) from exc
                continue
            if transfer.finished:
                if transfer.error is not None:
                    raise self._terminal.translate_curl(transfer.error)
                return
            waiter = asyncio.get_running_loop().create_future()
            transfer.waiter = waiter
            try:
                async with asyncio.timeout(self._read_timeout):
                    await waiter
            except TimeoutError:
                raise httpx.ReadTimeout("no data within the read timeout") from None
            finally:
                transfer.waiter = None

    async def aclose(self) -> None:
        self._terminal._finish(self._transfer)


class CurlTerminal(LeanTerminal):
    """Send requests with libcurl through curl_cffi's asyncio multi handle, without a session.

    curl_cffi's ``AsyncSession`` is not used: in stream mode it keeps a transfer running in a
    background task when the caller is cancelled before the head arrives, and its stream
    timeouts have whole-second granularity. This terminal drives ``AsyncCurl`` directly and
    times every wait itself (libcurl has been seen hanging far past its own timeouts), so a
    request never outlives ``timeout_connect`` (plus a small grace) or ``timeout_read``
    between two reads, and a cancelled request is removed from libcurl at once.

    HTTP/2 is offered over TLS (ALPN) unless ``settings.http2`` is ``False``; HTTP/1.1 on
    ``http://`` and when the server does not take it, as with httpx. A GOAWAY is libcurl's to
    handle; a stream a rotating server drops after taking it fails as ``ProtocolError`` (curl
    error 16, which does not say whether the server processed it): against servers that rotate
    HTTP/2 connections, ``HttpxTerminal`` tells those cases apart (docs/terminals.md).
    Pool: ``max_connections`` requests in flight (others queue here up to ``timeout_pool``),
    at most ``max_keepalive`` idle connections kept, each for ``keepalive_expiry`` seconds.
    Request bodies are read into memory before sending. Write time counts against the read
    timeout (there is no separate write timeout). Bodies are not decompressed by libcurl; the
    ``httpx.Response`` does it, as with httpx.

    Args:
        settings: timeouts and pool limits (defaults: ``HttpSettings()``).
        max_error_body: how many bytes of an error response's body to keep.
        verify: TLS verification, winning over ``HTTP_VERIFY``/``HTTP_CA_BUNDLE``: ``True``,
            ``False`` or a CA bundle path (default: from the settings, which also give the
            client certificate, the proxy and ``trust_env``). An ``ssl.SSLContext`` is a
            ``ConfigError``: libcurl does its own TLS and would drop it.

    Raises:
        ConfigError: curl_cffi is not installed; an ``SSLContext``; a CA bundle, certificate
            or key that cannot be loaded.
    """

    name = "curl"

    def __init__(
        self,
        settings: HttpSettings | None = None,
        *,
        max_error_body: int = DEFAULT_MAX_ERROR_BODY,
        verify: bool | str | None = None,
    ) -> None:
        self._curl_cffi: Any = import_backend("curl_cffi", "curl")
        super().__init__(settings, max_error_body=max_error_body)
        self._tls = resolve_tls(self.settings, verify, "curl", accepts_context=False)
        self._tls.ssl_context("curl")  # loads the files: a bad one is a ConfigError now
        # Chosen here, and libcurl told on every request (an empty PROXY keeps it from reading
        # the environment on its own, which it does with other rules: no upper-case HTTP_PROXY).
        self._proxies = Proxies(self.settings, "curl")
        self._multi: AsyncCurl | None = None
        self._idle: list[Curl] = []
        settings = self.settings
        self._connect = settings.timeout_connect
        self._read_timeout = settings.timeout_read
        version = self._curl_cffi.CurlHttpVersion
        self._version = version.V1_1 if settings.http2 is False else version.V2TLS

    def __repr__(self) -> str:
        return f"CurlTerminal(http2={self.settings.http2 is not False})"

    def _get_multi(self) -> AsyncCurl:
        multi = self._multi
        if multi is None:
            c = self._curl_cffi
            multi = c.AsyncCurl(loop=asyncio.get_running_loop())
            settings = self.settings
            multi.setopt(c.CurlMOpt.MAX_TOTAL_CONNECTIONS, settings.max_connections)
            multi.setopt(c.CurlMOpt.MAXCONNECTS, max(settings.max_keepalive, 1))
            self._multi = multi
        return multi

    def _handle(self, request: httpx.Request, body: bytes, transfer: _Transfer) -> None:
        c = self._curl_cffi
        opt = c.CurlOpt
        curl = transfer.curl
        method = request.method.upper()
        curl.setopt(opt.URL, str(request.url).encode())
        curl.setopt(opt.PROTOCOLS_STR, b"http,https")  # as httpx: other schemes are refused
        curl.setopt(opt.FOLLOWLOCATION, 0)  # never: redirects are the Redirects stage's
        if method == "HEAD":
            curl.setopt(opt.NOBODY, 1)
        elif method != "GET" or body:
            curl.setopt(opt.CUSTOMREQUEST, method.encode())
        if body:
            curl.setopt(opt.POSTFIELDS, body)
            curl.setopt(opt.POSTFIELDSIZE, len(body))
        # libcurl adds Accept, Expect and (for bodies) a form Content-Type unless told not to.
        lines = [b"Accept:", b"Expect:", b"Content-Type:"]
        for name, value in request.headers.raw:
            lines.append(name + b": " + value if value else name + b";")
        curl.setopt(opt.HTTPHEADER, lines)
        curl.setopt(opt.HEADERFUNCTION, transfer.on_header)
        curl.setopt(opt.WRITEFUNCTION, transfer.on_body)
        curl.setopt(opt.HTTP_VERSION, self._version)
        connect = timeout_of(request, "connect", self._connect)
        if connect is not None:
            curl.setopt(opt.CONNECTTIMEOUT_MS, max(1, int(connect * 1000)))
        expiry = self.settings.keepalive_expiry
        if expiry > 0 and self.settings.max_keepalive > 0:
            curl.setopt(opt.MAXAGE_CONN, max(1, round(expiry)))
        else:
            curl.setopt(opt.FORBID_REUSE, 1)
        tls = self._tls
        if not tls.verify:
            curl.setopt(opt.SSL_VERIFYPEER, 0)
            curl.setopt(opt.SSL_VERIFYHOST, 0)
        elif tls.ca_bundle is not None:
            curl.setopt(opt.CAINFO, str(tls.ca_bundle))
        if tls.client_cert is not None:
            curl.setopt(opt.SSLCERT, str(tls.client_cert))
            if tls.client_key is not None:
                curl.setopt(opt.SSLKEY, str(tls.client_key))
        curl.setopt(opt.PROXY, self._proxies.for_url(request.url) or "")
        curl.setopt(opt.NOPROXY, "")

    async def _open(self, request: httpx.Request) -> httpx.Response:
        if "respx.mocks" in sys.modules or "pytest_httpx2" in sys.modules:  # a test may mock
            library = mocking()
            if library is not None:
                return await self._open_mocked(library, request)
        body = await request.aread()
        multi = self._get_multi()
        loop = asyncio.get_running_loop()
        curl = self._idle.pop() if self._idle else self._curl_cffi.Curl()
        transfer = _Transfer(curl, loop.create_future())
        ready = False
        try:
            self._handle(request, body, transfer)
            done = multi.add_handle(curl)
            transfer.done = done
            done.add_done_callback(transfer.on_done)
            read = timeout_of(request, "read", self._read_timeout)
            await self._wait_for_head(transfer, request, loop.time(), read)
            if transfer.error is not None and not transfer.status_line:
                raise self.translate_curl(transfer.error)
            version, status, reason = _status(transfer.status_line)
            response = httpx.Response(
                status,
                headers=transfer.headers(),
                stream=_CurlBody(transfer, self, read),
                request=request,
                extensions={"http_version": version, "reason_phrase": reason},
            )
            ready = True
            return response
        finally:
            if not ready:
                self._finish(transfer)

    async def _wait_for_head(
        self, transfer: _Transfer, request: httpx.Request, started: float, read: float | None
    ) -> None:
        """Wait for the response head: ``connect`` to connect, then ``read`` for the head."""
        connect = timeout_of(request, "connect", self._connect)
        head = transfer.head
        wait = read if read is not None else connect
        loop = asyncio.get_running_loop()
        info = self._curl_cffi.CurlInfo
        while True:
            await asyncio.wait((head,), timeout=wait)
            if head.done():
                return
            elapsed = loop.time() - started
            connected_at = transfer.curl.getinfo(info.PRETRANSFER_TIME)
            if not connected_at:
                if connect is not None and elapsed >= connect + _CONNECT_GRACE:
                    raise httpx.ConnectTimeout("no connection within the connect timeout")
                wait = None if connect is None else connect + _CONNECT_GRACE - elapsed
            else:
                assert isinstance(connected_at, float)
                if read is not None and elapsed >= connected_at + read:
                    raise httpx.ReadTimeout("no response within the read timeout")
                wait = None if read is None else connected_at + read - elapsed

    def _finish(self, transfer: _Transfer) -> None:
        """Take the transfer out of libcurl (closing its connection if unfinished), recycle."""
        curl = transfer.curl
        done = transfer.done
        multi = self._multi
        transfer.done = None
        if done is not None and not done.done() and multi is not None:
            multi.remove_handle(curl)
        curl.clean_handles_and_buffers()
        if self._closed or multi is None:
            curl.close()
            return
        curl.reset()
        self._idle.append(curl)

    def translate_curl(self, exc: BaseException) -> Exception:
        """The httpx exception for a libcurl failure (its ``__cause__`` is ``exc``)."""
        if not isinstance(exc, Exception):  # pragma: no cover - futures hold Exceptions only
            return httpx.TransportError(repr(exc))
        return self._translate(exc) or exc

    def _translate(self, exc: Exception) -> Exception | None:
        if isinstance(exc, httpx.HTTPError) or not isinstance(exc, self._curl_cffi.CurlError):
            return None
        code = int(getattr(exc, "code", 0) or 0)
        text = f"curl error {code}: {exc}"
        translated: Exception
        if code in _CONNECT:
            translated = httpx.ConnectError(text)
        elif code == _TIMEOUT:
            # "Connection timed out after ..." / "Resolving timed out after ...": no connection;
            # "Operation timed out after ... bytes received": the connection was up.
            late = "Operation timed out" in str(exc)
            translated = httpx.ReadTimeout(text) if late else httpx.ConnectTimeout(text)
        elif (
            code in _PROTOCOL
            or (code == _UNSUPPORTED and _about_the_response(str(exc)))
            or (code in _READ and _bad_chunking(str(exc)))
        ):
            translated = httpx.RemoteProtocolError(text)
        elif code in _READ:
            translated = httpx.ReadError(text)
        elif code in _WRITE:
            translated = httpx.WriteError(text)
        elif code == _UNSUPPORTED:
            translated = httpx.UnsupportedProtocol(text)
        elif code in _URL:
            translated = httpx.InvalidURL(text)
        elif code == _REDIRECTS:
            translated = httpx.TooManyRedirects(text)
        elif code == _DECODING:
            translated = httpx.DecodingError(text)
        else:
            translated = httpx.TransportError(text)
        translated.__cause__ = exc
        return translated

    async def _close_backend(self) -> None:
        multi, self._multi = self._multi, None
        idle, self._idle = self._idle, []
        for curl in idle:
            curl.close()
        if multi is not None:
            # curl_cffi ends the transfers still running as if they had completed: their
            # responses would end early and cleanly (a cut body taken for the whole)
            for future in list(getattr(multi, "_curl2future", {}).values()):
                if not future.done():
                    future.set_exception(httpx.ReadError(CLOSED_UNDER))
            await multi.close()  # type: ignore[no-untyped-call]

    def _forget_backend(self) -> None:
        self._multi = None
        self._idle = []

    def _discard_backend(self) -> None:
        multi, idle = self._multi, self._idle
        self._forget_backend()
        for curl in idle:
            curl.close()
        curlm = getattr(multi, "_curlm", None)
        if multi is None or curlm is None:
            return
        # libcurl closes its connections; its callbacks would reach for the closed loop.
        multi.loop = _ClosedLoop()  # type: ignore[assignment]
        checker = getattr(multi, "_timeout_checker", None)
        if checker is not None:  # a task of the closed loop that will never run again
            checker._log_destroy_pending = False
        lib = self._curl_cffi.aio.lib
        for curl in list(getattr(multi, "_curl2future", ())):
            if curl._curl is not None:
                lib.curl_multi_remove_handle(curlm, curl._curl)
        lib.curl_multi_cleanup(curlm)
        multi._curlm = None


class _ClosedLoop:
    """Stands in for a closed loop while libcurl's last callbacks run: they do nothing."""

    def call_later(self, *_: object) -> None:
        return None

    def remove_reader(self, *_: object) -> bool:
        return False

    remove_writer = remove_reader


def _about_the_response(message: str) -> bool:
    """Whether a CURLE_UNSUPPORTED_PROTOCOL is about the server's answer, not the URL's scheme.

    libcurl reports a status line it cannot read with the same code as a scheme it will not
    send to ("Unsupported HTTP/1 subversion in response", "Received HTTP/0.9 when not
    allowed"): the request went out, so it is a protocol error, not the caller's.
    """
    return "HTTP/0.9" in message or "in response" in message


def _bad_chunking(message: str) -> bool:
    """Whether a CURLE_RECV_ERROR is a chunked body libcurl could not parse, not a broken
    connection (``"chunk hex-length char not a hex digit"``)."""
    return "chunk" in message


def _status(line: bytes) -> tuple[bytes, int, bytes]:
    """``(http_version, status, reason)`` from a status line such as ``HTTP/1.1 200 OK``."""
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    try:
        status = int(code)
    except ValueError:
        raise httpx.RemoteProtocolError(f"malformed status line {line!r}") from None
    major, _, minor = version.removeprefix(b"HTTP/").partition(b".")
    try:
        return http_version(int(major), int(minor or b"0")), status, reason
    except ValueError:
        raise httpx.RemoteProtocolError(f"malformed status line {line!r}") from None
