"""The health snapshot: one typed, JSON-serialisable view per upstream of what the stages know.

:func:`pipeline_health` reads the stages found in a pipeline (every one of a kind, when there
are several): ``CircuitBreaker`` (state, time until a probe), ``RetryBudget`` (the budgets of
the ``Retry`` stages: retries left), ``Bulkhead`` (in flight, queued) and ``Metrics`` (its
recent window: requests, error rate, latency p50/p99). The upstreams
listed are the union of those every stage tracks. It only reads: nothing is counted, reset or
swept, so a health endpoint polled every second changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .middleware._bulkhead import Bulkhead
from .middleware._circuit_breaker import CircuitBreaker
from .middleware._metrics import Metrics
from .middleware._retry import Retry
from .middleware._retry_budget import RetryBudget
from .middleware._window import WindowFigures

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["HealthSnapshot", "UpstreamHealth", "pipeline_health"]

_RANK = {None: 0, "closed": 1, "half_open": 2, "open": 3}


@dataclass(frozen=True, slots=True)
class UpstreamHealth:
    """What the pipeline knows about one upstream now.

    Attributes:
        upstream: the key the stages track it under (the URL origin by default).
        breaker: ``"closed"``, ``"open"`` or ``"half_open"`` (an open circuit whose break is
            over reads ``"half_open"``); ``None`` without a breaker. With several breakers, the
            worst.
        retry_in: seconds until an open circuit lets a probe through (``0.0`` once it would);
            ``None`` unless the breaker is open.
        budget_left: retries the retry budget allows now (the smallest, with several);
            ``None`` without a budget.
        error_rate: upstream errors / requests that reached it, over ``Metrics``' recent
            window (60 s by default); ``None`` without ``Metrics`` or without such requests.
        latency_p50: median latency in seconds over the window (an upper bound: the
            histogram bucket it falls in); ``None`` without a sample or above every bucket.
        latency_p99: the 99th percentile, likewise.
        in_flight: requests holding a bulkhead slot now; ``None`` without a ``Bulkhead``
            (counting them in ``Metrics`` would cost every request a lookup before it is sent).
        queued: callers waiting for a bulkhead slot; ``None`` without a bulkhead.
        requests: logical requests finished during the recent window.
    """

    upstream: str
    breaker: str | None = None
    retry_in: float | None = None
    budget_left: float | None = None
    error_rate: float | None = None
    latency_p50: float | None = None
    latency_p99: float | None = None
    in_flight: int | None = None
    queued: int | None = None
    requests: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values (a non-finite number becomes ``None``)."""
        return {name: _finite(value) for name, value in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """Every known upstream's health, and a summary.

    Attributes:
        upstreams: :class:`UpstreamHealth` by upstream, sorted by name.
        status: ``"ok"`` when no breaker is open or half-open, ``"down"`` when every known
            upstream's breaker is open, ``"degraded"`` otherwise.

    Example:
        >>> snapshot = await client.health()  # doctest: +SKIP
        >>> json.dumps(snapshot.to_dict())  # doctest: +SKIP
    """

    upstreams: Mapping[str, UpstreamHealth]
    status: str

    def to_dict(self) -> dict[str, Any]:
        """``{"status": ..., "upstreams": {name: {...}}}``, JSON-serialisable."""
        return {
            "status": self.status,
            "upstreams": {name: health.to_dict() for name, health in self.upstreams.items()},
        }

    @classmethod
    def of(cls, upstreams: Iterable[UpstreamHealth]) -> HealthSnapshot:
        """A snapshot of ``upstreams``, its status derived from their breakers."""
        table = {health.upstream: health for health in sorted(upstreams, key=_name)}
        states = [health.breaker for health in table.values()]
        if table and all(state == "open" for state in states):
            status = "down"
        elif any(state in ("open", "half_open") for state in states):
            status = "degraded"
        else:
            status = "ok"
        return cls(MappingProxyType(table), status)


async def pipeline_health(pipeline: Pipeline) -> HealthSnapshot:
    """Read ``pipeline``'s stages into a :class:`HealthSnapshot` (see the module docstring)."""
    stages = (*pipeline.plugins, pipeline.terminal)
    breakers = [s for s in stages if isinstance(s, CircuitBreaker)]
    bulkheads = [s for s in stages if isinstance(s, Bulkhead)]
    metrics = [s for s in stages if isinstance(s, Metrics)]
    budgets = _budgets(stages)
    recent: dict[str, WindowFigures] = {}
    for stage in reversed(metrics):  # the outermost one's figures win
        recent.update(stage.recent())
    known: set[str] = set(recent)
    for breaker in breakers:
        known.update(_breaker_keys(breaker))
    for budget in budgets:
        known.update(budget.snapshot())
    for bulkhead in bulkheads:
        known.update(bulkhead.keys())
    return HealthSnapshot.of(
        [await _upstream(key, breakers, budgets, bulkheads, recent.get(key)) for key in known]
    )


async def _upstream(
    key: str,
    breakers: list[CircuitBreaker],
    budgets: list[RetryBudget],
    bulkheads: list[Bulkhead],
    figures: WindowFigures | None,
) -> UpstreamHealth:
    state: str | None = None
    retry_in: float | None = None
    for breaker in breakers:
        current = (await breaker.state(key)).value
        wait = await breaker.retry_in(key)
        if _RANK[current] > _RANK[state]:
            state = current
        if wait is not None:  # OPEN in the store (0.0 once its break is over)
            retry_in = wait if retry_in is None else max(retry_in, wait)
    return UpstreamHealth(
        upstream=key,
        breaker=state,
        retry_in=retry_in,
        budget_left=min((float(b.available(key)) for b in budgets), default=None),
        error_rate=figures.error_rate if figures is not None else None,
        latency_p50=figures.quantile(0.5) if figures is not None else None,
        latency_p99=figures.quantile(0.99) if figures is not None else None,
        in_flight=sum(b.in_flight(key) for b in bulkheads) if bulkheads else None,
        queued=sum(b.waiting(key) for b in bulkheads) if bulkheads else None,
        requests=figures.requests if figures is not None else 0,
    )


def _budgets(stages: Iterable[object]) -> list[RetryBudget]:
    """The distinct retry budgets of the stages (a budget shared by several is read once)."""
    found: list[RetryBudget] = []
    for stage in stages:
        budget = stage.budget if isinstance(stage, Retry) else stage
        if isinstance(budget, RetryBudget) and all(budget is not b for b in found):
            found.append(budget)
    return found


def _breaker_keys(breaker: CircuitBreaker) -> Iterable[str]:
    """The keys ``breaker``'s store holds, if it can list them (the in-memory one can; a
    shared store that cannot is asked about the keys the other stages know)."""
    snapshot = getattr(breaker.store, "snapshot", None)
    return snapshot() if callable(snapshot) else ()


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _name(health: UpstreamHealth) -> str:
    return health.upstream
