"""A test clock whose sleepers wait until the test moves time past their wake-up, and the
requests the queueing tests (bulkhead, rate limiter) send through it."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

import httpx

from httprail import Outcome, Pipeline, RequestContext, set_context


async def settle(rounds: int = 30) -> None:
    """Let every task that can run, run (and the tasks they wake, and so on)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class SteppingClock:
    """``clock()`` and ``await sleep(seconds)`` on virtual time moved by :meth:`advance`.

    Unlike ``FakeClock``, whose ``sleep`` returns at once, a sleeper here stays parked until
    ``advance`` reaches its wake-up time, so several tasks can wait at the same time.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    @property
    def sleeping(self) -> int:
        """Sleepers still parked."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own time, in order."""
        target = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            wake, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            if not future.done():
                future.set_result(None)
                await settle()
        self.now = target
        await settle()


def request(path: str = "/a", *, host: str = "api.test", deadline: float | None = None) -> Any:
    """A GET to ``https://host/path``, with a total deadline in its context if given."""
    req = httpx.Request("GET", f"https://{host}{path}")
    if deadline is not None:
        set_context(req, RequestContext(deadline=deadline))
    return req


def start(pipeline: Pipeline, *paths: str, **options: Any) -> list[asyncio.Task[Outcome]]:
    """One task per path, each sending :func:`request` through ``pipeline``."""
    return [asyncio.create_task(pipeline.send(request(p, **options))) for p in paths]
