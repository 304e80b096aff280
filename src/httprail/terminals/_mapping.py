"""The one seam where backend exceptions become values of the error tree.

Every message made here passes through :func:`~httprail._redact.redact_text` with the request,
so a backend's text never carries the request's userinfo, credential query values or sensitive
header values; and a backend exception whose own text would leak one is not kept as the
error's ``__cause__`` (a traceback prints it): a :class:`RedactedBackendError` carrying its
class name and redacted text stands in for it (:func:`safe_cause`).
"""

from __future__ import annotations

import httpx

from .._errors import (
    ConnectError,
    DecodeError,
    InvalidRequestError,
    ProtocolError,
    ReadError,
    RequestError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TimeoutPhase,
    TransportError,
    WriteError,
)
from .._redact import redact_text
from ._limits import BodyTooLarge
from ._mocked import raised_by_mock

__all__ = ["RedactedBackendError", "map_exception", "safe_cause"]

_CHAIN_DEPTH = 8

_TIMEOUT_PHASES: tuple[tuple[type[httpx.TimeoutException], TimeoutPhase], ...] = (
    (httpx.ConnectTimeout, "connect"),
    (httpx.ReadTimeout, "read"),
    (httpx.WriteTimeout, "write"),
    (httpx.PoolTimeout, "pool"),
)

_TRANSPORT_ERRORS: tuple[tuple[type[Exception], type[TransportError]], ...] = (
    (httpx.ConnectError, ConnectError),
    (httpx.ReadError, ReadError),
    (httpx.WriteError, WriteError),
    (httpx.ProtocolError, ProtocolError),
    (httpx.TooManyRedirects, ProtocolError),
    (httpx.CloseError, TransportError),
    (httpx.ProxyError, ConnectError),
)


# What asyncio and anyio say when a connection of one event loop is used from another: the
# environment's fault, never the upstream's (not retried, not counted by the breaker).
_WRONG_LOOP = (
    "Event loop is closed",
    "attached to a different loop",
    "bound to a different event loop",
)


class RedactedBackendError(Exception):
    """Stands in, as an error's ``__cause__``, for a backend exception whose text carried a
    secret: its message is that exception's class name and redacted text."""


def _describe(exc: BaseException, request: httpx.Request | None = None) -> str:
    text = redact_text(str(exc), request)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _clean(exc: BaseException, request: httpx.Request | None) -> bool:
    """Whether ``exc`` prints without a secret, after rewriting its ``args`` if that is how it
    prints (httpx's exceptions, ``ValueError``, ...)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception that cannot print leaks nothing
        return True
    clean = redact_text(text, request)
    if clean == text:
        return True
    if type(exc).__str__ is BaseException.__str__ and len(exc.args) == 1:
        exc.args = (clean,)
        return str(exc) == clean
    return False


def safe_cause(exc: BaseException, request: httpx.Request | None) -> BaseException:
    """``exc``, to be an error's ``__cause__``, made safe to print with its chain.

    Each exception of the chain (causes and contexts, a few deep) that prints a secret has its
    message rewritten when its message is its ``args``; one that prints otherwise (aiohttp's
    ``ClientResponseError`` names the URL from its request info) is replaced, with the rest of
    the chain, by a :class:`RedactedBackendError`.
    """
    if not _clean(exc, request):
        return _stand_in(exc, request)
    current = exc
    for _ in range(_CHAIN_DEPTH):
        following = current.__cause__ or current.__context__
        if following is None:
            break
        if not _clean(following, request):
            current.__cause__ = _stand_in(following, request)
            current.__suppress_context__ = True
            break
        current = following
    return exc


def _stand_in(exc: BaseException, request: httpx.Request | None) -> RedactedBackendError:
    stand_in = RedactedBackendError(_describe(exc, request))
    stand_in.__suppress_context__ = True
    return stand_in


def map_exception(exc: Exception, request: httpx.Request | None) -> RequestError:
    """Translate an exception raised by a backend into the matching :class:`RequestError`.

    Exceptions httpx does not know about (a bug in a backend, an OS error that slipped through)
    become a plain :class:`TransportError` rather than escaping the pipeline.
    """
    if raised_by_mock(exc):
        raise exc  # a test's mock refused the request (no route matched): the test must fail
    error: RequestError
    if isinstance(exc, httpx.TimeoutException):
        phase: TimeoutPhase = "read"
        for kind, name in _TIMEOUT_PHASES:
            if isinstance(exc, kind):
                phase = name
                break
        error = RequestTimeoutError(
            f"{phase} timeout ({_describe(exc, request)})", phase=phase, request=request
        )
    elif isinstance(exc, BodyTooLarge):
        error = ResponseTooLargeError(limit=exc.limit, request=request)
    elif isinstance(exc, httpx.DecodingError):
        error = DecodeError(
            f"could not decode the body: {_describe(exc, request)}", request=request
        )
    elif isinstance(exc, RuntimeError) and any(sign in str(exc) for sign in _WRONG_LOOP):
        error = InvalidRequestError(
            f"cannot send from this event loop: {_describe(exc, request)} (the connection "
            "belongs to another event loop; give each loop its own client)",
            request=request,
        )
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL | httpx.LocalProtocolError):
        error = InvalidRequestError(
            f"cannot send this request: {_describe(exc, request)}", request=request
        )
    else:
        kind_: type[TransportError] = TransportError
        for source, target in _TRANSPORT_ERRORS:
            if isinstance(exc, source):
                kind_ = target
                break
        if isinstance(exc, ConnectionRefusedError | ConnectionResetError | OSError) and not (
            isinstance(exc, httpx.HTTPError)
        ):
            kind_ = ConnectError if isinstance(exc, ConnectionRefusedError) else ReadError
        error = kind_(_describe(exc, request), request=request)
    error.__cause__ = safe_cause(exc, request)
    return error
