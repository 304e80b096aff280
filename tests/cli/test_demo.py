"""The demo's workload, server behaviour and rendering, without going through typer."""

from __future__ import annotations

import io
import math
from collections import Counter
from typing import Any

import httpx
import pytest
import structlog
from rich.console import Console

from httprail import AsyncClient, HttpSettings, Outcome
from httprail.cli import _demo
from httprail.cli._demo import (
    PHASES,
    ClientFigures,
    DemoConfig,
    DemoReport,
    NaiveClient,
    arrival_offsets,
    breaker_cooldown,
    demo_settings,
    quiet_structlog,
    run_demo,
    settings_used,
)
from httprail.cli._demo_command import render_report, tradeoffs, verdict
from httprail.testing import ChaosServer, RecordedRequest, Reply

from ._reports import a_report

REQUEST = RecordedRequest("GET", "/x", "", (), b"", 0.0, 1)


class RecordingProgress:
    def __init__(self) -> None:
        self.phases: list[int] = []
        self.done: Counter[str] = Counter()

    def phase_started(self, phase: int) -> None:
        self.phases.append(phase)

    def request_done(self, client: str) -> None:
        self.done[client] += 1


async def test_run_demo_reports_both_clients_and_progress() -> None:
    progress = RecordingProgress()
    config = DemoConfig(requests=80, rate=400.0, seed=5, min_phase_seconds=0.0)
    report = await run_demo(config, progress)
    assert progress.phases == [0, 1, 2, 3]
    assert progress.done == {"naive": 80, "httprail": 80}
    assert report.naive.logical == report.httprail.logical == 80
    assert report.httprail.untyped_errors == Counter()
    assert report.naive.typed_failures == Counter()
    assert report.naive.attempts == report.naive.server_requests
    assert sum(report.httprail.phase_server) == report.httprail.server_requests
    assert report.httprail.retries is not None
    assert report.httprail.breaker_trips is not None
    assert report.seconds > 0
    assert report.settings.circuit_breaker_cooldown == breaker_cooldown(report.config)
    document = report.as_dict()
    assert document["httprail_settings"]["circuit_breaker_threshold"] == 8
    assert [p["name"] for p in document["phases"]] == [p.name for p in PHASES]
    assert document["httprail_stack"] == (
        "Logging → Metrics → Timeout → Retry → CircuitBreaker, aiohttp terminal"
    )


async def test_the_stack_named_is_the_one_the_client_runs() -> None:
    """Settings from the environment can change the stack: the demo names what was built."""
    settings = HttpSettings(follow_redirects=True, http2=True)
    async with AsyncClient("http://a.test", settings=settings) as client:
        named = _demo.stack_of(client)
    assert named.startswith("Logging → Metrics → Timeout → Redirects → Retry")
    assert named.endswith(", httpx terminal")


async def test_an_exception_escaping_httprail_would_be_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = AsyncClient.get

    async def broken(self: AsyncClient, url: str, **kwargs: Any) -> Outcome:
        if url == "/httprail":
            raise RuntimeError("boom")
        return await original(self, url, **kwargs)

    monkeypatch.setattr(AsyncClient, "get", broken)
    report = await run_demo(DemoConfig(requests=8, rate=1000.0, min_phase_seconds=0.0))
    assert report.httprail.untyped_errors == {"RuntimeError": 8}
    assert report.httprail.as_dict()["untyped_errors"] == 8


async def test_run_demo_leaves_structlog_as_it_found_it() -> None:
    structlog.reset_defaults()
    await run_demo(DemoConfig(requests=8, rate=1000.0, min_phase_seconds=0.0))
    assert not structlog.is_configured()


def test_quiet_structlog_restores_a_configuration() -> None:
    processors = [structlog.processors.KeyValueRenderer()]
    structlog.configure(processors=processors)
    try:
        with quiet_structlog():
            assert structlog.get_config()["wrapper_class"] is not structlog.BoundLogger
        assert structlog.is_configured()
        assert structlog.get_config()["processors"] == processors
    finally:
        structlog.reset_defaults()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"requests": 0},
        {"concurrency": 0},
        {"rate": 0.0},
        {"rate": math.inf},
        {"min_phase_seconds": -1.0},
    ],
)
def test_config_is_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        DemoConfig(**kwargs)  # type: ignore[arg-type]


def test_phases_split_the_arrivals_by_their_shares() -> None:
    counts = Counter(_demo._phase_of(i, 2000) for i in range(2000))
    assert counts == {0: 600, 1: 400, 2: 500, 3: 500}
    assert [_demo._phase_of(i, 4) for i in range(4)] == [0, 1, 2, 3]
    assert _demo._phase_of(0, 1) == 2  # a lone request arrives mid-schedule
    assert math.isclose(sum(p.share for p in PHASES), 1.0)


def test_breaker_cooldown_scales_with_the_outage() -> None:
    assert breaker_cooldown(DemoConfig()) == 0.1
    assert breaker_cooldown(DemoConfig(min_phase_seconds=0, requests=200)) == pytest.approx(0.05)
    assert breaker_cooldown(DemoConfig(requests=1)) == 0.05  # the outage lasts 2 s at least
    assert demo_settings(3, 0.5).max_connections == 3


def test_every_phase_lasts_at_least_the_minimum_whatever_the_rate() -> None:
    """A short, fast run (the -n 200 --rate 300 of the docs) still has a 2 s outage, so the
    retries of the requests arriving in it meet the outage, as its label says."""
    short = DemoConfig(requests=200, rate=300.0)
    assert short.phase_counts() == [60, 40, 50, 50]
    assert short.phase_seconds() == [2.0, 2.0, 2.0, 2.0]
    offsets = arrival_offsets(short)
    assert len(offsets) == 200
    assert offsets == sorted(offsets)
    assert offsets[60] == pytest.approx(2.0)  # the outage's first arrival
    assert offsets[99] == pytest.approx(2.0 + 39 * 2.0 / 40)
    default = DemoConfig()
    assert default.phase_seconds() == pytest.approx([6.0, 4.0, 5.0, 5.0])
    assert arrival_offsets(default)[1] == pytest.approx(0.01)


def test_the_rate_limit_follows_the_arrivals_of_its_phase() -> None:
    """At -n 200 --rate 300 the phase's 50 arrivals are spread over 2 s (25/s): the server
    serves 20/s, not 80% of 300/s, so the phase limits as its label says."""
    assert _demo.rate_limit(DemoConfig()) == pytest.approx(80.0)
    assert _demo.rate_limit(DemoConfig(requests=200, rate=300.0)) == pytest.approx(20.0)
    assert _demo.rate_limit(DemoConfig(requests=1)) == 1.0  # no arrival in that phase


def test_demo_settings_say_what_differs_from_the_defaults_and_honour_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_MAX_RETRIES", "5")
    monkeypatch.setenv("http_backoff_base", "0.2")
    settings = demo_settings(4, 0.25)
    assert settings.max_retries == 5
    assert settings.backoff_base == 0.2  # the environment wins over the demo's own value
    rows = {
        name: (default, value, source) for name, default, value, source in settings_used(settings)
    }
    assert rows["max_retries"] == (3, 5, "HTTP_MAX_RETRIES")
    assert rows["backoff_base"] == (1.0, 0.2, "http_backoff_base")
    assert rows["circuit_breaker_cooldown"] == (30.0, 0.25, "demo")
    assert "timeout_write" not in rows  # left at its default


def upstream_in(phase: int, *, limit: float = 100.0) -> _demo._Upstream:
    schedule = _demo._Schedule()
    schedule.phase = phase
    return _demo._Upstream(schedule, seed=1, limit_rps=limit)


def test_flaky_phase_fails_about_a_fifth() -> None:
    upstream = upstream_in(0)
    statuses = Counter(upstream(REQUEST).status_code for _ in range(2000))
    assert 300 < statuses[503] < 500
    assert statuses[503] + statuses[200] == 2000
    assert upstream.seen == [2000, 0, 0, 0]


def test_outage_phase_fails_everything() -> None:
    upstream = upstream_in(1)
    assert {upstream(REQUEST).status_code for _ in range(50)} == {503}


def test_slow_phase_delays_a_few_requests() -> None:
    upstream = upstream_in(2)
    delays = [upstream(REQUEST).delay for _ in range(2000)]
    slow = [d for d in delays if d > 0]
    assert 10 < len(slow) < 80
    assert all(0.5 <= d <= 1.0 for d in slow)


def test_rate_limit_phase_answers_429_with_the_wait_for_a_free_slot() -> None:
    upstream = upstream_in(3, limit=40.0)  # a burst of 2, refilled at 40/s
    replies = [upstream(REQUEST) for _ in range(10)]
    assert [r.status_code for r in replies[:2]] == [200, 200]
    limited = [r for r in replies if r.status_code == 429]
    assert len(limited) >= 7
    headers = dict(limited[0].headers)
    assert headers["Retry-After"] == "1"  # whole seconds, at least 1
    assert 1 <= int(headers["retry-after-ms"]) <= 25  # one slot every 25 ms


def test_the_same_seed_gives_both_clients_the_same_faults() -> None:
    first, second = upstream_in(0), upstream_in(0)
    assert [first(REQUEST).status_code for _ in range(100)] == [
        second(REQUEST).status_code for _ in range(100)
    ]


async def test_naive_client_retries_then_raises() -> None:
    with ChaosServer() as server:
        server.script("/down", Reply.status(503))
        server.script("/flaky", Reply.status(429), Reply.json({"ok": True}))
        server.script("/missing", Reply.status(404))
        naive = NaiveClient(server.url, 2)
        try:
            with pytest.raises(httpx.HTTPStatusError):
                await naive.get("/down")
            assert server.count("/down") == 4
            assert (await naive.get("/flaky")).status_code == 200
            with pytest.raises(httpx.HTTPStatusError):
                await naive.get("/missing")
            assert server.count("/missing") == 1  # a 404 is not retried
        finally:
            await naive.aclose()
        assert naive.attempts == 4 + 2 + 1


def test_worth_retrying() -> None:
    request = httpx.Request("GET", "http://x")

    def status_error(code: int) -> httpx.HTTPStatusError:
        response = httpx.Response(code, request=request)
        return httpx.HTTPStatusError("x", request=request, response=response)

    assert _demo._worth_retrying(status_error(503))
    assert _demo._worth_retrying(status_error(429))
    assert not _demo._worth_retrying(status_error(404))
    assert _demo._worth_retrying(httpx.ConnectError("x"))
    assert not _demo._worth_retrying(ValueError("x"))


def test_client_figures() -> None:
    figures = ClientFigures("x")
    assert math.isnan(figures.amplification)
    assert math.isnan(figures.latency_ms(0.5))
    assert figures.as_dict()["p99_ms"] is None
    figures.record(0, 0.010)
    figures.record(1, 0.020, typed="CircuitBreakerOpenError")
    figures.record(1, 0.030, untyped="HTTPStatusError")
    figures.record(3, 1.000)
    figures.server_requests = 6
    assert figures.successes == 2
    assert figures.phase_logical == [1, 2, 0, 1]
    assert figures.phase_successes == [1, 0, 0, 1]
    assert figures.amplification == 1.5
    assert figures.latency_ms(0.5) == pytest.approx(20.0)
    assert figures.latency_ms(0.99) == pytest.approx(1000.0)
    assert figures.latency_ms(0.0) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="quantile"):
        figures.latency_ms(1.5)
    document = figures.as_dict()
    assert document["typed_failures"] == 1
    assert document["untyped_errors"] == 1
    assert document["untyped_error_types"] == {"HTTPStatusError": 1}
    assert document["phases"]["outage"]["logical_requests"] == 2


def render(report: DemoReport) -> str:
    buffer = io.StringIO()
    render_report(Console(file=buffer, width=120, color_system=None), report)
    return buffer.getvalue()


def test_render_report_shows_both_columns() -> None:
    text = render(a_report(naive_server=10, rail_server=5))
    assert "1 CircuitBreakerOpenError" in text
    assert "1 HTTPStatusError" in text
    assert "2.00x" in text
    assert "1.00x" in text
    assert "no breaker" in text
    assert "2.0x fewer requests" in text
    for phase in PHASES:
        assert phase.name in text


def test_render_report_copes_with_an_empty_client() -> None:
    report = a_report(naive_server=10, rail_server=5)
    empty = DemoReport(report.config, ClientFigures("naive"), report.httprail, 0.1, report.settings)
    text = render(empty)
    assert "-" in text


def test_tradeoffs_explain_each_figure_httprail_is_behind_on() -> None:
    report = a_report(naive_server=10, rail_server=5)
    assert tradeoffs(report) == []
    report.naive.phase_successes[1] += 3
    report.naive.phase_server[1] += 9
    report.httprail.phase_latencies[3].extend([9.0] * 11)
    lines = tradeoffs(report)
    assert lines[0].startswith("outage: naive has 3 more successes")
    assert "after the outage ended" in lines[0]
    assert lines[1].startswith("p99: httprail's tail comes from the rate limit phase")
    assert "outage: naive has 3 more successes" in render(report)
    report.naive.phase_successes[1] -= 2
    assert tradeoffs(report)[0].startswith("outage: naive has 1 more success, bought")


def test_verdict_does_not_claim_what_the_figures_do_not_show() -> None:
    report = a_report(naive_server=5, rail_server=10)
    report.httprail.untyped_errors["RuntimeError"] += 1
    text = verdict(report)
    assert "1 untyped exceptions" in text
    assert "fewer" not in text
    assert "amplification" in text
