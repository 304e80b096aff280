"""The one seam where backend exceptions become values of the error tree."""

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
    TimeoutPhase,
    TransportError,
    WriteError,
)

__all__ = ["map_exception"]

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


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def map_exception(exc: Exception, request: httpx.Request | None) -> RequestError:
    """Translate an exception raised by a backend into the matching :class:`RequestError`.

    Exceptions httpx does not know about (a bug in a backend, an OS error that slipped through)
    become a plain :class:`TransportError` rather than escaping the pipeline.
    """
    error: RequestError
    if isinstance(exc, httpx.TimeoutException):
        phase: TimeoutPhase = "read"
        for kind, name in _TIMEOUT_PHASES:
            if isinstance(exc, kind):
                phase = name
                break
        error = RequestTimeoutError(
            f"{phase} timeout ({_describe(exc)})", phase=phase, request=request
        )
    elif isinstance(exc, httpx.DecodingError):
        error = DecodeError(f"could not decode the body: {_describe(exc)}", request=request)
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL | httpx.LocalProtocolError):
        error = InvalidRequestError(f"cannot send this request: {_describe(exc)}", request=request)
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
        error = kind_(_describe(exc), request=request)
    error.__cause__ = exc
    return error
