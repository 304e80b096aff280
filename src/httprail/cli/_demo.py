"""The ``httprail demo`` workload: one fault schedule, two clients, one set of figures.

An embedded :class:`~httprail.testing.ChaosServer` plays a misbehaving upstream. The same
open-loop workload (``requests`` logical GETs per client, arriving at a fixed rate) is sent at
the same moments through two clients, each on its own path so the server counts them apart:

- **naive**: a raw ``httpx.AsyncClient`` with a tenacity retry (3 retries, exponential
  backoff on 5xx, 429 and transport errors) that raises when it gives up, as hand-written
  clients do;
- **httprail**: :class:`~httprail.AsyncClient` with its default stack
  (Logging → Metrics → Timeout → Retry → CircuitBreaker), settings scaled to a short run.

The arrivals move through the :data:`PHASES`; a shared phase variable, read by the server's
route functions, decides how the upstream answers. Nothing here prints: the command renders
the returned :class:`DemoReport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import httpx
import structlog
import tenacity
from returns.result import Success

from .._client import AsyncClient
from .._log import quiet
from .._settings import HttpSettings
from ..testing import ChaosServer, RecordedRequest, Reply, TokenBucket

__all__ = [
    "CLIENTS",
    "PHASES",
    "ClientFigures",
    "DemoConfig",
    "DemoProgress",
    "DemoReport",
    "NaiveClient",
    "Phase",
    "arrival_offsets",
    "breaker_cooldown",
    "demo_changes",
    "demo_settings",
    "environment_name",
    "quiet_structlog",
    "rate_limit",
    "run_demo",
    "settings_used",
    "stack_of",
]


@dataclass(frozen=True, slots=True)
class Phase:
    """One stretch of the fault schedule: a name, what the server does, its share of arrivals."""

    name: str
    description: str
    share: float


ERROR_RATIO: Final = 0.2
SLOW_RATIO: Final = 0.02
SLOW_SECONDS: Final = (0.5, 1.0)
RATE_LIMIT_SHARE: Final = 0.8
"""In the rate-limit phase the server serves this share of the offered rate, per client."""
RETRY_AFTER_SECONDS: Final = 1

PHASES: Final = (
    Phase("flaky", f"{ERROR_RATIO:.0%} of requests get 503", 0.3),
    Phase("outage", "every request gets 503", 0.2),
    Phase(
        "slow tail",
        f"{SLOW_RATIO:.0%} of requests take {SLOW_SECONDS[0]:g}-{SLOW_SECONDS[1]:g} s",
        0.25,
    ),
    Phase(
        "rate limit",
        "429 + retry-after-ms (the wait for a free slot) over "
        f"{RATE_LIMIT_SHARE:.0%} of the arrival rate",
        0.25,
    ),
)
_FLAKY, _OUTAGE, _SLOW, _LIMITED = range(len(PHASES))

CLIENTS: Final = ("naive", "httprail")

_OK = Reply.json({"ok": True})
_UNAVAILABLE = Reply.status(503)


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """What to run.

    Attributes:
        requests: logical requests per client.
        concurrency: requests each client may have on the wire at once (its connection pool
            size); further attempts wait in FIFO order for a free connection.
        seed: seed of the server's random faults (both clients get the same sequence).
        rate: arrivals per second, per client; the arrivals last ``requests / rate`` seconds,
            unless a phase would be shorter than ``min_phase_seconds``.
        min_phase_seconds: the shortest a phase may last: its arrivals are spread more thinly
            when ``requests / rate`` would make it shorter. A phase must outlast the retries of
            the requests that arrive in it, or an outage ends before their retries are made and
            the phase no longer does what its label says.
    """

    requests: int = 2000
    concurrency: int = 4
    seed: int = 1
    rate: float = 100.0
    min_phase_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ValueError(f"requests must be >= 1, got {self.requests}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate must be a finite number > 0, got {self.rate}")
        if not (math.isfinite(self.min_phase_seconds) and self.min_phase_seconds >= 0):
            raise ValueError(
                f"min_phase_seconds must be a finite number >= 0, got {self.min_phase_seconds}"
            )

    def phase_counts(self) -> list[int]:
        """How many arrivals each phase gets (by the phases' shares)."""
        counts = [0] * len(PHASES)
        for index in range(self.requests):
            counts[_phase_of(index, self.requests)] += 1
        return counts

    def phase_seconds(self) -> list[float]:
        """How long each phase lasts: its share of ``requests / rate``, at least
        ``min_phase_seconds``."""
        return [max(count / self.rate, self.min_phase_seconds) for count in self.phase_counts()]

    @property
    def arrival_seconds(self) -> float:
        """How long the arrivals last."""
        return sum(self.phase_seconds())


class DemoProgress(Protocol):
    """Receives progress while the demo runs (called on the event loop's thread)."""

    def phase_started(self, phase: int) -> None:
        """Arrivals entered ``PHASES[phase]``."""

    def request_done(self, client: str) -> None:
        """One logical request of ``client`` finished, successfully or not."""


@dataclass(slots=True)
class ClientFigures:
    """What one client's callers got, and what the server saw from that client."""

    name: str
    logical: int = 0
    successes: int = 0
    typed_failures: Counter[str] = field(default_factory=Counter)
    untyped_errors: Counter[str] = field(default_factory=Counter)
    server_requests: int = 0
    attempts: int | None = None
    breaker_trips: int | None = None
    retries: int | None = None
    phase_logical: list[int] = field(default_factory=lambda: [0] * len(PHASES))
    phase_successes: list[int] = field(default_factory=lambda: [0] * len(PHASES))
    phase_server: list[int] = field(default_factory=lambda: [0] * len(PHASES))
    phase_latencies: list[list[float]] = field(default_factory=lambda: [[] for _ in PHASES])

    def record(
        self, phase: int, seconds: float, *, typed: str | None = None, untyped: str | None = None
    ) -> None:
        """Count one finished logical request that arrived in ``phase``.

        ``typed`` names the error a ``Failure`` carried, ``untyped`` the exception that escaped;
        with neither, the request succeeded.
        """
        self.logical += 1
        self.phase_logical[phase] += 1
        self.phase_latencies[phase].append(seconds)
        if typed is not None:
            self.typed_failures[typed] += 1
        elif untyped is not None:
            self.untyped_errors[untyped] += 1
        else:
            self.successes += 1
            self.phase_successes[phase] += 1

    @property
    def amplification(self) -> float:
        """Requests the server saw per logical request (``nan`` before any request)."""
        return self.server_requests / self.logical if self.logical else math.nan

    def latency_ms(self, q: float, phase: int | None = None) -> float:
        """The ``q`` quantile (0..1, nearest rank) of the callers' latency in ms, over every
        request or those that arrived in ``phase`` (``nan``: none)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within 0..1, got {q}")
        if phase is None:
            latencies = [seconds for each in self.phase_latencies for seconds in each]
        else:
            latencies = self.phase_latencies[phase]
        if not latencies:
            return math.nan
        ordered = sorted(latencies)
        rank = max(1, math.ceil(q * len(ordered)))
        return ordered[rank - 1] * 1000.0

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values (``nan`` becomes ``None``)."""
        return {
            "logical_requests": self.logical,
            "successes": self.successes,
            "typed_failures": sum(self.typed_failures.values()),
            "typed_failure_types": dict(self.typed_failures.most_common()),
            "untyped_errors": sum(self.untyped_errors.values()),
            "untyped_error_types": dict(self.untyped_errors.most_common()),
            "server_requests": self.server_requests,
            "attempts_sent": self.attempts,
            "amplification": _finite(self.amplification, 3),
            "p50_ms": _finite(self.latency_ms(0.50), 1),
            "p99_ms": _finite(self.latency_ms(0.99), 1),
            "retries": self.retries,
            "breaker_trips": self.breaker_trips,
            "phases": {
                phase.name: {
                    "logical_requests": self.phase_logical[i],
                    "successes": self.phase_successes[i],
                    "server_requests": self.phase_server[i],
                    "p99_ms": _finite(self.latency_ms(0.99, i), 1),
                }
                for i, phase in enumerate(PHASES)
            },
        }


def _finite(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class DemoReport:
    """Both clients' figures, the configuration and the run's wall time."""

    config: DemoConfig
    naive: ClientFigures
    httprail: ClientFigures
    seconds: float
    settings: HttpSettings
    stack: str = "the default stack"
    """What the httprail column ran: its stages and terminal, as the client was built."""

    def as_dict(self) -> dict[str, Any]:
        """The report as one JSON-ready object."""
        return {
            "requests": self.config.requests,
            "concurrency": self.config.concurrency,
            "seed": self.config.seed,
            "rate_per_second": self.config.rate,
            "seconds": round(self.seconds, 2),
            "phases": [
                {"name": p.name, "description": p.description, "share": p.share} for p in PHASES
            ],
            "httprail_stack": self.stack,
            "httprail_settings": {name: getattr(self.settings, name) for name in _SHOWN_SETTINGS},
            "httprail_settings_changed": [
                {"setting": name, "default": default, "used": value, "from": source}
                for name, default, value, source in settings_used(self.settings)
            ],
            "naive": self.naive.as_dict(),
            "httprail": self.httprail.as_dict(),
        }


_SHOWN_SETTINGS = (
    "timeout_total",
    "max_retries",
    "backoff_base",
    "backoff_max",
    "retry_after_max",
    "circuit_breaker_threshold",
    "circuit_breaker_cooldown",
    "max_connections",
)


def demo_changes(connections: int = 4, cooldown: float = 0.1) -> dict[str, Any]:
    """The settings the demo changes from httprail's defaults, to fit a run of seconds.

    Backoff starts at 0.1 s, a server-asked delay up to 2 s is obeyed, and the breaker cools
    down for ``cooldown`` seconds without growing after a failed probe: the default growth
    (doubling up to 300 s) is for real outages, and in a four-second one it would keep the
    circuit open well into the next phase. It opens after 8 consecutive failures rather than 5,
    so the flaky phase's independent 20% failures do not trip it by chance, while the outage
    still does at once. The pool has ``connections`` connections, as the naive client has.
    """
    return {
        "timeout_total": 5.0,
        "timeout_connect": 2.0,
        "timeout_read": 5.0,
        "timeout_pool": 5.0,
        "backoff_base": 0.1,
        "backoff_max": 1.0,
        "retry_after_max": 2.0,
        "circuit_breaker_threshold": 8,
        "circuit_breaker_cooldown": cooldown,
        "circuit_breaker_cooldown_max": cooldown,
        "max_connections": connections,
        "max_keepalive": connections,
    }


def demo_settings(connections: int = 4, cooldown: float = 0.1) -> HttpSettings:
    """httprail's settings for the demo: ``HTTP_*`` from the environment, then the defaults,
    with :func:`demo_changes` applied to every setting the environment does not set."""
    changes = demo_changes(connections, cooldown)
    return HttpSettings(**{k: v for k, v in changes.items() if environment_name(k) is None})


def environment_name(setting: str) -> str | None:
    """The ``HTTP_*`` variable that sets ``setting`` in this process's environment, if any."""
    wanted = f"HTTP_{setting}".upper()
    return next((name for name in os.environ if name.upper() == wanted), None)


def settings_used(settings: HttpSettings) -> list[tuple[str, Any, Any, str]]:
    """Every setting of ``settings`` that differs from httprail's default:
    ``(name, default, value, where from)``, where from being ``"demo"`` or the variable."""
    rows = []
    for name, spec in type(settings).model_fields.items():
        if name == "providers":
            continue
        value, default = getattr(settings, name), spec.get_default(call_default_factory=True)
        if value != default:
            rows.append((name, default, value, environment_name(name) or "demo"))
    return rows


def rate_limit(config: DemoConfig) -> float:
    """Requests per second the server serves in the rate-limit phase, per client: a share of
    the rate the arrivals really come at in that phase (spread thinner when the phase is
    stretched to its minimum length), so the phase limits at any ``-n`` and ``--rate``."""
    arrivals = config.phase_counts()[_LIMITED] / config.phase_seconds()[_LIMITED]
    return max(1.0, RATE_LIMIT_SHARE * arrivals)


def breaker_cooldown(config: DemoConfig) -> float:
    """A fortieth of the outage, from 0.05 to 0.1 s: the circuit is probed often enough that
    few requests arriving after the upstream is back are turned away (a probe every 0.1 s is
    40 requests in a 4 s outage; the naive client sends four for every arrival)."""
    outage = config.phase_seconds()[_OUTAGE]
    return min(0.1, max(0.05, outage / 40.0))


class _Schedule:
    """The shared phase variable: written by the arrival loop, read on the server's thread."""

    def __init__(self) -> None:
        self.phase = _FLAKY


class _Upstream:
    """How the server answers one client's path (called on the server's thread)."""

    def __init__(self, schedule: _Schedule, seed: int, limit_rps: float) -> None:
        self._schedule = schedule
        self._rng = random.Random(seed)  # fault injection, not cryptography
        self._lock = threading.Lock()
        self._bucket = TokenBucket(limit_rps)
        self.seen = [0] * len(PHASES)

    def __call__(self, _request: RecordedRequest) -> Reply:
        phase = self._schedule.phase
        with self._lock:
            self.seen[phase] += 1
            roll = self._rng.random()
            if phase == _FLAKY:
                return _UNAVAILABLE if roll < ERROR_RATIO else _OK
            if phase == _OUTAGE:
                return _UNAVAILABLE
            if phase == _SLOW:
                if roll < SLOW_RATIO:
                    low, high = SLOW_SECONDS
                    return Reply.slow(low + (high - low) * self._rng.random(), body=b'{"ok":true}')
                return _OK
            if self._bucket.take():
                return _OK
            # As OpenAI's API does: the exact wait in ms, and whole seconds for older clients.
            wait = self._bucket.next_free()
            return Reply.status(
                429,
                retry_after=str(max(RETRY_AFTER_SECONDS, math.ceil(wait))),
                retry_after_ms=f"{max(1, math.ceil(wait * 1000))}",
            )


def _worth_retrying(exc: BaseException) -> bool:
    """The naive client's retry test: 5xx, 429 and transport errors."""
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return (
            status == httpx.codes.TOO_MANY_REQUESTS or status >= httpx.codes.INTERNAL_SERVER_ERROR
        )
    return isinstance(exc, httpx.TransportError)


class NaiveClient:
    """The hand-written client httprail replaces: httpx plus a tenacity decorator, raising.

    It retries 5xx, 429 and transport errors 3 times with exponential backoff (0.1, 0.2,
    0.4 s), ignores ``Retry-After``, has no breaker, and raises when it gives up.
    """

    def __init__(self, base_url: str, connections: int) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=5.0,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        # The FIFO admission gate httprail's terminal also has: httpcore's own pool queue costs
        # CPU quadratic in its waiters, which would slow down both clients sharing this loop.
        self._gate = asyncio.Semaphore(connections)
        self.attempts = 0

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(4),
        wait=tenacity.wait_exponential(multiplier=0.1, max=1.0),
        retry=tenacity.retry_if_exception(_worth_retrying),
        reraise=True,
    )
    async def get(self, path: str) -> httpx.Response:
        """GET ``path``; raises ``httpx.HTTPStatusError`` or a transport error when it gives up."""
        async with self._gate:
            self.attempts += 1
            response = await self._http.get(path)
        response.raise_for_status()
        return response

    async def warm_up(self) -> None:
        """Open a connection (to an uncounted path) before the clock starts."""
        await self._http.get("/warm-up")

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


@contextlib.contextmanager
def quiet_structlog(level: int = logging.ERROR) -> Iterator[None]:
    """Drop httprail's events below ``level`` while the block runs, then restore the
    configuration: structlog's, when it is configured (httprail's events then go there), and
    the stdlib ``httprail`` logger's level (where they go otherwise)."""
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    if was_configured:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    try:
        with quiet(level):
            yield
    finally:
        if was_configured:
            structlog.configure(**saved)


async def run_demo(config: DemoConfig, progress: DemoProgress | None = None) -> DemoReport:
    """Start the fault server, run the workload through both clients, return the figures.

    httprail's structlog events are silenced meanwhile. The server is stopped and both
    clients are closed before this returns or raises.
    """
    schedule = _Schedule()
    limit = rate_limit(config)
    upstreams = {name: _Upstream(schedule, config.seed, limit) for name in CLIENTS}
    figures = {name: ClientFigures(name) for name in CLIENTS}
    server = ChaosServer()
    with quiet_structlog():
        server.start()
        try:
            for name, upstream in upstreams.items():
                server.route(f"/{name}", upstream)
            naive = NaiveClient(server.url, config.concurrency)
            settings = demo_settings(config.concurrency, breaker_cooldown(config))
            try:
                async with AsyncClient(server.url, plugins=None, settings=settings) as rail:
                    await naive.warm_up()
                    await rail.get("/warm-up")
                    started = time.perf_counter()
                    await _drive(config, schedule, naive, rail, figures, progress)
                    seconds = time.perf_counter() - started
                    snapshot = rail.metrics()
                    stack = stack_of(rail)
            finally:
                await naive.aclose()
            for name, upstream in upstreams.items():
                figures[name].server_requests = server.count(f"/{name}")
                figures[name].phase_server = list(upstream.seen)
        finally:
            server.stop()
    figures["naive"].attempts = naive.attempts
    rail_figures = figures["httprail"]
    rail_figures.breaker_trips = 0
    rail_figures.retries = 0
    for upstream_metrics in snapshot.values():
        moves: Mapping[str, int] = upstream_metrics.breaker_transitions
        rail_figures.breaker_trips += moves.get("closed->open", 0) + moves.get("half_open->open", 0)
        rail_figures.retries += upstream_metrics.retries
    return DemoReport(config, figures["naive"], rail_figures, seconds, settings, stack)


def stack_of(client: AsyncClient) -> str:
    """The client's chain as the demo names it: its stages, outermost first, and terminal
    (``HTTP_*`` may change both: ``HTTP_FOLLOW_REDIRECTS`` adds a stage, ``HTTP_HTTP2`` picks
    the httpx terminal)."""
    pipeline = client.pipeline
    stages = " → ".join(type(stage).__name__ for stage in pipeline.plugins)
    return f"{stages}, {pipeline.terminal.name} terminal"


def _phase_of(index: int, requests: int) -> int:
    """The phase that arrival number ``index`` (of ``requests``) belongs to."""
    position = (index + 0.5) / requests
    boundary = 0.0
    for number, phase in enumerate(PHASES[:-1]):
        boundary += phase.share
        if position < boundary:
            return number
    return len(PHASES) - 1


async def _drive(
    config: DemoConfig,
    schedule: _Schedule,
    naive: NaiveClient,
    rail: AsyncClient,
    figures: Mapping[str, ClientFigures],
    progress: DemoProgress | None,
) -> None:
    """Launch one arrival per client every ``1 / config.rate`` seconds; wait for all of them."""

    async def call_naive(phase: int, arrived: float) -> None:
        untyped = None
        try:
            await naive.get("/naive")
        except Exception as exc:  # noqa: BLE001 - counting what escapes is the point
            untyped = type(exc).__name__
        figures["naive"].record(phase, time.perf_counter() - arrived, untyped=untyped)
        if progress is not None:
            progress.request_done("naive")

    async def call_rail(phase: int, arrived: float) -> None:
        typed = untyped = None
        try:
            outcome = await rail.get("/httprail")
        except Exception as exc:  # noqa: BLE001 - should never happen: counted if it does
            untyped = type(exc).__name__
        else:
            if not isinstance(outcome, Success):
                typed = type(outcome.failure()).__name__
        seconds = time.perf_counter() - arrived
        figures["httprail"].record(phase, seconds, typed=typed, untyped=untyped)
        if progress is not None:
            progress.request_done("httprail")

    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.TaskGroup() as group:
        for index, offset in enumerate(arrival_offsets(config)):
            delay = start + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            phase = _phase_of(index, config.requests)
            if index == 0 or phase != schedule.phase:
                schedule.phase = phase
                if progress is not None:
                    progress.phase_started(phase)
            arrived = time.perf_counter()
            group.create_task(call_naive(phase, arrived))
            group.create_task(call_rail(phase, arrived))


def arrival_offsets(config: DemoConfig) -> list[float]:
    """When each arrival happens, in seconds from the start: evenly spread within each phase,
    every phase lasting :meth:`DemoConfig.phase_seconds`."""
    offsets: list[float] = []
    phase_start = 0.0
    for count, seconds in zip(config.phase_counts(), config.phase_seconds(), strict=True):
        offsets.extend(phase_start + i * seconds / count for i in range(count))
        phase_start += seconds
    return offsets
