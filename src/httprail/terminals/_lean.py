"""What the lean (non-httpx) terminals share: admission, status handling, reading, mapping.

A lean terminal goes to its backend directly and only has to do two things itself: open a
response (head received, body still streaming, as an ``httpx.Response`` whose stream raises
httpx exceptions) and translate its backend's exceptions into httpx ones. Everything else (the
connection-slot gate with its pool timeout, ``StatusError`` with a size-capped body, reading
non-streaming bodies, handing streams over, the error tree) lives here, so it behaves exactly
like :class:`HttpxTerminal`.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from types import ModuleType

import httpx
from returns.result import Failure, Success

from .._context import EXTENSION_KEY, RequestContext
from .._errors import (
    ConfigError,
    InvalidRequestError,
    RequestError,
    RequestTimeoutError,
    StatusError,
)
from .._result import Outcome
from .._settings import HttpSettings
from ._httpx import DEFAULT_MAX_ERROR_BODY, read_capped
from ._mapping import map_exception

__all__ = ["LeanTerminal", "http_version", "import_backend", "timeout_of"]


def import_backend(module: str, extra: str) -> ModuleType:
    """Import an optional backend, or raise a :class:`ConfigError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"the {extra} terminal needs the {module!r} package, which is not installed: "
            f"pip install 'httprail[{extra}]'"
        ) from exc


def timeout_of(request: httpx.Request, phase: str, default: float) -> float | None:
    """The request's own timeout for ``phase`` (``extensions["timeout"]``), else ``default``."""
    values = request.extensions.get("timeout")
    if isinstance(values, dict) and phase in values:
        value: float | None = values[phase]
        return value
    return default


def http_version(major: int, minor: int) -> bytes:
    """``b"HTTP/1.1"`` and friends, as httpx stores them in ``response.extensions``."""
    if major == 2:
        return b"HTTP/2"
    return f"HTTP/{major}.{minor}".encode("ascii")


class _GatedStream(httpx.AsyncByteStream):
    """A streamed body that gives its slot back (and stamps ``elapsed``) when closed."""

    __slots__ = ("_gate", "_inner", "_response", "_started")

    def __init__(
        self,
        inner: httpx.AsyncByteStream,
        gate: asyncio.Semaphore,
        response: httpx.Response,
        started: float,
    ) -> None:
        self._inner = inner
        self._gate: asyncio.Semaphore | None = gate
        self._response = response
        self._started = started

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            gate, self._gate = self._gate, None
            if gate is not None:
                self._response.elapsed = timedelta(seconds=time.perf_counter() - self._started)
                gate.release()


class LeanTerminal:
    """Base of the terminals that drive a backend directly (aiohttp, curl_cffi).

    Subclasses implement :meth:`_open`, :meth:`_translate` and :meth:`_close_backend`; they may
    override :meth:`_read` when the backend can read a whole body faster than chunk by chunk.
    """

    name = "lean"

    def __init__(
        self, settings: HttpSettings | None = None, *, max_error_body: int = DEFAULT_MAX_ERROR_BODY
    ) -> None:
        self.settings = settings if settings is not None else HttpSettings()
        self._max_error_body = max_error_body
        self._pool_timeout = self.settings.timeout_pool
        self._gate = asyncio.Semaphore(self.settings.max_connections)
        self._closed = False

    # -- what a backend provides --------------------------------------------------------

    async def _open(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; return once the head arrived, with the body still to read.

        The response's stream must raise httpx exceptions and free the backend's connection
        when closed.
        """
        raise NotImplementedError

    def _translate(self, exc: Exception) -> Exception | None:
        """The httpx exception equivalent to a backend exception (``None``: not a backend one)."""
        raise NotImplementedError

    async def _close_backend(self) -> None:
        """Close the backend's session and connections."""
        raise NotImplementedError

    async def _read(self, response: httpx.Response) -> None:
        """Read the whole body of ``response`` and close it."""
        try:
            await response.aread()
        finally:
            await response.aclose()

    # -- the shared part ----------------------------------------------------------------

    def map_error(self, exc: Exception, request: httpx.Request) -> RequestError:
        """The error-tree value for ``exc``, exactly as :class:`HttpxTerminal` would give it."""
        translated = self._translate(exc)
        if translated is None:
            error = map_exception(exc, request)
            cause = exc.__cause__
            if isinstance(exc, httpx.HTTPError) and isinstance(cause, Exception):
                error.__cause__ = cause  # a body read failed: the backend's own exception
            return error
        error = map_exception(translated, request)
        error.__cause__ = exc
        return error

    async def send(self, request: httpx.Request) -> Outcome:
        """Send ``request``; every backend exception comes back as a typed ``Failure``."""
        if self._closed:
            return Failure(InvalidRequestError("the terminal is closed", request=request))
        ctx = request.extensions.get(EXTENSION_KEY)
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
        started = time.perf_counter()
        try:
            response = await self._open(request)
            if response.status_code >= 400 and not raw_status:
                return Failure(
                    StatusError.from_response(await read_capped(response, self._max_error_body))
                )
            if stream:
                response.stream = _GatedStream(response.stream, gate, response, started)  # type: ignore[arg-type]
                handed_over = True
                return Success(response)
            await self._read(response)
            response.elapsed = timedelta(seconds=time.perf_counter() - started)
            return Success(response)
        except Exception as exc:  # noqa: BLE001 - the seam: every backend error becomes a value
            return Failure(self.map_error(exc, request))
        finally:
            if not handed_over:
                gate.release()

    async def aclose(self) -> None:
        """Close the backend's connections (a closed terminal answers ``InvalidRequestError``)."""
        self._closed = True
        await self._close_backend()
