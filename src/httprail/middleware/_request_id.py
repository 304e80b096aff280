"""``RequestId``: one id per logical request, sent as ``X-Request-ID`` and carried by every log
event of the request (and by the OpenTelemetry span as ``httprail.request_id``)."""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable
from typing import Any

import httpx
from returns.result import Failure

from .._args import need_callable
from .._errors import ConfigError, InvalidRequestError
from .._log import REQUEST_ID
from .._result import Next, Outcome

__all__ = ["EXTENSION", "MAX_LENGTH", "RequestId", "request_id_of"]

EXTENSION = "httprail.request_id"
"""The key of ``request.extensions`` the id is kept under (a ``str``)."""

MAX_LENGTH = 200
"""The longest id accepted (Heroku's router and most gateways stop at 200 characters)."""

DEFAULT_HEADER = "X-Request-ID"
_VALID = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")  # printable ASCII, trimmed
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def request_id_of(request: httpx.Request) -> str | None:
    """The id :class:`RequestId` gave ``request`` (or the ``X-Request-ID`` header it carries),
    ``None`` if it has neither."""
    found = request.extensions.get(EXTENSION)
    if isinstance(found, str):
        return found
    header: str | None = request.headers.get(DEFAULT_HEADER)
    return header


def new_id() -> str:
    """A random id: 32 hex digits (128 bits, the shape of a W3C trace id)."""
    return secrets.token_hex(16)


class RequestId:
    """Give each logical request an id, send it in ``header`` and log it with every event.

    The id is, in order: the request's own ``header`` (a caller's or an incoming request's id
    is kept); the current OpenTelemetry trace id, when ``from_trace`` and a span is recording
    (``opentelemetry-api`` is imported on first use, if installed); else ``generate()``. It is
    kept in ``request.extensions["httprail.request_id"]`` (read it with
    :func:`request_id_of`) and, while the request runs, every httprail log event in its task
    carries it as ``request_id``.

    Place it outside ``Retry`` (and ``Hedge``): every attempt then sends the same id. Inside
    them it still does, since an attempt finds the header the first one set.

    A caller's id that is empty, longer than :data:`MAX_LENGTH` characters or not printable
    ASCII (it would be logged and forwarded as is) is refused: the request ends with
    ``InvalidRequestError`` and is not sent. A header with CR or LF never gets this far (the
    request's headers are checked before sending).

    Args:
        header: the header carrying the id.
        from_trace: take the current trace id when there is a recording span.
        generate: makes a new id (default: 32 random hex digits).

    Example:
        >>> client = AsyncClient(plugins=[RequestId(), *default_plugins()])  # doctest: +SKIP
    """

    name = "request_id"

    def __init__(
        self,
        *,
        header: str = DEFAULT_HEADER,
        from_trace: bool = True,
        generate: Callable[[], str] = new_id,
    ) -> None:
        if not isinstance(header, str) or not _TOKEN.fullmatch(header):
            raise ConfigError(f"RequestId(header=...) must be a header name, got {header!r}")
        if not isinstance(from_trace, bool):
            raise ConfigError(f"RequestId(from_trace=...) must be a bool, got {from_trace!r}")
        need_callable("RequestId", "generate", generate)
        self.header = header
        self.from_trace = from_trace
        self._generate = generate

    def __repr__(self) -> str:
        return f"RequestId(header={self.header!r}, from_trace={self.from_trace})"

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        given = request.headers.get(self.header)
        if given is not None:
            source, value = "the request's", given
        else:
            value = (_trace_id() if self.from_trace else None) or self._generate()
            source = "RequestId(generate=...)'s"
        if not isinstance(value, str) or len(value) > MAX_LENGTH or not _VALID.fullmatch(value):
            return Failure(
                InvalidRequestError(
                    f"{source} {self.header} must be 1 to {MAX_LENGTH} printable ASCII "
                    f"characters (got {_describe(value)})",
                    request=request,
                )
            )
        request.extensions[EXTENSION] = value
        if given is None:
            request.headers[self.header] = value
        token = REQUEST_ID.set(value)
        try:
            return await call_next(request)
        finally:
            REQUEST_ID.reset(token)


def _describe(value: object) -> str:
    """What was wrong with an id, without echoing it (it may be anything)."""
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    if not value:
        return "an empty value"
    if len(value) > MAX_LENGTH:
        return f"{len(value)} characters"
    return "a character outside printable ASCII or surrounding blanks"


def _trace_id() -> str | None:
    """The current OpenTelemetry trace id (32 hex digits) if a span is recording."""
    trace = _otel_trace()
    if trace is None:
        return None
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@functools.cache
def _otel_trace() -> Any:
    """``opentelemetry.trace``, or ``None`` without ``opentelemetry-api`` (looked up once)."""
    try:
        from opentelemetry import trace  # optional: imported on first use
    except ImportError:
        return None
    return trace
