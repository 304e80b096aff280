"""Logging emits redacted events; Metrics counts per upstream; both subscribe to events."""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from httprail import (
    BreakerEvent,
    CircuitState,
    ConfigError,
    Pipeline,
    RetryEvent,
    ServerStatusError,
)
from httprail.middleware import Histogram, Logging, Metrics, Retry
from httprail.testing import FakeClock, MockTerminal

SECRET_URL = "https://user:pw@api.test/x?api_key=s3cret&page=2"


async def test_success_is_quiet_by_default_and_failures_are_warnings() -> None:
    terminal = MockTerminal.sequence([httpx.Response(200), httpx.Response(404)])
    pipeline = Pipeline([Logging()], terminal)
    with capture_logs() as logs:
        await pipeline.send(httpx.Request("GET", SECRET_URL))
        await pipeline.send(
            httpx.Request("GET", SECRET_URL, headers={"Authorization": "Bearer s3cret"})
        )
    assert len(logs) == 1
    entry = logs[0]
    assert entry["event"] == "http.request"
    assert entry["log_level"] == "warning"
    assert (entry["status"], entry["error"], entry["method"]) == (404, "ClientStatusError", "GET")
    assert entry["url"] == "https://api.test/x?api_key=REDACTED&page=2"
    assert "s3cret" not in repr(logs)


async def test_min_level_debug_logs_successes_with_duration() -> None:
    clock = iter([1.0, 1.25])
    pipeline = Pipeline(
        [Logging(min_level="debug", clock=lambda: next(clock))],
        MockTerminal(lambda r: httpx.Response(200)),
    )
    with capture_logs() as logs:
        await pipeline.send(httpx.Request("GET", SECRET_URL))
    assert logs[0]["log_level"] == "debug"
    assert logs[0]["duration_ms"] == 250.0
    assert logs[0]["attempt"] == 1
    assert logs[0]["upstream"] == "https://api.test"


async def test_silent_logging_passes_through() -> None:
    pipeline = Pipeline(
        [Logging(min_level="error", failure_level="warning")],
        MockTerminal(lambda r: httpx.Response(500)),
    )
    with capture_logs() as logs:
        outcome = await pipeline.send(httpx.Request("GET", SECRET_URL))
    assert isinstance(outcome.failure(), ServerStatusError)
    assert logs == []


class _Recorder:
    """A structlog wrapped logger that keeps what reaches it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def msg(self, event: str, **fields: object) -> None:
        self.events.append((event, fields))

    warning = info = error = debug = msg


@pytest.mark.parametrize(("floor", "kept"), [(logging.WARNING, 1), (logging.ERROR, 0)])
async def test_events_the_logger_drops_are_not_built(
    floor: int, kept: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A logger filtering at ERROR gets no warning: Logging asks ``is_enabled_for`` first."""
    recorder = _Recorder()
    logger = structlog.wrap_logger(
        recorder,
        wrapper_class=structlog.make_filtering_bound_logger(floor),
        processors=[lambda _logger, _name, event: event],
    )
    described: list[object] = []
    module = sys.modules[Logging.__module__]
    original = module.describe_error  # type: ignore[attr-defined]

    def counting(error: Any) -> dict[str, Any]:
        described.append(error)
        return original(error)  # type: ignore[no-any-return]

    monkeypatch.setattr(module, "describe_error", counting)
    await Pipeline([Logging(logger=logger)], MockTerminal(lambda r: httpx.Response(503))).send(
        httpx.Request("GET", SECRET_URL)
    )
    assert len(recorder.events) == kept
    assert len(described) == kept  # nothing is built for an event that would be dropped


async def test_retries_and_breaker_transitions_are_logged_and_counted() -> None:
    clock = FakeClock()
    logging_stage, metrics = Logging(), Metrics()
    terminal = MockTerminal.sequence([httpx.Response(503), httpx.Response(200)])
    pipeline = Pipeline([logging_stage, metrics, Retry(sleep=clock.sleep, clock=clock)], terminal)
    with capture_logs() as logs:
        await pipeline.send(httpx.Request("GET", SECRET_URL))
        event = BreakerEvent(
            "https://api.test", CircuitState.CLOSED, CircuitState.OPEN, "5 failures"
        )
        for observer in pipeline.observers:
            observer(event)
    assert [e["event"] for e in logs] == ["http.retry", "http.breaker"]
    assert logs[0]["attempt"] == 1
    assert logs[0]["status"] == 503
    assert "s3cret" not in repr(logs)
    assert (logs[1]["old"], logs[1]["new"]) == ("closed", "open")
    figures = metrics.snapshot()["https://api.test"]
    assert figures.retries == 1
    assert dict(figures.breaker_transitions) == {"closed->open": 1}
    assert figures.requests == 1
    assert figures.successes == 1


async def test_metrics_histogram_and_reset() -> None:
    ticks = iter([0.0, 0.003, 0.0, 0.2, 0.0, 100.0])
    metrics = Metrics(clock=lambda: next(ticks))
    pipeline = Pipeline([metrics], MockTerminal(lambda r: httpx.Response(200)))
    for _ in range(3):
        await pipeline.send(httpx.Request("GET", "https://api.test/x"))
    hist = metrics.snapshot()["https://api.test"].latency
    assert hist.count == 3
    assert hist.quantile(0.3) == 0.005
    assert hist.quantile(0.6) == 0.25
    assert hist.quantile(1.0) == math.inf
    assert hist.mean == pytest.approx((0.003 + 0.2 + 100) / 3)
    metrics.reset()
    assert dict(metrics.snapshot()) == {}


def test_empty_histogram() -> None:
    hist = Histogram((1.0,), (0, 0), 0.0, 0)
    assert math.isnan(hist.quantile(0.5))
    assert math.isnan(hist.mean)
    with pytest.raises(ValueError, match="quantile"):
        hist.quantile(2)


def test_metric_labels_carry_no_credentials() -> None:
    metrics = Metrics()
    metrics.on_event(
        RetryEvent(
            httpx.Request("GET", SECRET_URL),
            1,
            0.1,
            ServerStatusError(httpx.Response(503, request=httpx.Request("GET", SECRET_URL))),
            "backoff",
        )
    )
    assert list(metrics.snapshot()) == ["https://api.test"]


@pytest.mark.parametrize("buckets", [[], [0, 1], [2, 1], [1, float("inf")]])
def test_bad_buckets(buckets: list[float]) -> None:
    with pytest.raises(ConfigError, match="buckets"):
        Metrics(buckets=buckets)


def test_bad_log_level() -> None:
    with pytest.raises(ConfigError, match="min_level"):
        Logging(min_level="loud")  # type: ignore[arg-type]
