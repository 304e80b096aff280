"""The resilience benchmark's harness: its measures, its judges, and one short real run.

The figures themselves come from ``python benchmarks/resilience.py``; these tests make sure the
numbers it prints are computed the way its report says.
"""

from __future__ import annotations

import argparse
import math
from types import ModuleType

import httpx
import pytest

from httprail import AsyncClient
from httprail.middleware import CircuitBreaker, Retry
from httprail.testing import MockTerminal

from . import load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("resilience")


def test_quantile_is_the_nearest_rank(bench: ModuleType) -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench.quantile(values, 0.5) == 50.0
    assert bench.quantile(values, 0.99) == 99.0
    assert bench.quantile(values, 1.0) == 100.0
    assert math.isnan(bench.quantile([], 0.5))


def test_a_client_run_counts_what_the_report_says(bench: ModuleType) -> None:
    run = bench.ClientRun("httprail")
    run.calls = [
        bench.Call(0.0, 0.01, "ok"),
        bench.Call(0.1, 0.2, "ok"),
        bench.Call(0.2, 0.2005, "CircuitBreakerOpenError"),
        bench.Call(0.3, 1.3, "untyped:HTTPStatusError"),
    ]
    run.server_arrivals = [0.0, 0.1, 0.15, 0.3, 0.6]
    assert (run.logical, run.successes, run.typed, run.untyped) == (4, 2, 1, 1)
    assert run.amplification == pytest.approx(5 / 4)
    assert run.success_rate == pytest.approx(0.5)
    assert run.goodput(0.0, 1.0) == pytest.approx(2.0)
    times, good, load = run.series(0.5, 1.5)
    assert times == [0.0, 0.5, 1.0]
    assert good == [4.0, 0.0, 0.0]
    assert load == [8.0, 2.0, 0.0]


def test_the_judges_apply_the_issue_targets(bench: ModuleType) -> None:
    scenario = {s.name: s for s in bench.scenarios()}["flaky"]
    naive, rail = bench.ClientRun("naive"), bench.ClientRun("httprail")
    rail.calls = [bench.Call(0, 0.01, "ok")] * 995 + [bench.Call(0, 0.01, "ServerStatusError")] * 5
    rail.server_arrivals = [0.0] * 1300
    naive.calls = rail.calls
    naive.server_arrivals = [0.0] * 2000
    checks = scenario.judge(scenario, naive, rail, 100.0)
    assert [(c.what, c.met) for c in checks] == [("success rate", True), ("amplification", True)]
    rail.server_arrivals.append(0.0)  # 1.301x: over the 1.3x target
    assert [c.met for c in scenario.judge(scenario, naive, rail, 100.0)] == [True, False]


async def test_a_short_outage_run_measures_both_clients(bench: ModuleType) -> None:
    scenario = {s.name: s for s in bench.scenarios(scale=0.05)}["outage"]
    naive, rail = await bench.run_scenario(scenario, rate=40.0, connections=8, seed=1)
    assert naive.logical == rail.logical == int(40.0 * scenario.seconds)
    assert rail.untyped == 0
    assert naive.untyped == naive.logical  # every naive call raised after its retries
    assert naive.server_seen == 4 * naive.logical  # 1 + 3 retries each
    assert rail.server_seen < naive.server_seen
    assert rail.breaker_opened  # the breaker opened during the outage
    checks = scenario.judge(scenario, naive, rail, 40.0)
    report = bench.render(
        [(scenario, naive, rail, checks)],
        argparse.Namespace(rate=40.0, connections=8, seed=1, write=False),
    )
    assert "| amplification |" in report
    assert "naive httpx + tenacity | httprail" in report


async def test_a_retry_rejected_after_a_real_attempt_is_not_an_open_circuit_rejection(
    bench: ModuleType,
) -> None:
    """Only calls the open circuit turned away on their first attempt count as rejections."""

    async def no_sleep(_seconds: float) -> None:
        return None

    plugins = [Retry(max_retries=1, sleep=no_sleep), CircuitBreaker(failure_threshold=1)]
    terminal = MockTerminal(lambda _request: httpx.Response(503))
    async with AsyncClient("http://upstream.test", plugins=plugins, terminal=terminal) as rail:
        first = await bench._rail_call(rail)  # a 503 opens the circuit; the retry is refused
        second = await bench._rail_call(rail)  # refused at once
    assert first == "CircuitBreakerOpenError on attempt 2"
    assert second == "CircuitBreakerOpenError"
    assert len(terminal.requests) == 1
