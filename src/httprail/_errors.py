"""The error tree: every failure httprail returns (or raises, for configuration) is one of these.

```
HttprailError                      root of everything httprail returns or raises
├── RequestError                   the outcome of one request; has .request
│   ├── TransportError             no usable response
│   │   ├── ConnectError           the connection could not be made: the request was never sent
│   │   ├── ReadError              the connection broke while reading the response
│   │   ├── WriteError             the connection broke while sending the request
│   │   ├── ProtocolError          the peer spoke something that is not valid HTTP
│   │   ├── ConnectionRotatedError  a used connection closed under it: maybe processed
│   │   └── RefusedStreamError     refused unprocessed (GOAWAY, REFUSED_STREAM): safe to resend
│   ├── RequestTimeoutError        .phase: connect | read | write | pool | attempt | total
│   ├── StatusError                .response, .status_code
│   │   ├── ClientStatusError      4xx
│   │   └── ServerStatusError      5xx
│   ├── CircuitBreakerOpenError    .upstream, .retry_after
│   ├── BulkheadFullError          .upstream, .limit: too many calls in flight (and queued)
│   ├── RateLimitedError           .upstream, .retry_after: the client-side rate limit said no
│   ├── MaxRetriesExceededError    .attempts: every attempt's error; __cause__ = the last
│   │   └── RetryBudgetExhaustedError  .upstream: retries stopped early, the budget was empty
│   ├── DecodeError                the body is not the JSON / model that was asked for
│   │   ├── ResponseTooLargeError  .limit: the body passed max_body_bytes (decoded bytes)
│   │   └── ResponseValidationError  .errors: the body does not fit the model (paths, no values)
│   ├── AuthError                  credentials could not be obtained (token provider failed)
│   ├── InvalidRequestError        the request cannot be sent as given (bad URL, scheme, header)
│   ├── PaginationError            the pages do not go on safely: a loop, another origin, max_pages
│   ├── ServiceNotFoundError       .name, .known: no service of that name in the registry
│   └── RedirectError              .status_code, .location: a redirect that is not followed
│       ├── TooManyRedirectsError  more than max_redirects hops, or a loop
│       └── InsecureRedirectError  https → http, refused unless allowed
├── ProviderNotFoundError          .key, .known: no generator is registered under that key
└── ConfigError                    bad settings, option or argument; raised, never returned (*)
```

Errors are values: the pipeline returns them inside ``Failure``. Each is still an ``Exception``,
so a caller who prefers raising can ``raise error`` (``__cause__`` is the underlying exception).
Their ``repr``, ``str`` and ``message`` never contain credentials: every message passes through
:func:`httprail.redact_text` (URLs lose userinfo and credential query values; known secrets and
refused header values are replaced) when the error is built and when it is shown.

(*) One exception: ``ProviderFactory.get`` returns ``Failure(ConfigError)`` when a provider's
builder fails, since building happens when the provider is first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import httpx

from ._redact import redact_text, redact_url

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "AuthError",
    "BulkheadFullError",
    "CircuitBreakerOpenError",
    "ClientStatusError",
    "ConfigError",
    "ConnectError",
    "ConnectionRotatedError",
    "DecodeError",
    "HttprailError",
    "InsecureRedirectError",
    "InvalidRequestError",
    "MaxRetriesExceededError",
    "PaginationError",
    "ProtocolError",
    "ProviderNotFoundError",
    "RateLimitedError",
    "ReadError",
    "RedirectError",
    "RefusedStreamError",
    "RequestError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "RetryBudgetExhaustedError",
    "ServerStatusError",
    "ServiceNotFoundError",
    "StatusError",
    "TimeoutPhase",
    "TooManyRedirectsError",
    "TransportError",
    "WriteError",
]

TimeoutPhase = Literal["connect", "read", "write", "pool", "attempt", "total"]


class HttprailError(Exception):
    """Root of every error httprail returns or raises."""


class ConfigError(HttprailError):
    """A setting, option or argument is invalid; the message names it and the rule it broke.

    Its text passes the redaction rule (:func:`~httprail.redact_text`) when it is made, so
    ``str`` and ``repr`` both show it redacted: a value quoted in it, or an exception's text
    carried into it (a provider builder's), never shows a known secret.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact_text(a) if isinstance(a, str) else a for a in args))


class ProviderNotFoundError(HttprailError):
    """No generator (AI provider) is registered under ``key``.

    Args:
        key: the key that was asked for.
        known: the keys that are registered; the message lists them.
    """

    def __init__(self, key: str, known: Sequence[str] = ()) -> None:
        self.key = key
        self.known: tuple[str, ...] = tuple(known)
        listed = ", ".join(self.known) if self.known else "(none)"
        super().__init__(f"no provider {key!r}; known: {listed}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class RequestError(HttprailError):
    """The failed outcome of one request.

    Args:
        message: what went wrong, for humans.
        request: the request it happened to (``None`` only if it could not even be built).
    """

    counts_against_upstream: bool = True
    """Whether this error says something about the upstream's health. ``False`` for errors
    that are the caller's or the environment's (an invalid request, a failed token provider,
    a request the server refused unprocessed because it rotated the connection): those are
    never counted by the breaker, the retry budget or the hedge's latency record."""

    never_processed: bool = False
    """``True`` when the upstream certainly did not act on the request (it was never sent, or
    the server refused it before processing it): repeating it is safe for any method."""

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        message = redact_text(message)
        super().__init__(message)
        self.message = message
        self.request = request

    def _describe_request(self) -> str:
        if self.request is None:
            return ""
        return f" [{self.request.method} {redact_url(self.request.url)}]"

    def __str__(self) -> str:
        return redact_text(f"{self.message}{self._describe_request()}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class TransportError(RequestError):
    """No usable response arrived: the connection failed or the peer broke the protocol."""


class ConnectError(TransportError):
    """The connection could not be established, so the request was never sent."""

    never_processed = True


class ReadError(TransportError):
    """The connection failed while the response was being read."""


class WriteError(TransportError):
    """The connection failed while the request was being sent."""


class ProtocolError(TransportError):
    """The peer sent something that is not valid HTTP (garbage, truncated message, bad frame)."""


class ConnectionRotatedError(TransportError):
    """A connection that had already answered requests was closed by the server while this
    request was on it (an HTTP/2 GOAWAY, a reset or an end of stream): servers rotate and
    recycle connections (hypercorn every 1,000 requests, load balancers on deploys).

    The server may have processed the request, so it is retried only where any
    ``TransportError`` is (idempotent methods). It says nothing about the upstream's health
    (the retry's fresh connection does), so breaker, retry budget and hedge do not count it.
    """

    counts_against_upstream = False


class RefusedStreamError(TransportError):
    """The server refused the request before processing it, so resending it is safe for any
    method: an HTTP/2 stream above the ``last_stream_id`` of the server's GOAWAY, a
    ``REFUSED_STREAM`` reset, or a request not one byte of which was written before a used
    connection broke. ``HttpxTerminal`` resends such a request at once on another connection;
    this error is what is left when that failed too. Not counted against the upstream.
    """

    counts_against_upstream = False
    never_processed = True


class RequestTimeoutError(RequestError):
    """A deadline passed.

    ``phase`` says which: ``connect``, ``read``, ``write`` or ``pool`` (the backend's own
    timeouts), ``attempt`` (one try, set by ``Timeout(phase="attempt")``) or ``total``
    (the whole call across retries). A ``connect`` or ``pool`` timeout ended before the
    request was sent: ``never_processed`` is true for those two phases.
    """

    def __init__(
        self, message: str, *, phase: TimeoutPhase, request: httpx.Request | None = None
    ) -> None:
        super().__init__(message, request=request)
        self.phase: TimeoutPhase = phase
        self.never_processed = phase in ("connect", "pool")


class StatusError(RequestError):
    """The server answered with an error status (>= 400).

    The response's body has been read (up to a size cap), so ``response.text`` and
    ``response.json()`` work without I/O.
    """

    def __init__(self, response: httpx.Response, *, message: str | None = None) -> None:
        text = message or f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        super().__init__(text, request=response.request)
        self.response = response
        self.status_code = response.status_code

    __match_args__ = ("status_code",)

    @staticmethod
    def from_response(response: httpx.Response) -> StatusError:
        """The right subclass for the response's status code."""
        if 400 <= response.status_code < 500:
            return ClientStatusError(response)
        if response.status_code >= 500:
            return ServerStatusError(response)
        return StatusError(response)


class ClientStatusError(StatusError):
    """A 4xx answer: the request was refused as sent."""


class ServerStatusError(StatusError):
    """A 5xx answer: the server failed."""


class CircuitBreakerOpenError(RequestError):
    """The breaker for ``upstream`` is open (or its half-open probe slots are all taken).

    ``retry_after`` is the number of seconds until the breaker admits a probe again.
    """

    counts_against_upstream = False
    never_processed = True

    def __init__(
        self, *, upstream: str, retry_after: float, request: httpx.Request | None = None
    ) -> None:
        super().__init__(
            f"circuit breaker open for {upstream}; retry in {retry_after:.3f}s", request=request
        )
        self.upstream = upstream
        self.retry_after = retry_after


class MaxRetriesExceededError(RequestError):
    """Every allowed attempt failed.

    ``attempts`` holds each attempt's error in order; ``__cause__`` is the last of them.
    """

    def __init__(
        self, attempts: Sequence[RequestError], *, request: httpx.Request | None = None
    ) -> None:
        if not attempts:
            raise ValueError("MaxRetriesExceededError needs at least one attempt")
        last = attempts[-1]
        super().__init__(
            f"gave up after {len(attempts)} attempts; last error: {last.message}",
            request=request or last.request,
        )
        self.attempts: tuple[RequestError, ...] = tuple(attempts)
        self.__cause__ = last

    @property
    def last(self) -> RequestError:
        """The error of the final attempt."""
        return self.attempts[-1]


class RetryBudgetExhaustedError(MaxRetriesExceededError):
    """Retrying stopped before ``max_retries`` because ``upstream``'s retry budget was empty.

    The budget caps retries to a share of recent traffic so that an upstream in trouble is not
    buried under retries. ``attempts`` holds the errors of the attempts that were made.
    """

    def __init__(
        self,
        attempts: Sequence[RequestError],
        *,
        upstream: str,
        request: httpx.Request | None = None,
    ) -> None:
        super().__init__(attempts, request=request)
        self.upstream = upstream
        self.message = (
            f"retry budget for {upstream} exhausted after {len(self.attempts)} "
            f"attempt{'s' if len(self.attempts) != 1 else ''}; last error: {self.last.message}"
        )
        self.args = (self.message,)


class BulkheadFullError(RequestError):
    """``upstream`` already has ``limit`` calls in flight (and its wait queue, if any, is full
    or the wait would pass the deadline); the request was not sent."""

    counts_against_upstream = False
    never_processed = True

    def __init__(self, *, upstream: str, limit: int, request: httpx.Request | None = None) -> None:
        super().__init__(f"bulkhead full for {upstream}: {limit} calls in flight", request=request)
        self.upstream = upstream
        self.limit = limit


class RateLimitedError(RequestError):
    """The client-side rate limit for ``upstream`` would make the request wait past its
    deadline (or longer than allowed); it was not sent. ``retry_after`` is the number of seconds
    until a request would be admitted."""

    counts_against_upstream = False
    never_processed = True

    def __init__(
        self, *, upstream: str, retry_after: float, request: httpx.Request | None = None
    ) -> None:
        super().__init__(
            f"rate limited for {upstream}; next slot in {retry_after:.3f}s", request=request
        )
        self.upstream = upstream
        self.retry_after = retry_after


class DecodeError(RequestError):
    """The body could not be decoded as the JSON or model that was asked for."""


class ResponseTooLargeError(DecodeError):
    """The response body passed ``limit`` bytes, counted after content decoding.

    The body was not kept (reading stopped at the limit and the connection was closed). The
    limit is the ``max_body_bytes`` setting (``HTTP_MAX_BODY_BYTES``) or the request's
    ``"httprail.max_body_bytes"`` extension. The server did answer, so the request is not
    retried, and the error does not count against the upstream's health (breaker, retry budget,
    hedge): the body is too big for this caller, not a sign that the upstream is failing.
    """

    counts_against_upstream = False

    def __init__(self, *, limit: int, request: httpx.Request | None = None) -> None:
        super().__init__(
            f"response body larger than {limit:,} bytes (max_body_bytes: set "
            "HTTP_MAX_BODY_BYTES, or the 'httprail.max_body_bytes' request extension)",
            request=request,
        )
        self.limit = limit


class ResponseValidationError(DecodeError):
    """The body is JSON but does not fit the model it was read as (``what``).

    ``errors`` keeps pydantic's findings without the input: one mapping per problem with
    ``loc`` (the field path, a tuple of names and indexes) and ``type`` (pydantic's error type,
    such as ``missing`` or ``int_parsing``). The message lists the paths and types, never a
    value from the body (a body may hold secrets), and pydantic's own error is not kept as the
    cause (its text shows the input). The upstream answered; the answer does not fit the
    caller's model: not retried, not counted against the upstream.
    """

    counts_against_upstream = False

    def __init__(
        self,
        what: str,
        errors: Sequence[Mapping[str, object]],
        *,
        request: httpx.Request | None = None,
    ) -> None:
        self.errors: tuple[Mapping[str, object], ...] = tuple(errors)
        shown = "; ".join(
            f"{_path(e.get('loc'))} ({e.get('type')})" for e in self.errors[:_SHOWN_PROBLEMS]
        )
        more = len(self.errors) - _SHOWN_PROBLEMS
        if more > 0:
            shown += f"; and {more} more"
        count = len(self.errors)
        super().__init__(
            f"body does not fit {what}: {count} problem{'s' if count != 1 else ''}: {shown}",
            request=request,
        )


_SHOWN_PROBLEMS = 10


def _path(loc: object) -> str:
    if not isinstance(loc, tuple) or not loc:
        return "<root>"
    return ".".join(str(part) for part in loc)


class PaginationError(RequestError):
    """Paging stopped where going on would be unsafe or unending: the next page's link points
    to another origin (the service's credentials would go with it), the same next URL or cursor
    came twice (a loop), the next link is not a usable URL, or ``max_pages`` pages were read
    and the service still announces more. Pages read before it were yielded."""

    counts_against_upstream = False


class ServiceNotFoundError(RequestError):
    """No service of that name is in the registry (``ServiceRegistry.client``); the message
    lists the services it knows. The caller's mistake: not retried, not counted against any
    upstream.

    Args:
        name: the name that was asked for.
        known: the names the registry knows.
    """

    counts_against_upstream = False
    never_processed = True

    def __init__(self, name: str, known: Sequence[str] = ()) -> None:
        self.name = name
        self.known: tuple[str, ...] = tuple(known)
        listed = ", ".join(self.known) if self.known else "(none)"
        super().__init__(f"no service {name!r}; known: {listed}")


class AuthError(RequestError):
    """Credentials could not be obtained (for example, a token provider failed)."""

    counts_against_upstream = False
    never_processed = True


class InvalidRequestError(RequestError):
    """The request cannot be sent as given: a malformed URL, an unsupported scheme, a bad header."""

    counts_against_upstream = False
    never_processed = True


class RedirectError(RequestError):
    """A redirect the ``Redirects`` stage will not follow: its ``Location`` is missing, not a
    URL or not HTTP(S). ``status_code`` is the redirect's status, ``location`` the target
    (redacted, as every URL in an error), or ``None``.

    The upstream answered, and is not to blame for the client's policy: redirect errors are
    not counted against it, and they are not retried.
    """

    counts_against_upstream = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        location: httpx.URL | str | None = None,
        request: httpx.Request | None = None,
    ) -> None:
        shown = None if location is None else redact_url(location)
        text = message if shown is None else f"{message} (Location: {shown})"
        super().__init__(text, request=request)
        self.status_code = status_code
        self.location = shown


class TooManyRedirectsError(RedirectError):
    """The call was redirected more than ``max_redirects`` times (``redirects`` says how many
    were followed), or back to a URL it had already been sent to with the same method."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        redirects: int,
        location: httpx.URL | str | None = None,
        request: httpx.Request | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, location=location, request=request)
        self.redirects = redirects


class InsecureRedirectError(RedirectError):
    """An ``https`` request was redirected to plain ``http``: refused unless the stage was
    built with ``allow_downgrade=True`` (the request, its credentials and the answer would
    cross the network unencrypted)."""
