"""Resilience under faults: httprail's default stack next to a naive httpx + tenacity client.

Every scenario runs both clients, one after the other, at the same fixed offered load (open
loop: one arrival every ``1 / rate`` seconds), against the project's chaos server on 127.0.0.1,
run in a child process; each client has its own path, so the server keeps separate fault state
and counts for each. The naive client is the one the demo uses: httpx plus ``tenacity``
retrying 5xx, 429 and transport errors 3 times with exponential backoff, raising when it gives
up.

Scenarios (issue 4) and their targets:

1. ``outage``    every request gets 503 for the whole run: amplification <= 1.1x.
2. ``onset``     healthy, then every request 503: first fast rejection within 2 s of the
                 onset; open-circuit rejections <= 1 ms p99 (calls the open circuit turned
                 away on their first attempt; a retry rejected after a real attempt is not one).
3. ``recovery``  healthy, outage, healed: at most one probe in flight per breaker key; >= 95% of
                 the healthy goodput again within 2x the break duration after the heal.
4. ``flaky``     20% of requests get 503 at random: success >= 99.5%, amplification <= 1.3x.
5. ``tail``      1% of requests take 1 s, the rest 10 ms: p99 <= 30 ms with <= 5% extra load
                 (httprail's default stack plus ``Hedge(quantile=0.9)``).
6. ``ratelimit`` the server serves C requests/s (a bucket of 50 ms, at least 2 requests) and
                 answers 429 + Retry-After above it; offered 5x C: goodput >= 90% of C within
                 10 s, <= 5% of requests see 429 (httprail's default stack plus an adaptive
                 ``RateLimiter``).

Run:  python benchmarks/resilience.py [--quick] [--only outage,flaky] [--rate 100] [--write]

``--write`` stores a markdown table and PNG plots under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import httpx

from httprail import (
    AsyncClient,
    BreakerEvent,
    CircuitBreakerOpenError,
    CircuitState,
    Event,
    HttpSettings,
    MiddlewarePlugin,
    Next,
    Outcome,
    Success,
    get_context,
)
from httprail.cli._demo import NaiveClient, quiet_structlog
from httprail.middleware import CircuitBreaker, Hedge, RateLimiter, default_plugins
from httprail.testing import ChaosServer, RecordedRequest, Reply, TokenBucket

RESULTS = Path(__file__).resolve().parent / "results"
OK = Reply.json({"ok": True})
UNAVAILABLE = Reply.status(503)
BREAK_SECONDS = 5.0  # the breaker's break duration in this benchmark (Polly's standard: 5 s)


def bench_settings(connections: int) -> HttpSettings:
    """httprail's settings here: the defaults, with waits sized for runs of seconds.

    Backoff starts at 50 ms (so retries land within the run), a break lasts 5 s (Polly's
    standard pipeline), and the breaker opens after 10 consecutive failures or, in failure-rate
    mode, at 50% failures over 10 s (minimum 20 calls), so independent 20% failures do not trip
    it while an outage does within a few requests.
    """
    return HttpSettings(
        timeout_total=5.0,
        timeout_connect=2.0,
        timeout_read=5.0,
        timeout_pool=5.0,
        backoff_base=0.05,
        backoff_max=1.0,
        retry_after_max=5.0,
        circuit_breaker_threshold=10,
        circuit_breaker_cooldown=BREAK_SECONDS,
        circuit_breaker_cooldown_max=4 * BREAK_SECONDS,
        circuit_breaker_failure_ratio=0.5,
        circuit_breaker_window=10.0,
        circuit_breaker_min_throughput=20,
        max_connections=connections,
        max_keepalive=connections,
    )


# -- what the server does ----------------------------------------------------------------------


class Upstream:
    """One client's path on the chaos server: answers by the scenario's plan, counts what it saw.

    ``plan(elapsed, rng)`` returns the reply for a request arriving ``elapsed`` seconds after
    the run started. Called on the server's thread.
    """

    def __init__(self, plan: Callable[[float, random.Random], Reply], seed: int) -> None:
        self._plan = plan
        self._rng = random.Random(seed)  # fault injection, not cryptography
        self.lock = threading.Lock()
        self.started = math.inf
        self.arrivals: list[float] = []  # seconds after the start, per request seen
        self.statuses: list[int] = []

    def start(self, at: float) -> None:
        self.started = at

    def __call__(self, _request: RecordedRequest) -> Reply:
        with self.lock:
            elapsed = time.perf_counter() - self.started
            reply = self._plan(elapsed, self._rng)
            if elapsed >= 0:
                self.arrivals.append(elapsed)
                self.statuses.append(reply.status_code)
            return reply


class ServerCapacity:
    """A plan for a server of ``rate`` requests/s: above it, 429 + Retry-After.

    Its bucket holds 50 ms worth of ``rate``, but at least two requests: one request that
    arrives a few ms late, next to one on time, is not "above capacity". (With room for one
    request only, as at C = 20/s, a server refuses whenever two arrivals come closer than
    1/C; measured on this machine, loopback arrivals of requests sent exactly 53 ms apart
    come as close as 44 ms, GC off or on, so such a server refuses any client near 0.9x C.)
    """

    def __init__(self, rate: float, retry_after: str = "1") -> None:
        self.bucket = TokenBucket(rate, burst=max(2.0, rate * 0.05))
        self.refused = Reply.status(429, retry_after=retry_after)

    def __call__(self, _elapsed: float, _rng: random.Random) -> Reply:
        return OK if self.bucket.take() else self.refused


# -- what the clients did ----------------------------------------------------------------------


@dataclass
class Call:
    """One logical request: when it arrived and ended (seconds after the start), how it ended."""

    arrived: float
    ended: float
    # "ok", a typed error's class name (``CircuitBreakerOpenError on attempt N`` when a retry
    # was rejected after real attempts), or "untyped:<exception class>"
    kind: str

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def seconds(self) -> float:
        return self.ended - self.arrived


@dataclass
class ClientRun:
    """What one client did in one scenario, and what the server saw from it."""

    name: str
    calls: list[Call] = field(default_factory=list)
    server_arrivals: list[float] = field(default_factory=list)
    server_statuses: list[int] = field(default_factory=list)
    breaker_opened: list[float] = field(default_factory=list)  # seconds after the start
    probes_in_flight_max: int | None = None

    @property
    def logical(self) -> int:
        return len(self.calls)

    @property
    def successes(self) -> int:
        return sum(call.ok for call in self.calls)

    @property
    def untyped(self) -> int:
        return sum(call.kind.startswith("untyped:") for call in self.calls)

    @property
    def typed(self) -> int:
        return self.logical - self.successes - self.untyped

    @property
    def server_seen(self) -> int:
        return len(self.server_arrivals)

    @property
    def amplification(self) -> float:
        return self.server_seen / self.logical if self.logical else math.nan

    @property
    def success_rate(self) -> float:
        return self.successes / self.logical if self.logical else math.nan

    def latency(self, q: float, calls: Sequence[Call] | None = None) -> float:
        return quantile([c.seconds for c in (self.calls if calls is None else calls)], q)

    def goodput(self, start: float, end: float) -> float:
        """Successes per second among calls that ended within ``[start, end)``."""
        done = sum(1 for c in self.calls if c.ok and start <= c.ended < end)
        return done / (end - start) if end > start else math.nan

    def series(self, bucket: float, until: float) -> tuple[list[float], list[float], list[float]]:
        """Per ``bucket`` seconds: start time, goodput (successes/s), server load (requests/s)."""
        count = max(1, math.ceil(until / bucket))
        good = [0.0] * count
        load = [0.0] * count
        for call in self.calls:
            if call.ok and 0 <= call.ended < until:
                good[int(call.ended / bucket)] += 1 / bucket
        for seen in self.server_arrivals:
            if 0 <= seen < until:
                load[int(seen / bucket)] += 1 / bucket
        return [i * bucket for i in range(count)], good, load


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class BreakerTap:
    """The innermost stage: counts attempts on the wire while the breaker is not closed.

    The breaker's events (through the client's observer) keep ``state`` current, so the tap can
    tell how many attempts were in flight at once while the circuit was open or half-open:
    those are probes, and the target is at most one.
    """

    name = "breaker_tap"

    def __init__(self, started: Callable[[], float]) -> None:
        self.state = CircuitState.CLOSED
        self.in_flight = 0
        self.probes_max = 0
        self.opened: list[float] = []
        self._started = started

    def observe(self, event: Event) -> None:
        if isinstance(event, BreakerEvent):
            self.state = event.new
            if event.new is CircuitState.OPEN:
                self.opened.append(time.perf_counter() - self._started())

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        self.in_flight += 1
        try:
            if self.state is not CircuitState.CLOSED:
                self.probes_max = max(self.probes_max, self.in_flight)
            return await call_next(request)
        finally:
            self.in_flight -= 1


# -- scenarios ---------------------------------------------------------------------------------

Extra = Callable[[HttpSettings, "CircuitBreaker"], list[MiddlewarePlugin]]


@dataclass(frozen=True)
class Scenario:
    """A fault plan, its length, what httprail adds to its default stack, and its checks."""

    name: str
    title: str
    seconds: float
    plan: Callable[[float, random.Random], Reply] | Callable[[], Callable[..., Reply]]
    judge: Callable[[Scenario, ClientRun, ClientRun, float], list[Check]]
    extra: Extra | None = None
    events: tuple[tuple[float, str], ...] = ()  # (seconds, label) marks for the plot
    fresh_plan: bool = False  # plan() builds a new stateful plan per client


@dataclass(frozen=True)
class Check:
    """One target: what was measured, the limit, and whether it was met."""

    what: str
    measured: str
    target: str
    met: bool


def _outage(_elapsed: float, _rng: random.Random) -> Reply:
    return UNAVAILABLE


def _flaky(_elapsed: float, rng: random.Random) -> Reply:
    return UNAVAILABLE if rng.random() < 0.2 else OK


def _tail(_elapsed: float, rng: random.Random) -> Reply:
    roll = rng.random()
    return Reply.slow(1.0, body=b'{"ok":true}') if roll < 0.01 else Reply.slow(0.01)


def _phases(*spans: tuple[float, Reply]) -> Callable[[float, random.Random], Reply]:
    """Healthy/outage phases: ``(until_seconds, reply)`` in order; the last one lasts."""

    def plan(elapsed: float, _rng: random.Random) -> Reply:
        for until, reply in spans:
            if elapsed < until:
                return reply
        return spans[-1][1]

    return plan


def _judge_outage(s: Scenario, naive: ClientRun, rail: ClientRun, rate: float) -> list[Check]:
    return [
        Check(
            "amplification",
            f"{rail.amplification:.2f}x (naive {naive.amplification:.2f}x)",
            "<= 1.1x",
            rail.amplification <= 1.1,
        ),
        Check(
            "untyped exceptions", f"{rail.untyped} (naive {naive.untyped})", "0", rail.untyped == 0
        ),
    ]


def _judge_onset(s: Scenario, naive: ClientRun, rail: ClientRun, rate: float) -> list[Check]:
    onset = s.events[0][0]
    rejected = [c for c in rail.calls if c.kind == CircuitBreakerOpenError.__name__]
    first = min((c.ended for c in rejected if c.ended >= onset), default=math.inf) - onset
    # Calls that arrived while the circuit was already open: rejected without any attempt.
    opened = min(rail.breaker_opened, default=math.inf)
    while_open = [c for c in rejected if c.arrived >= opened]
    p99_ms = rail.latency(0.99, while_open) * 1000
    return [
        Check("first fast rejection after onset", f"{first:.2f} s", "<= 2 s", first <= 2.0),
        Check(
            "open-circuit rejection p99",
            f"{p99_ms:.3f} ms ({len(while_open)} rejections)",
            "<= 1 ms",
            p99_ms <= 1.0,
        ),
    ]


def _judge_recovery(s: Scenario, naive: ClientRun, rail: ClientRun, rate: float) -> list[Check]:
    outage, heal = s.events[0][0], s.events[1][0]
    baseline = rail.goodput(1.0, outage)
    recovered = math.inf
    step = 0.5
    t = heal
    while t + 1.0 <= s.seconds:
        if rail.goodput(t, t + 1.0) >= 0.95 * baseline:
            recovered = t + 1.0 - heal
            break
        t += step
    probes = rail.probes_in_flight_max or 0
    return [
        Check("probes in flight at once (max)", str(probes), "<= 1", probes <= 1),
        Check(
            "back to 95% of healthy goodput after the heal",
            f"{recovered:.1f} s (healthy {baseline:.0f}/s)",
            f"<= {2 * BREAK_SECONDS:.0f} s (2x break)",
            recovered <= 2 * BREAK_SECONDS,
        ),
    ]


def _judge_flaky(s: Scenario, naive: ClientRun, rail: ClientRun, rate: float) -> list[Check]:
    return [
        Check(
            "success rate",
            f"{rail.success_rate:.2%} (naive {naive.success_rate:.2%})",
            ">= 99.5%",
            rail.success_rate >= 0.995,
        ),
        Check(
            "amplification",
            f"{rail.amplification:.2f}x (naive {naive.amplification:.2f}x)",
            "<= 1.3x",
            rail.amplification <= 1.3,
        ),
    ]


def _judge_tail(s: Scenario, naive: ClientRun, rail: ClientRun, rate: float) -> list[Check]:
    p99_ms = rail.latency(0.99) * 1000
    extra = rail.amplification - 1.0
    return [
        Check(
            "p99 latency",
            f"{p99_ms:.1f} ms (naive {naive.latency(0.99) * 1000:.1f} ms)",
            "<= 30 ms",
            p99_ms <= 30.0,
        ),
        Check("extra server load", f"{extra:.1%}", "<= 5%", extra <= 0.05),
    ]


def _judge_ratelimit(s: Scenario, naive: ClientRun, rail: ClientRun, rate: float) -> list[Check]:
    capacity = rate / 5.0
    settled = rail.goodput(10.0, s.seconds)
    refused = rail.server_statuses.count(429)
    share = refused / rail.server_seen if rail.server_seen else math.nan
    naive_share = naive.server_statuses.count(429) / max(1, naive.server_seen)
    return [
        Check(
            "goodput from 10 s on",
            f"{settled:.1f}/s = {settled / capacity:.0%} of C={capacity:.0f}/s "
            f"(naive {naive.goodput(10.0, s.seconds) / capacity:.0%})",
            ">= 90% of C",
            settled >= 0.9 * capacity,
        ),
        Check(
            "requests that saw 429",
            f"{share:.1%} of {rail.server_seen} (naive {naive_share:.1%})",
            "<= 5%",
            share <= 0.05,
        ),
    ]


def scenarios(scale: float = 1.0) -> list[Scenario]:
    """The six scenarios; ``scale`` < 1 shortens them (for smoke tests, not for the figures)."""
    k = scale
    onset = 5.0 * k
    outage_at, heal_at = 5.0 * k, 5.0 * k + 8.0
    return [
        Scenario("outage", "Full outage: every request 503", 30.0 * k, _outage, _judge_outage),
        Scenario(
            "onset",
            "Outage onset: healthy, then every request 503",
            onset + 6.0 * k,
            _phases((onset, OK), (math.inf, UNAVAILABLE)),
            _judge_onset,
            events=((onset, "outage"),),
        ),
        Scenario(
            "recovery",
            "Recovery: healthy, 8 s outage (503 after 100 ms), healed",
            heal_at + 4 * BREAK_SECONDS,
            _phases((outage_at, OK), (heal_at, Reply.slow(0.1, status=503)), (math.inf, OK)),
            _judge_recovery,
            events=((outage_at, "outage"), (heal_at, "healed")),
        ),
        Scenario("flaky", "20% of requests 503 at random", 30.0 * k, _flaky, _judge_flaky),
        Scenario(
            "tail",
            "Latency tail: 1% take 1 s, the rest 10 ms",
            20.0 * k,
            _tail,
            _judge_tail,
            extra=_hedge,
        ),
        Scenario(
            "ratelimit",
            "Rate-limited server: capacity C, 429 + Retry-After: 1 above; offered 5x C",
            max(12.0, 20.0 * k),
            _ratelimit_plan,
            _judge_ratelimit,
            extra=_rate_limiter,
            fresh_plan=True,
        ),
    ]


_CAPACITY: list[float] = [20.0]  # C for the rate-limit scenario: set from --rate before a run


def _ratelimit_plan() -> Callable[[float, random.Random], Reply]:
    return ServerCapacity(_CAPACITY[0])


def _hedge(settings: HttpSettings, breaker: CircuitBreaker) -> list[MiddlewarePlugin]:
    return [Hedge(breaker=breaker, quantile=0.9)]


def _rate_limiter(settings: HttpSettings, breaker: CircuitBreaker) -> list[MiddlewarePlugin]:
    return [RateLimiter(adaptive=True)]


NUMBERS = {s.name: n for n, s in enumerate(scenarios(), 1)}


# -- running -----------------------------------------------------------------------------------


async def run_scenario(
    scenario: Scenario, rate: float, connections: int, seed: int
) -> tuple[ClientRun, ClientRun]:
    """Run ``scenario`` through the naive client, then through httprail, ``rate`` arrivals/s.

    The server runs in a child process (so it does not share the clients' interpreter lock)
    and keeps one fault plan per client; each client runs alone, with the event loop to itself.
    """
    with ServerProcess(scenario, seed) as server:
        naive = NaiveClient(server.url, connections)
        try:
            await naive.warm_up()
            naive_run = await _run_one("naive", lambda: _naive_call(naive), server, rate, scenario)
        finally:
            await naive.aclose()

        started = [math.inf]
        tap = BreakerTap(lambda: started[0])
        settings = bench_settings(connections)
        plugins = default_plugins(settings)
        if scenario.extra is not None:
            breaker = next(p for p in plugins if isinstance(p, CircuitBreaker))
            plugins = _with_extra(plugins, scenario.extra(settings, breaker))
        plugins.append(tap)
        async with AsyncClient(
            server.url, plugins=plugins, settings=settings, observers=[tap.observe]
        ) as rail:
            await rail.get("/warm-up")
            rail_run = await _run_one(
                "httprail", lambda: _rail_call(rail), server, rate, scenario, started
            )
    rail_run.breaker_opened = tap.opened
    rail_run.probes_in_flight_max = tap.probes_max
    return naive_run, rail_run


async def _run_one(
    name: str,
    call: Callable[[], Awaitable[str]],
    server: ServerProcess,
    rate: float,
    scenario: Scenario,
    started: list[float] | None = None,
) -> ClientRun:
    run = ClientRun(name)
    at = time.perf_counter()
    if started is not None:
        started[0] = at
    server.start(name, at)
    await _drive(call, run, rate, scenario.seconds, at)
    run.server_arrivals, run.server_statuses = server.report(name)
    return run


class ServerProcess:
    """The chaos server in a child process, one :class:`Upstream` per client path.

    ``start(name, at)`` sets when ``name``'s run began (``time.perf_counter`` is the system's
    monotonic clock, the same in both processes); ``report(name)`` returns what the server saw.
    """

    def __init__(self, scenario: Scenario, seed: int) -> None:
        context = multiprocessing.get_context("fork")
        self._commands, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(scenario, seed, child), daemon=True)
        self.url = ""

    def __enter__(self) -> ServerProcess:
        self._process.start()
        self.url = self._commands.recv()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._commands.send(("stop", "", 0.0))
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()

    def start(self, name: str, at: float) -> None:
        self._commands.send(("start", name, at))
        self._commands.recv()

    def report(self, name: str) -> tuple[list[float], list[int]]:
        self._commands.send(("report", name, 0.0))
        arrivals, statuses = self._commands.recv()
        return arrivals, statuses


def _pin(cpu: int) -> None:
    """Run this process on ``cpu`` alone when the machine has two CPUs or more (Linux)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {cpu})


def _serve(scenario: Scenario, seed: int, commands: Connection) -> None:
    """The child process: serve every client's path until told to stop."""
    _pin(1)
    upstreams = {
        name: Upstream(scenario.plan() if scenario.fresh_plan else scenario.plan, seed)  # type: ignore[call-arg,arg-type]
        for name in ("naive", "httprail")
    }
    with ChaosServer() as server:
        for name, upstream in upstreams.items():
            server.route(f"/{name}", upstream)
        commands.send(server.url)
        while True:
            command, name, at = commands.recv()
            if command == "stop":
                return
            upstream = upstreams[name]
            if command == "start":
                upstream.start(at)
                commands.send(None)
            else:
                with upstream.lock:
                    commands.send((list(upstream.arrivals), list(upstream.statuses)))


def _with_extra(
    plugins: list[MiddlewarePlugin], extra: list[MiddlewarePlugin]
) -> list[MiddlewarePlugin]:
    """The default stack with each extra stage where its docs put it: inside ``Retry`` and
    outside the breaker (``Retry → Hedge → RateLimiter → CircuitBreaker``)."""
    out = list(plugins)
    at = next(i for i, p in enumerate(out) if p.name == "circuit_breaker")
    out[at:at] = extra
    return out


async def _naive_call(naive: NaiveClient) -> str:
    try:
        await naive.get("/naive")
    except Exception as exc:
        return f"untyped:{type(exc).__name__}"
    return "ok"


async def _rail_call(rail: AsyncClient) -> str:
    try:
        outcome = await rail.get("/httprail")
    except Exception as exc:
        return f"untyped:{type(exc).__name__}"
    if isinstance(outcome, Success):
        return "ok"
    error = outcome.failure()
    kind = type(error).__name__
    if isinstance(error, CircuitBreakerOpenError) and error.request is not None:
        # Rejected on a retry, after a real attempt (a half-open probe that failed, say): its
        # time is that attempt's and the backoff's, not the open circuit's.
        attempt = get_context(error.request).attempt
        if attempt > 1:
            return f"{kind} on attempt {attempt}"
    return kind


async def _drive(
    call: Callable[[], Awaitable[str]], run: ClientRun, rate: float, seconds: float, started: float
) -> None:
    """One arrival every ``1 / rate`` seconds for ``seconds``; wait for them all."""

    async def one() -> None:
        arrived = time.perf_counter() - started
        kind = await call()
        run.calls.append(Call(arrived, time.perf_counter() - started, kind))

    interval = 1.0 / rate
    async with asyncio.TaskGroup() as group:
        for index in range(int(rate * seconds)):
            delay = started + index * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(one())


# -- reporting ---------------------------------------------------------------------------------


def summary_rows(naive: ClientRun, rail: ClientRun) -> list[tuple[str, str, str]]:
    def ms(value: float) -> str:
        return f"{value * 1000:,.1f} ms" if math.isfinite(value) else "-"

    return [
        ("logical requests", f"{naive.logical:,}", f"{rail.logical:,}"),
        (
            "successes",
            f"{naive.successes:,} ({naive.success_rate:.2%})",
            f"{rail.successes:,} ({rail.success_rate:.2%})",
        ),
        ("typed failures", f"{naive.typed:,}", f"{rail.typed:,}"),
        ("untyped exceptions", f"{naive.untyped:,}", f"{rail.untyped:,}"),
        ("server-seen requests", f"{naive.server_seen:,}", f"{rail.server_seen:,}"),
        ("amplification", f"{naive.amplification:.2f}x", f"{rail.amplification:.2f}x"),
        ("p50 latency", ms(naive.latency(0.5)), ms(rail.latency(0.5))),
        ("p99 latency", ms(naive.latency(0.99)), ms(rail.latency(0.99))),
        ("breaker trips", "- (no breaker)", str(len(rail.breaker_opened))),
    ]


def render(
    results: list[tuple[Scenario, ClientRun, ClientRun, list[Check]]], args: argparse.Namespace
) -> str:
    lines = [
        "# Resilience benchmark",
        "",
        "<!-- --8<-- [start:report] -->",
        f"Command: `{' '.join(['python', 'benchmarks/resilience.py', *sys.argv[1:]])}`  ",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.platform()}, "
        f"Python {platform.python_version()}, {_cpus()} CPUs  ",
        f"Offered load: {args.rate:g} requests/s per client, one client after the other; "
        f"{args.connections} connections each; seed {args.seed}. The server runs in a child "
        "process; with two CPUs or more, the clients are pinned to CPU 0 and the server to CPU 1.",
        "",
        "httprail: `default_plugins(bench_settings())` — the default stack with waits sized for "
        "runs of seconds (see `bench_settings` in the script); scenario 5 adds "
        "`Hedge(quantile=0.9)` (the anchor's p90), scenario 6 an adaptive `RateLimiter`. "
        "Naive: httpx + tenacity, 3 retries, exponential backoff 0.1-1 s, no breaker, "
        "raises when it gives up.",
        "",
        "## Targets",
        "",
        "| # | scenario | target | measured | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for scenario, _naive, _rail, checks in results:
        number = NUMBERS[scenario.name]
        for check in checks:
            mark = "yes" if check.met else "**no**"
            lines.append(
                f"| {number} | {scenario.name} | {check.what} {check.target} "
                f"| {check.measured} | {mark} |"
            )
    for scenario, naive, rail, _checks in results:
        number = NUMBERS[scenario.name]
        lines += [
            "",
            f"## {number}. {scenario.title} ({scenario.seconds:g} s)",
            "",
            "| | naive httpx + tenacity | httprail |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in summary_rows(naive, rail)]
        kinds = sorted({c.kind for c in rail.calls if not c.ok})
        if kinds:
            counts = ", ".join(f"{k} {sum(c.kind == k for c in rail.calls):,}" for k in kinds)
            lines += ["", f"httprail's failures: {counts}."]
    lines += ["", "<!-- --8<-- [end:report] -->"]
    if args.write:
        lines += ["", "![goodput and server load over time](resilience.png)"]
    return "\n".join(lines) + "\n"


def plot(results: list[tuple[Scenario, ClientRun, ClientRun, list[Check]]], path: Path) -> bool:
    """Goodput and server load over time per scenario, as one PNG; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = len(results)
    figure, axes = plt.subplots(rows, 1, figsize=(9, 2.6 * rows), squeeze=False)
    for axis, (scenario, naive, rail, _checks) in zip(axes[:, 0], results, strict=True):
        for run, colour in ((naive, "tab:red"), (rail, "tab:blue")):
            times, good, load = run.series(0.5, scenario.seconds)
            axis.plot(times, good, color=colour, label=f"{run.name} goodput")
            axis.plot(times, load, color=colour, linestyle=":", label=f"{run.name} server load")
        for at, label in scenario.events:
            axis.axvline(at, color="grey", linewidth=0.8)
            axis.text(at, axis.get_ylim()[1] * 0.9, f" {label}", color="grey", fontsize=8)
        axis.set_title(scenario.title, fontsize=10)
        axis.set_ylabel("requests/s")
        axis.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def _cpus() -> int:
    return os.cpu_count() or 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="arrivals/s per client")
    parser.add_argument("--connections", type=int, default=32, help="connections per client")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="shorter runs (smoke test)")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--write", action="store_true", help="write results/resilience.{md,png}")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.connections < 1:
        parser.error("--rate must be > 0 and --connections >= 1")
    _CAPACITY[0] = args.rate / 5.0
    chosen = [
        s
        for s in scenarios(0.3 if args.quick else 1.0)
        if not args.only or s.name in args.only.split(",")
    ]
    if not chosen:
        parser.error(f"--only matched no scenario: {args.only!r}")
    _pin(0)  # the clients on one CPU, the server (a child process) on another
    results = []
    with quiet_structlog():
        for scenario in chosen:
            print(f"== {scenario.name}: {scenario.title} ({scenario.seconds:g} s)", flush=True)
            naive, rail = asyncio.run(
                run_scenario(scenario, args.rate, args.connections, args.seed)
            )
            checks = scenario.judge(scenario, naive, rail, args.rate)
            results.append((scenario, naive, rail, checks))
            for check in checks:
                print(
                    f"   {'ok ' if check.met else 'MISS'} {check.what}: {check.measured} "
                    f"(target {check.target})"
                )
    report = render(results, args)
    print()
    print(report)
    if args.write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "resilience.md").write_text(report, encoding="utf-8")
        if not plot(results, RESULTS / "resilience.png"):
            print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
    return 0 if all(c.met for _s, _n, _r, checks in results for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
