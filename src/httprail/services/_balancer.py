"""Endpoints of one service: pick one per attempt, eject outliers (Envoy-style).

:class:`BalancedTerminal` wraps a service's terminal, so it sits inside every stage: each
attempt ``Retry`` makes is balanced again (a retry goes elsewhere), while the stages above see
the service's own URL (its origin is the one auth stages bind their credentials to, and the
breaker and metrics count per service). A request to another origin passes untouched.

Picking, among the endpoints neither ejected nor marked unhealthy by a health check:
``round_robin`` in turn, ``least_request`` the less busy of two picked at random (power of two
choices). If none is left, the ones not ejected are used, then all of them.

Ejection: ``consecutive_failures`` 5xx answers or transport failures in a row (only errors that
count against the upstream: an invalid request or a refused-unprocessed stream says nothing
about the endpoint) eject it for ``base_ejection_time`` times the number of times it was ejected,
at most ``max_ejection_time``; the count drops by one for every ``base_ejection_time`` it then
stays in. At most ``max_ejection_percent`` of the endpoints are out at once (at least one may
be), and never the last usable one. An ejected endpoint comes back when its time is up.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Literal

import httpx
from returns.result import Failure, Success

from .._errors import RequestError, RequestTimeoutError, StatusError, TransportError
from .._log import get_logger
from .._pipeline import TerminalPlugin
from .._redact import redact_url
from .._result import Outcome
from ..middleware._redirects import origin_of
from ..terminals._backends import moved_to
from ..terminals._mapping import map_exception
from ._config import BalancerOptions

__all__ = ["BalancedTerminal", "Balancer", "Endpoint", "EndpointState"]

EndpointState = Literal["healthy", "unhealthy", "ejected"]

_log = get_logger("httprail.services")


class Endpoint:
    """One place a service runs, and what the balancer knows about it (mutable, owned by its
    :class:`Balancer`; read it, do not change it)."""

    __slots__ = (
        "attempts",
        "ejected_until",
        "failures",
        "healthy",
        "host",
        "in_flight",
        "last_check",
        "netloc",
        "port",
        "prefix",
        "returned_at",
        "scheme",
        "shown",
        "streak",
        "times_ejected",
        "url",
    )

    def __init__(self, url: httpx.URL) -> None:
        self.url = url
        self.shown = redact_url(url)
        self.scheme, self.host, self.port = url.scheme, url.host, url.port
        self.netloc = url.netloc.decode("ascii")
        path = url.raw_path.rstrip(b"/")
        self.prefix: bytes | None = path or None
        self.in_flight = self.streak = self.times_ejected = self.attempts = self.failures = 0
        self.ejected_until: float | None = None
        self.returned_at: float | None = None
        self.healthy = True
        self.last_check: str | None = None

    def __repr__(self) -> str:
        return f"Endpoint({self.shown!r})"


def _verdict(outcome: Outcome) -> bool | None:
    """``True``: the endpoint failed; ``False``: it answered; ``None``: says nothing of it."""
    if type(outcome) is Success:
        response: httpx.Response = outcome.unwrap()
        return response.status_code >= 500
    error: RequestError = outcome.failure()
    if isinstance(error, StatusError):
        return error.status_code >= 500 and error.counts_against_upstream
    if not error.counts_against_upstream:
        return None
    if isinstance(error, TransportError | RequestTimeoutError):
        return True
    return None


class Balancer:
    """The endpoints of one service, their state, and the choice of one per attempt.

    Args:
        base: the service's base URL (requests to its origin are balanced; its path is the
            prefix an endpoint's own path replaces).
        endpoints: the endpoint URLs (checked: see ``check_endpoint``).
        options: policy and ejection.
        service: the service's name, for logs.
        clock: monotonic seconds (``FakeClock`` in tests).
        rng: random source of ``least_request``.
    """

    def __init__(
        self,
        base: httpx.URL,
        endpoints: Sequence[httpx.URL],
        options: BalancerOptions | None = None,
        *,
        service: str = "",
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("a balancer needs at least one endpoint")
        self.base = base
        self.origin = origin_of(base)
        self._base_prefix = base.raw_path.split(b"?", 1)[0].rstrip(b"/")
        self.endpoints: tuple[Endpoint, ...] = tuple(Endpoint(url) for url in endpoints)
        self.options = options if options is not None else BalancerOptions()
        self.service = service
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._turn = 0

    def __repr__(self) -> str:
        shown = ", ".join(e.shown for e in self.endpoints)
        return f"Balancer({self.service!r}, [{shown}], policy={self.options.policy!r})"

    # --- choosing -------------------------------------------------------------------------

    def pick(self) -> Endpoint:
        """The endpoint for the next attempt."""
        now = self._clock()
        self._release(now)
        usable = [e for e in self.endpoints if e.ejected_until is None and e.healthy]
        if not usable:
            usable = [e for e in self.endpoints if e.ejected_until is None] or list(self.endpoints)
        if len(usable) == 1:
            return usable[0]
        if self.options.policy == "least_request":
            first, second = self._rng.sample(usable, 2)
            return second if second.in_flight < first.in_flight else first
        self._turn += 1
        return usable[self._turn % len(usable)]

    def _release(self, now: float) -> None:
        for endpoint in self.endpoints:
            until = endpoint.ejected_until
            if until is not None and now >= until:
                endpoint.ejected_until = None
                endpoint.returned_at = now
                endpoint.streak = 0
                _log.info(
                    "httprail.endpoint_returned", service=self.service, endpoint=endpoint.shown
                )

    def state(self, endpoint: Endpoint) -> EndpointState:
        """``ejected`` (by outlier detection), ``unhealthy`` (by health checks) or ``healthy``."""
        self._release(self._clock())
        if endpoint.ejected_until is not None:
            return "ejected"
        return "healthy" if endpoint.healthy else "unhealthy"

    def ejected_for(self, endpoint: Endpoint) -> float | None:
        """Seconds until ``endpoint`` comes back (``None``: it is not ejected)."""
        if endpoint.ejected_until is None:
            return None
        return max(0.0, endpoint.ejected_until - self._clock())

    # --- recording ------------------------------------------------------------------------

    def record(self, endpoint: Endpoint, outcome: Outcome) -> None:
        """Count ``outcome`` of an attempt on ``endpoint``; eject it when it is an outlier."""
        failed = _verdict(outcome)
        if failed is None:
            return
        if not failed:
            endpoint.streak = 0
            return
        self._release(self._clock())
        endpoint.failures += 1
        endpoint.streak += 1
        if endpoint.streak >= self.options.consecutive_failures and endpoint.ejected_until is None:
            self._eject(endpoint, outcome)

    def _eject(self, endpoint: Endpoint, outcome: Outcome) -> None:
        now = self._clock()
        options = self.options
        out = sum(1 for e in self.endpoints if e.ejected_until is not None)
        limit = max(1, math.floor(len(self.endpoints) * options.max_ejection_percent / 100))
        others = sum(
            1 for e in self.endpoints if e is not endpoint and e.ejected_until is None and e.healthy
        )
        if out >= limit or others == 0:
            return  # keeps failing in place: ejecting it would leave too few (or none)
        if endpoint.returned_at is not None and endpoint.times_ejected:
            stayed = int((now - endpoint.returned_at) / options.base_ejection_time)
            endpoint.times_ejected = max(0, endpoint.times_ejected - stayed)
        endpoint.times_ejected += 1
        seconds = min(
            options.base_ejection_time * endpoint.times_ejected, options.max_ejection_time
        )
        endpoint.ejected_until = now + seconds
        endpoint.streak = 0
        error = type(outcome.failure()).__name__ if type(outcome) is Failure else "5xx"
        _log.warning(
            "httprail.endpoint_ejected",
            service=self.service,
            endpoint=endpoint.shown,
            seconds=seconds,
            times=endpoint.times_ejected,
            error=error,
        )

    def set_healthy(self, endpoint: Endpoint, healthy: bool) -> None:
        """What the active health checks concluded about ``endpoint``."""
        if endpoint.healthy != healthy:
            endpoint.healthy = healthy
            _log.warning(
                "httprail.endpoint_healthy" if healthy else "httprail.endpoint_unhealthy",
                service=self.service,
                endpoint=endpoint.shown,
            )

    # --- rewriting ------------------------------------------------------------------------

    def aim(self, request: httpx.Request, endpoint: Endpoint) -> httpx.Request:
        """``request`` (to the service's base URL) sent to ``endpoint``: its origin, its path
        prefix in place of the base URL's, the same query, ``Host`` to match."""
        url = request.url
        raw = url.raw_path
        moved_path = False
        if endpoint.prefix is not None:
            base = self._base_prefix
            if raw.startswith(base) and raw[len(base) : len(base) + 1] in (b"", b"/", b"?"):
                raw = endpoint.prefix + raw[len(base) :]
                moved_path = True
        if not moved_path and (url.scheme, url.host, url.port) == (
            endpoint.scheme,
            endpoint.host,
            endpoint.port,
        ):
            return request
        moved = url.copy_with(
            scheme=endpoint.scheme, host=endpoint.host, port=endpoint.port, raw_path=raw
        )
        return moved_to(request, moved)

    def balances(self, request: httpx.Request) -> bool:
        """Whether ``request`` goes to the service's origin (else it is sent untouched)."""
        return origin_of(request.url) == self.origin


class BalancedTerminal:
    """A terminal that sends each attempt to one of a service's endpoints (see the module).

    Args:
        terminal: the terminal that sends (its pool serves every endpoint).
        balancer: the endpoints and their state.
    """

    name = "balanced"

    def __init__(self, terminal: TerminalPlugin, balancer: Balancer) -> None:
        self.inner = terminal
        self.balancer = balancer
        self.speaks_http2 = getattr(terminal, "speaks_http2", True)

    def __repr__(self) -> str:
        return f"BalancedTerminal({self.inner!r}, {self.balancer!r})"

    async def send(self, request: httpx.Request) -> Outcome:
        """Send ``request`` to the endpoint the balancer picks, and record how it went."""
        balancer = self.balancer
        if not balancer.balances(request):
            return await self.inner.send(request)
        endpoint = balancer.pick()
        aimed = balancer.aim(request, endpoint)
        endpoint.attempts += 1
        endpoint.in_flight += 1
        try:
            try:
                outcome = await self.inner.send(aimed)
            except Exception as exc:  # noqa: BLE001 - a terminal that raises breaks its contract
                outcome = Failure(map_exception(exc, aimed))
        finally:
            endpoint.in_flight -= 1
        balancer.record(endpoint, outcome)
        return outcome

    async def aclose(self) -> None:
        """Close the wrapped terminal."""
        await self.inner.aclose()
