"""Active health checks: probe a service's health URL on each of its endpoints, periodically.

Every ``interval`` seconds each endpoint gets one ``GET`` of the health URL (aimed at it as a
request is: its origin, its path prefix), straight through the service's terminal: no retry,
no breaker, no auth (a health URL is for load balancers). A 2xx within ``timeout`` passes;
anything else fails. ``unhealthy_threshold`` failures in a row mark the endpoint unhealthy
(the balancer skips it unless every endpoint is), ``healthy_threshold`` passes in a row mark it
healthy again. Endpoints start healthy.

A probe never raises out of the task: a terminal that raises is a failed probe (logged).
Cancellation propagates, so closing the registry stops the task at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from returns.result import Success

from .._context import EXTENSION_KEY, RequestContext
from .._errors import ConfigError
from .._log import get_logger
from .._pipeline import TerminalPlugin
from ..middleware._redirects import origin_of
from ._balancer import Balancer, Endpoint
from ._config import HealthCheck

__all__ = ["HealthChecker", "health_url_of"]

_log = get_logger("httprail.services")
_PROBE_CONTEXT = RequestContext(raw_status=True)


def health_url_of(base: httpx.URL, health_url: str, where: str) -> httpx.URL:
    """``health_url`` (a path, or a URL on the base URL's origin) as a URL on ``base``.

    Raises:
        ConfigError: it is not a URL, or points to another origin.
    """
    try:
        url = base.join(health_url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ConfigError(f"{where}: not a valid URL or path") from None
    if origin_of(url) != origin_of(base):
        raise ConfigError(
            f"{where}: must be a path (/health) or a URL on the service's base URL origin"
        )
    return url


class HealthChecker:
    """The probes of one service's endpoints.

    Args:
        balancer: the service's endpoints; their ``healthy`` flag is what this sets.
        url: the health URL on the service's base URL (see :func:`health_url_of`).
        terminal: what sends the probes (the service's own terminal, under the balancer).
        options: interval, timeout, thresholds.
        sleep: waits between rounds (injected in tests).
        wall: seconds since the epoch, for ``last_check`` (injected in tests).
    """

    def __init__(
        self,
        balancer: Balancer,
        url: httpx.URL,
        terminal: TerminalPlugin,
        options: HealthCheck | None = None,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.balancer = balancer
        self.url = url
        self.options = options if options is not None else HealthCheck()
        self._terminal = terminal
        self._sleep = sleep
        self._wall = wall
        self._passes: dict[int, int] = {}
        self._fails: dict[int, int] = {}
        self.rounds = 0

    def __repr__(self) -> str:
        return f"HealthChecker({self.balancer.service!r}, every {self.options.interval} s)"

    async def run(self) -> None:
        """Probe every endpoint, then wait ``interval``; forever (until cancelled)."""
        while True:
            await self.check_once()
            await self._sleep(self.options.interval)

    async def check_once(self) -> None:
        """One round: every endpoint probed once, concurrently."""
        await asyncio.gather(*(self._probe(e) for e in self.balancer.endpoints))
        self.rounds += 1

    async def _probe(self, endpoint: Endpoint) -> None:
        seconds = self.options.timeout
        request = self.balancer.aim(httpx.Request("GET", self.url), endpoint)
        request.extensions[EXTENSION_KEY] = _PROBE_CONTEXT
        request.extensions["timeout"] = dict.fromkeys(("connect", "read", "write", "pool"), seconds)
        reason: str
        try:
            async with asyncio.timeout(seconds):
                outcome = await self._terminal.send(request)
        except TimeoutError:
            reason = f"no answer within {seconds} s"
        except Exception as exc:  # noqa: BLE001 - a probe never raises out of the task
            reason = f"the terminal raised {type(exc).__name__}"
        else:
            if type(outcome) is Success:
                status = outcome.unwrap().status_code
                reason = "" if 200 <= status < 300 else f"status {status}"
            else:
                reason = type(outcome.failure()).__name__
        endpoint.last_check = datetime.fromtimestamp(self._wall(), UTC).isoformat(
            timespec="seconds"
        )
        self._count(endpoint, reason)

    def _count(self, endpoint: Endpoint, reason: str) -> None:
        key = id(endpoint)
        options = self.options
        if not reason:
            self._fails[key] = 0
            passes = self._passes[key] = self._passes.get(key, 0) + 1
            if not endpoint.healthy and passes >= options.healthy_threshold:
                self.balancer.set_healthy(endpoint, True)
            return
        self._passes[key] = 0
        fails = self._fails[key] = self._fails.get(key, 0) + 1
        _log.info(
            "httprail.health_probe_failed",
            service=self.balancer.service,
            endpoint=endpoint.shown,
            reason=reason,
            in_a_row=fails,
        )
        if endpoint.healthy and fails >= options.unhealthy_threshold:
            self.balancer.set_healthy(endpoint, False)
