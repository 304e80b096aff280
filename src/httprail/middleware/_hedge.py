"""``Hedge``: when an idempotent attempt is slow, send a second one and take the first success.

The primary attempt starts at once; if it has not finished after ``delay`` (fixed, or the
upstream's observed ``quantile`` of latency), one hedge attempt (a copy of the request) races it.
The first ``Success`` is returned; every other attempt is cancelled, awaited, and its response
closed. A hedge costs a token from a per-upstream budget (``budget_ratio`` per request, at most
``budget_burst`` saved up) and is never sent while the given breaker is not closed.

The primary is awaited in the caller's own task with one loop timer beside it, so a call that
is never hedged pays no extra task; hedges run in tasks of their own, and a hedge that wins
interrupts the primary by cancelling the caller's task, a cancellation taken back the way
``asyncio.timeout`` does it.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from array import array
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import httpx
from returns.result import Success

from .._args import is_int, is_number, strings_of
from .._context import get_context, upstream_of
from .._errors import ConfigError, StatusError
from .._events import CircuitState, hedged
from .._log import get_logger
from .._result import Next, Outcome
from ..state._store import shed_idle
from ._circuit_breaker import CircuitBreaker
from ._retry import IDEMPOTENT_METHODS

__all__ = ["HEDGE_EXTENSION", "Hedge", "HedgeStats"]

HEDGE_EXTENSION = "httprail.hedge"
"""Request extension set on hedge copies: 1 for the first hedge, 2 for the second, ..."""

Sleep = Callable[[float], Awaitable[Any]]

_log = get_logger("httprail.hedge")
_ONE_TOKEN = 1.0 - 1e-9  # ten deposits of 0.1 add up to 0.9999999999999999


@dataclass(frozen=True, slots=True)
class HedgeStats:
    """What the hedge stage did for one upstream.

    Attributes:
        requests: hedgeable requests seen (idempotent, replayable, not streamed).
        hedged: requests for which at least one hedge was sent.
        hedges: hedge attempts sent (the extra load on the upstream).
        hedge_wins: requests answered by a hedge rather than the primary.
        no_budget: hedges due but not sent because the budget was empty.
        breaker_not_closed: hedges due but not sent because the breaker was not closed.
        delay: the current hedge delay in seconds (``None``: still learning).
        samples: latency samples held for the adaptive delay.
        tokens: hedges the budget would allow right now.
    """

    requests: int
    hedged: int
    hedges: int
    hedge_wins: int
    no_budget: int
    breaker_not_closed: int
    delay: float | None
    samples: int
    tokens: float


class _Upstream:
    """Latency ring buffer, cached quantile, hedge budget and counters for one upstream."""

    __slots__ = (
        "breaker_not_closed", "dirty", "estimate", "filled", "hedge_wins", "hedged", "hedges",
        "no_budget", "position", "requests", "ring", "swept", "tokens",
    )  # fmt: skip

    def __init__(self, window: int, tokens: float) -> None:
        self.ring = array("d", bytes(8 * window))
        self.position = self.filled = self.dirty = 0
        self.estimate: float | None = None
        self.tokens = tokens
        self.requests = self.hedged = self.hedges = self.hedge_wins = 0
        self.no_budget = self.breaker_not_closed = 0
        self.swept = -1  # ``requests`` when the last sweep looked: unchanged means unused

    def record(self, seconds: float) -> None:
        ring = self.ring
        ring[self.position] = seconds
        self.position = (self.position + 1) % len(ring)
        self.filled = min(self.filled + 1, len(ring))
        self.dirty += 1

    def quantile(self, q: float, min_samples: int, refresh: int) -> float | None:
        """The ``q`` quantile (nearest rank) of the samples, recomputed every ``refresh``."""
        if self.filled < min_samples:
            return None
        if self.estimate is None or self.dirty >= refresh:
            ordered = sorted(self.ring[: self.filled])
            self.estimate = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
            self.dirty = 0
        return self.estimate


class Hedge:
    """Cut the latency tail: race a slow idempotent attempt with a copy, keep the first success.

    Only requests that are safe and possible to send twice are hedged: an idempotent method
    (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) or an ``Idempotency-Key`` header, a replayable body
    (bytes, not a generator or multipart stream), and a response that is read here, not
    streamed by the caller (``client.stream(...)``): a streamed body arrives after this stage
    returns, so it could not be raced, and would hold two connections. Everything else passes
    straight through.

    When: after ``delay`` seconds with no answer, if the budget has a token, the breaker (when
    given) is CLOSED and the call's deadline has not passed. Without ``delay``, the delay is the
    ``quantile`` of the primaries' latencies for that upstream over the last ``window``
    samples; until ``min_samples`` are seen nothing is hedged. A primary that loses to a hedge
    counts as a sample of its time so far, so a tail the hedges hide keeps counting as slow.

    Who wins: the first ``Success``. A failure does not end the race while another attempt is
    in flight; if every attempt fails, the primary's failure is returned (what the call would
    have returned without hedging), for the stages outside (``Retry``) to judge. A failure of
    the primary before any hedge was sent is returned at once: retrying is ``Retry``'s job.

    Budget: each hedgeable request adds ``budget_ratio`` tokens (up to ``budget_burst``); each
    hedge spends one. Over any run of n requests at most ``budget_burst + budget_ratio * n``
    hedges are sent. Cancelling the call cancels every attempt; hedges carry the same context,
    so they never extend its deadline. Read the counters with :meth:`snapshot`.

    Place it inside ``Retry`` and outside ``CircuitBreaker``: ``Retry → Hedge → CircuitBreaker``.

    Args:
        delay: seconds before a hedge is sent; ``None`` learns it from ``quantile``.
        quantile: which latency quantile (0 < q < 1) is the adaptive delay.
        max_hedges: hedges per request at most (each ``delay`` after the previous attempt).
        budget_ratio: hedges allowed per hedgeable request (0 < r <= 1).
        budget_burst: tokens the budget can save up (and starts with), >= 1.
        min_samples: latency samples needed before adaptive hedging starts.
        window: latency samples kept per upstream (the most recent ones).
        max_upstreams: upstreams with state of their own (>= 1; 8 bytes per sample of the
            window each, 8 KB by default). Past it, those with no request since the last sweep
            are forgotten (the oldest if all had one): one that comes back starts afresh, with
            no samples (no adaptive hedge before ``min_samples``) and a full budget, as a new
            upstream does. A race in flight keeps its own reference and is not disturbed.
        breaker: a ``CircuitBreaker`` from the same stack; no hedge unless its state is CLOSED.
        key: the per-upstream key (default: the context's ``upstream`` or the URL origin).
        methods: methods hedged without an ``Idempotency-Key``.
        clock: monotonic clock, compared with the context's deadline.
        sleep: the sleep function (inject a fake for tests).

    Example:
        >>> breaker = CircuitBreaker()  # doctest: +SKIP
        >>> stack = [Timeout(10), Retry(), Hedge(breaker=breaker), breaker]  # doctest: +SKIP
    """

    name = "hedge"

    def __init__(
        self,
        *,
        delay: float | None = None,
        quantile: float = 0.95,
        max_hedges: int = 1,
        budget_ratio: float = 0.1,
        budget_burst: float = 10.0,
        min_samples: int = 100,
        window: int = 1000,
        max_upstreams: int = 1000,
        breaker: CircuitBreaker | None = None,
        key: Callable[[httpx.Request], str] | None = None,
        methods: Collection[str] = IDEMPOTENT_METHODS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        checks: tuple[tuple[str, object, bool, str], ...] = (
            ("delay", delay, delay is None or (is_number(delay) and delay >= 0), "None or >= 0"),
            ("quantile", quantile, is_number(quantile) and 0 < quantile < 1, "within (0, 1)"),
            ("max_hedges", max_hedges, is_int(max_hedges) and max_hedges >= 1, "an int >= 1"),
            ("budget_ratio", budget_ratio, is_number(budget_ratio) and 0 < budget_ratio <= 1,
             "within (0, 1]"),
            ("budget_burst", budget_burst, is_number(budget_burst) and budget_burst >= 1, ">= 1"),
            ("min_samples", min_samples, is_int(min_samples) and min_samples >= 1, "an int >= 1"),
            ("window", window,
             is_int(window) and (not is_int(min_samples) or window >= min_samples),
             "an int >= min_samples"),
            ("max_upstreams", max_upstreams, is_int(max_upstreams) and max_upstreams >= 1,
             "an int >= 1"),
            ("breaker", breaker, breaker is None or (
                callable(getattr(breaker, "key_of", None))
                and inspect.iscoroutinefunction(getattr(breaker, "state", None))
            ), "a CircuitBreaker (key_of, async state)"),
            ("key", key, key is None or callable(key), "callable"),
            ("clock", clock, callable(clock), "callable"),
            ("sleep", sleep, callable(sleep), "callable"),
        )  # fmt: skip
        for label, value, ok, rule in checks:
            if not ok:
                raise ConfigError(f"Hedge({label}=...) must be {rule}, got {value!r}")
        methods = strings_of("Hedge", "methods", methods, "method names, such as ['GET']")
        self.delay = None if delay is None else float(delay)
        self.quantile = float(quantile)
        self.max_hedges = max_hedges
        self.budget_ratio = float(budget_ratio)
        self.budget_burst = float(budget_burst)
        self.min_samples = min_samples
        self.window = window
        self.breaker = breaker
        self.methods = frozenset(m.upper() for m in methods)
        self._refresh = max(1, window // 20)
        self._key = key or upstream_of
        self._clock = clock
        self._sleep = sleep
        self.max_upstreams = max_upstreams
        self._upstreams: dict[str, _Upstream] = {}

    def __repr__(self) -> str:
        when = f"delay={self.delay}" if self.delay is not None else f"quantile={self.quantile}"
        return f"Hedge({when}, budget_ratio={self.budget_ratio})"

    def hedgeable(self, request: httpx.Request) -> bool:
        """Whether ``request`` may be hedged: idempotent, replayable body, not streamed."""
        return (
            (request.method in self.methods or "idempotency-key" in request.headers)
            and isinstance(request.stream, httpx.ByteStream)
            and not get_context(request).stream
        )

    def snapshot(self) -> Mapping[str, HedgeStats]:
        """An immutable copy of every upstream's counters, current delay and budget."""
        return MappingProxyType({key: self._stats(up) for key, up in self._upstreams.items()})

    def _stats(self, up: _Upstream) -> HedgeStats:
        delay = self.delay
        if delay is None:
            delay = up.quantile(self.quantile, self.min_samples, self._refresh)
        return HedgeStats(
            up.requests, up.hedged, up.hedges, up.hedge_wins, up.no_budget,
            up.breaker_not_closed, delay, up.filled, up.tokens,
        )  # fmt: skip

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        if not self.hedgeable(request):
            return await call_next(request)
        key = self._key(request)
        up = self._upstreams.get(key)
        if up is None:
            if len(self._upstreams) >= self.max_upstreams:
                shed_idle(self._upstreams, self.max_upstreams)  # unused ones first
            up = self._upstreams[key] = _Upstream(self.window, self.budget_burst)
        up.requests += 1
        up.tokens = min(self.budget_burst, up.tokens + self.budget_ratio)
        delay = self.delay
        if delay is None:
            delay = up.quantile(self.quantile, self.min_samples, self._refresh)
        start = self._clock()
        deadline = get_context(request).deadline
        caller = asyncio.current_task()
        if delay is None or caller is None or (deadline is not None and start + delay >= deadline):
            outcome = await call_next(request)
            if _answered(outcome):
                up.record(self._clock() - start)
            return outcome
        return await self._race(_Race(self, request, call_next, up, caller), delay, start)

    async def _race(self, race: _Race, delay: float, start: float) -> Outcome:
        """Run the primary in the caller's task while hedges start on a timer beside it.

        A hedge that succeeds first cancels the caller's task, as ``asyncio.timeout`` does, and
        the cancellation is taken back here; any other cancellation propagates.
        """
        caller, up = race.caller, race.up
        cancelling = caller.cancelling()
        if self._sleep is asyncio.sleep:
            race.handle = asyncio.get_running_loop().call_later(delay, race.fire, delay)
        else:
            race.ticker = asyncio.create_task(self._tick(race, delay))
        try:
            try:
                outcome = await race.call_next(race.request)
            except asyncio.CancelledError:
                race.primary_running = False
                if race.winner is not None:
                    if caller.uncancel() <= cancelling:
                        up.record(self._clock() - start)  # the primary lost: at least this slow
                        up.hedge_wins += 1
                        hedged(race.request, upstream_of(race.request), "won")
                        return race.won
                    race.winner = None  # cancelled from outside too: the hedge's answer is closed
                raise
            race.primary_running = False
            race.stop_timer()
            if _answered(outcome):
                up.record(self._clock() - start)
            if race.winner is not None:  # a stage inside swallowed our cancellation
                caller.uncancel()
                if type(outcome) is not Success:
                    up.hedge_wins += 1
                    hedged(race.request, upstream_of(race.request), "won")
                    return race.won
                race.winner = None  # the primary's answer is kept; the hedge's is closed
            if type(outcome) is Success or not race.hedges:
                return outcome
            return await race.settle(outcome)
        finally:
            race.primary_running = False
            race.stop_timer()
            if race.hedges or race.ticker is not None:
                await race.close()

    async def _tick(self, race: _Race, delay: float) -> None:
        """The timer with an injected sleep: fire once per ``delay``."""
        while True:
            await self._sleep(delay)
            if not race.fire(None):
                return

    async def _guarded(self, race: _Race, number: int) -> Outcome | None:
        """A hedge sent only if the breaker says CLOSED (``None``: not sent)."""
        breaker, up = self.breaker, race.up
        assert breaker is not None
        try:
            state = await breaker.state(breaker.key_of(race.request))
        except Exception as exc:  # noqa: BLE001 - a store failure means "not known closed"
            _log.warning("httprail.hedge_breaker_state_failed", error=repr(exc))
            state = None
        if state is not CircuitState.CLOSED:
            up.breaker_not_closed += 1
            race.stopped = True
            return None
        if not race.primary_running or race.winner is not None:
            return None
        if up.tokens < _ONE_TOKEN:
            up.no_budget += 1
            race.stopped = True
            return None
        race.spend(number)
        return await race.send(number)


class _Race:
    """The state of one hedged call: the caller's task (running the primary) and the hedges."""

    __slots__ = (
        "call_next", "caller", "handle", "hedges", "primary_running", "request", "stage",
        "stopped", "ticker", "up", "winner", "won",
    )  # fmt: skip

    won: Outcome  # the winning hedge's outcome, set with ``winner``

    def __init__(
        self,
        stage: Hedge,
        request: httpx.Request,
        call_next: Next,
        up: _Upstream,
        caller: asyncio.Task[Any],
    ) -> None:
        self.stage, self.request, self.call_next, self.up, self.caller = (
            stage, request, call_next, up, caller,
        )  # fmt: skip
        self.hedges: list[asyncio.Task[Outcome | None]] = []
        self.winner: asyncio.Task[Outcome | None] | None = None
        self.primary_running = True
        self.stopped = False
        self.handle: asyncio.TimerHandle | None = None
        self.ticker: asyncio.Task[None] | None = None

    def fire(self, rearm: float | None) -> bool:
        """The delay passed: start a hedge if allowed; ``False`` when no more will start."""
        self.handle = None
        stage, up = self.stage, self.up
        if not self.primary_running or self.winner is not None or self.stopped:
            return False
        deadline = get_context(self.request).deadline
        if deadline is not None and stage._clock() >= deadline:
            return False
        if up.tokens < _ONE_TOKEN:
            up.no_budget += 1
            self.stopped = True
            return False
        number = len(self.hedges) + 1
        task: asyncio.Task[Outcome | None]
        if stage.breaker is None:
            self.spend(number)
            task = asyncio.create_task(self.send(number))
        else:
            task = asyncio.create_task(stage._guarded(self, number))
        task.add_done_callback(self._finished)
        self.hedges.append(task)
        more = number < stage.max_hedges
        if more and rearm is not None:
            self.handle = asyncio.get_running_loop().call_later(rearm, self.fire, rearm)
        return more

    def spend(self, number: int) -> None:
        """Take a token from the budget for hedge ``number`` and count it."""
        up = self.up
        up.tokens -= 1
        up.hedges += 1
        up.hedged += number == 1
        hedged(self.request, upstream_of(self.request), "sent")

    async def send(self, number: int) -> Outcome:
        return await self.call_next(_copy(self.request, number))

    def _finished(self, task: asyncio.Task[Outcome | None]) -> None:
        """A hedge ended: if it is the first success while the primary runs, interrupt it."""
        if (
            self.primary_running
            and self.winner is None
            and not task.cancelled()
            and task.exception() is None
            and type(outcome := task.result()) is Success
        ):
            self.winner, self.won = task, outcome
            self.caller.cancel()

    async def settle(self, failure: Outcome) -> Outcome:
        """The primary failed: wait for a hedge in flight to succeed, else return ``failure``."""
        while True:
            for task in self.hedges:
                if task.done() and not task.cancelled() and task.exception() is None:
                    outcome = task.result()
                    if type(outcome) is Success:
                        self.winner, self.won = task, outcome
                        self.up.hedge_wins += 1
                        hedged(self.request, upstream_of(self.request), "won")
                        return outcome
            running = [task for task in self.hedges if not task.done()]
            if not running:
                return failure  # every attempt failed: the primary's failure
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)

    def stop_timer(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    async def close(self) -> None:
        """Cancel and await every hedge but the winner (and the ticker); close their responses."""
        tasks: list[asyncio.Task[Any]] = [t for t in self.hedges if t is not self.winner]
        if self.ticker is not None:
            tasks.append(self.ticker)
        running = [task for task in tasks if not task.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
        for task in tasks:
            if task.cancelled():
                continue
            error = task.exception()
            if error is not None:
                _log.error("httprail.hedge_attempt_raised", error=repr(error))
                continue
            outcome = task.result()
            if type(outcome) is Success:
                try:
                    await outcome.unwrap().aclose()
                except Exception as exc:  # noqa: BLE001 - closing a loser must not fail the call
                    _log.warning("httprail.hedge_close_failed", error=repr(exc))


def _answered(outcome: Outcome) -> bool:
    """The upstream answered (a response, even an error status): a latency sample. An error
    that does not count against the upstream (``counts_against_upstream``) never is one."""
    if type(outcome) is Success:
        return True
    error = outcome.failure()
    return isinstance(error, StatusError) and error.counts_against_upstream


def _copy(request: httpx.Request, number: int) -> httpx.Request:
    """A copy to send concurrently: own headers and extensions, the same (bytes) body."""
    extensions = dict(request.extensions)
    extensions[HEDGE_EXTENSION] = number  # the same context: a hedge never extends the deadline
    copy = httpx.Request(
        request.method,
        request.url,
        headers=request.headers,  # copied by httpx.Request
        stream=request.stream,
        extensions=extensions,
    )
    copy.read()  # a ByteStream: no I/O, makes .content available to stages that sign bodies
    return copy
