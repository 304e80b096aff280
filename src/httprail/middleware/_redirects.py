"""``Redirects``: follow 3xx answers as one stage, the same whatever the terminal.

No terminal follows a redirect on its own (aiohttp ``allow_redirects=False``, httpx
``follow_redirects=False``, libcurl without ``FOLLOWLOCATION``): a 3xx comes back as it is,
unless this stage is in the chain (``HTTP_FOLLOW_REDIRECTS=true`` adds it to the default stack).
Each hop is a new request sent through the stages inside this one, so retries, the breaker and
auth see every hop under its own origin.

When a hop leaves the origin (scheme, host or port changes; ``http`` → ``https`` on the same
host with default ports is an upgrade and keeps it), ``Authorization``, ``Proxy-Authorization``,
``Cookie`` and every header an auth stage set (auth stages name them in the request's
:data:`CREDENTIALS_EXTENSION`) are removed, and the auth stages inside add nothing there unless
that origin is theirs (see ``docs/plugins/auth.md``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import httpx
from returns.result import Failure, Success

from .._args import strings_of
from .._context import EXTENSION_KEY, RequestContext
from .._errors import ConfigError, InsecureRedirectError, RedirectError, TooManyRedirectsError
from .._log import get_logger
from .._result import Next, Outcome
from .._settings import HttpSettings

__all__ = [
    "CREDENTIALS_EXTENSION",
    "FOLLOW_EXTENSION",
    "REDIRECT_STATUSES",
    "Redirects",
    "origin_of",
    "same_origin",
]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

CREDENTIALS_EXTENSION = "httprail.credential_headers"
"""Request extension: a tuple of the (lower-case) header names auth stages set on it; they are
removed with ``Authorization``, ``Proxy-Authorization`` and ``Cookie`` when the origin changes."""
FOLLOW_EXTENSION = "httprail.follow_redirects"
"""Request extension: ``False`` keeps ``Redirects`` from following this request's redirects
(what a call's ``follow_redirects=False`` sets)."""

ALWAYS_STRIPPED = ("authorization", "proxy-authorization", "cookie")
_BODY_HEADERS = ("content-length", "content-type", "transfer-encoding")
_DEFAULT_PORTS = {"http": 80, "https": 443}

_log = get_logger("httprail.redirects")


def origin_of(url: httpx.URL) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with the scheme's default port filled in."""
    scheme = url.scheme
    port = url.port
    return scheme, url.host, port if port is not None else _DEFAULT_PORTS.get(scheme)


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """Whether ``a`` and ``b`` share scheme, host and port."""
    return origin_of(a) == origin_of(b)


def _is_upgrade(old: httpx.URL, new: httpx.URL) -> bool:
    """``http://host[:80]`` → ``https://host[:443]``: the same site, now encrypted."""
    return (
        old.scheme == "http"
        and new.scheme == "https"
        and old.host == new.host
        and old.port in (None, 80)
        and new.port in (None, 443)
    )


class Redirects:
    """Follow redirects: 301, 302, 303, 307 and 308, as httpx does, safely across origins.

    Methods: 303 (and 302, as browsers do) becomes ``GET`` without a body, unless the request
    was ``HEAD``; 301 turns ``POST`` into ``GET``; otherwise (307, 308) the method and body are
    kept, which needs a body that can be sent again (bytes): a streamed upload is not
    replayed and the 3xx is returned as it is (logged). Each hop goes through the stages
    inside this one; the final response's ``history`` lists the 3xx responses (closed).

    Safety: a hop to another origin loses ``Authorization``, ``Proxy-Authorization``,
    ``Cookie``, every header an auth stage set and those in ``strip_headers``; ``https`` →
    ``http`` is ``InsecureRedirectError`` unless ``allow_downgrade``; more than
    ``max_redirects`` hops, or a hop back to a URL already sent with the same method (a
    loop), is ``TooManyRedirectsError``; a ``Location`` that is not an http(s) URL is
    ``RedirectError``. None of these is retried or counted against the upstream.

    Place it outside ``Retry`` (each hop is retried on its own) and outside the auth stages
    (so they see every hop), inside ``Timeout(total)`` (the deadline covers every hop)::

        Logging → Metrics → Timeout(total) → Redirects → Retry → CircuitBreaker → Auth → terminal

    Args:
        max_redirects: hops followed at most (0..100; default 20, as httpx).
        allow_downgrade: follow ``https`` → ``http`` (credentials are stripped all the same).
        strip_headers: more header names removed when the origin changes.

    Example:
        >>> stack = [Timeout(30), Redirects(max_redirects=5), Retry()]  # doctest: +SKIP
    """

    name = "redirects"

    def __init__(
        self,
        *,
        max_redirects: int = 20,
        allow_downgrade: bool = False,
        strip_headers: Collection[str] = (),
    ) -> None:
        if isinstance(max_redirects, bool) or not isinstance(max_redirects, int):
            raise ConfigError(f"Redirects(max_redirects=...) must be an int, got {max_redirects!r}")
        if not 0 <= max_redirects <= 100:
            raise ConfigError(
                f"Redirects(max_redirects=...) must be within 0..100, got {max_redirects!r}"
            )
        stripped = strings_of("Redirects", "strip_headers", strip_headers, "header names")
        self.max_redirects = max_redirects
        self.allow_downgrade = bool(allow_downgrade)
        self.strip_headers = tuple(
            dict.fromkeys([*ALWAYS_STRIPPED, *(h.lower() for h in stripped)])
        )

    @classmethod
    def from_settings(cls, settings: HttpSettings, **overrides: Any) -> Redirects:
        """A stage following up to ``max_redirects`` hops (keyword arguments win)."""
        options: dict[str, Any] = {"max_redirects": settings.max_redirects}
        options.update(overrides)
        return cls(**options)

    def __repr__(self) -> str:
        return (
            f"Redirects(max_redirects={self.max_redirects}, allow_downgrade={self.allow_downgrade})"
        )

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        url = request.url  # as sent from here: a stage inside may add to it (a query key)
        outcome = await call_next(request)
        if type(outcome) is not Success or request.extensions.get(FOLLOW_EXTENSION) is False:
            return outcome
        response: httpx.Response = outcome.unwrap()
        if response.status_code not in REDIRECT_STATUSES or "location" not in response.headers:
            return outcome
        return await self._follow(request, url, response, call_next)

    async def _follow(
        self, request: httpx.Request, url: httpx.URL, response: httpx.Response, call_next: Next
    ) -> Outcome:
        history: list[httpx.Response] = []
        seen = {(request.method, str(url))}
        while True:
            hop = self._next_request(request, url, response, len(history), seen)
            if isinstance(hop, httpx.Response):
                hop.history = history
                return Success(hop)  # a body that cannot be replayed: the 3xx as it is
            await response.aclose()
            if isinstance(hop, RedirectError):
                return Failure(hop)
            history.append(response)
            url = hop.url
            seen.add((hop.method, str(url)))
            outcome = await call_next(hop)
            if type(outcome) is not Success:
                return outcome
            request, response = hop, outcome.unwrap()
            if response.status_code not in REDIRECT_STATUSES or (
                "location" not in response.headers
            ):
                response.history = history
                return outcome

    def _next_request(
        self,
        request: httpx.Request,
        sent: httpx.URL,
        response: httpx.Response,
        followed: int,
        seen: set[tuple[str, str]],
    ) -> httpx.Request | httpx.Response | RedirectError:
        """The next hop's request, the response itself (not followable), or why not."""
        status = response.status_code
        location = response.headers["location"]
        try:
            url = httpx.URL(location)
            if url.scheme and not url.host:  # "https:/path": absolute, but no host
                url = url.copy_with(host=sent.host)
            if url.is_relative_url:
                url = sent.join(url)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            error = RedirectError(
                f"{status} redirect to an invalid Location: {type(exc).__name__}",
                status_code=status,
                request=request,
            )
            error.__cause__ = exc
            return error
        if url.scheme not in ("http", "https") or not url.host:
            return RedirectError(
                f"{status} redirect to a URL that is not http(s)",
                status_code=status,
                location=url,
                request=request,
            )
        if sent.fragment and not url.fragment:
            url = url.copy_with(fragment=sent.fragment)
        if sent.scheme == "https" and url.scheme == "http" and not self.allow_downgrade:
            return InsecureRedirectError(
                f"{status} redirect from https to http refused",
                status_code=status,
                location=url,
                request=request,
            )
        method = _method_after(status, request.method)
        if followed >= self.max_redirects or (method, str(url)) in seen:
            loop = followed < self.max_redirects
            what = "a redirect loop" if loop else f"more than {self.max_redirects} redirects"
            return TooManyRedirectsError(
                f"{what}; last: {status}",
                status_code=status,
                redirects=followed,
                location=url,
                request=request,
            )
        headers = httpx.Headers(request.headers)
        stream = request.stream
        content: bytes | None = None
        if method != request.method and method == "GET":
            for name in _BODY_HEADERS:
                headers.pop(name, None)
        elif isinstance(stream, httpx.ByteStream):
            content = b"".join(stream)
        else:
            _log.warning(
                "httprail.redirect_not_followed",
                status=status,
                method=request.method,
                reason="the body is a stream and cannot be sent again",
            )
            return response
        extensions = dict(request.extensions)
        extensions.pop(CREDENTIALS_EXTENSION, None)
        if not same_origin(sent, url):
            if not _is_upgrade(sent, url):
                credentials = request.extensions.get(CREDENTIALS_EXTENSION, ())
                for name in (*self.strip_headers, *credentials):
                    headers.pop(name, None)
                ctx = extensions.get(EXTENSION_KEY)
                if isinstance(ctx, RequestContext) and ctx.upstream is not None:
                    # The caller's upstream key named the first origin, not this one.
                    extensions[EXTENSION_KEY] = ctx.replace(upstream=None)
            headers["Host"] = url.netloc.decode("ascii")
        ctx = extensions.get(EXTENSION_KEY)
        if isinstance(ctx, RequestContext) and ctx.attempt != 1:
            extensions[EXTENSION_KEY] = ctx.replace(attempt=1)
        return httpx.Request(method, url, headers=headers, content=content, extensions=extensions)


def _method_after(status: int, method: str) -> str:
    """The method of the hop after a ``status`` answer to ``method`` (httpx's rules)."""
    if status in (302, 303) and method != "HEAD":
        return "GET"
    if status == 301 and method == "POST":
        return "GET"
    return method
