"""Per-request state: a frozen :class:`RequestContext` carried in ``request.extensions``."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import httpx

from ._events import Observer

__all__ = ["EXTENSION_KEY", "RequestContext", "get_context", "set_context", "upstream_of"]

EXTENSION_KEY = "httprail"
_ORIGIN_KEY = "httprail.origin"
# The URL whose origin was computed last, and that origin: most calls go to one URL object.
_last_origin: list[tuple[httpx.URL | None, str]] = [(None, "")]

_EMPTY_TAGS: Mapping[str, str] = MappingProxyType({})


class RequestContext(NamedTuple):
    """What the stages know about one logical request (immutable; change it with ``replace``).

    A named tuple rather than a frozen dataclass: it is built on the hot path (a total
    timeout records its deadline in every request), and a tuple is built several times faster.

    Attributes:
        attempt: 1 for the first try, 2 for the first retry, and so on.
        deadline: ``time.monotonic()`` value after which the whole call has failed, or ``None``.
        upstream: key for shared per-upstream state (breaker, metrics); the URL's origin if unset.
        provider: name of the provider or service this request belongs to, if any.
        stream: the caller will stream the body; the terminal must not read it.
        raw_status: the caller wants every status as ``Success``; no ``StatusError``.
        tags: free-form labels for logs and metrics.
        observers: receivers of instrumentation events for this request.
    """

    attempt: int = 1
    deadline: float | None = None
    upstream: str | None = None
    provider: str | None = None
    stream: bool = False
    raw_status: bool = False
    tags: Mapping[str, str] = _EMPTY_TAGS
    observers: tuple[Observer, ...] = ()

    def replace(self, **changes: Any) -> RequestContext:
        """A copy with ``changes`` applied."""
        return self._replace(**changes)


DEFAULT_CONTEXT = RequestContext()


def get_context(request: httpx.Request) -> RequestContext:
    """The request's context (a default one if none was attached)."""
    ctx = request.extensions.get(EXTENSION_KEY)
    return ctx if isinstance(ctx, RequestContext) else DEFAULT_CONTEXT


def set_context(request: httpx.Request, ctx: RequestContext) -> None:
    """Attach ``ctx`` to ``request`` (replacing any previous context)."""
    request.extensions[EXTENSION_KEY] = ctx


def upstream_of(request: httpx.Request) -> str:
    """The key shared per-upstream state is stored under: the context's, else the URL origin.

    The origin is computed once per request (several stages ask) and cached in the request's
    extensions next to the URL it was computed from.
    """
    extensions = request.extensions
    ctx = extensions.get(EXTENSION_KEY)
    if isinstance(ctx, RequestContext) and ctx.upstream is not None:
        return ctx.upstream
    url = request.url
    last = _last_origin[0]
    if last[0] is url:  # the client hands out one URL object per distinct URL
        return last[1]
    cached = extensions.get(_ORIGIN_KEY)
    if cached is not None and cached[0] is url:
        origin: str = cached[1]
        return origin
    port = url.port
    origin = (
        f"{url.scheme}://{url.host}:{port}" if port is not None else f"{url.scheme}://{url.host}"
    )
    extensions[_ORIGIN_KEY] = _last_origin[0] = (url, origin)
    return origin
