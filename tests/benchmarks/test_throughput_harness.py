"""The throughput benchmark's harness: its statistics, targets, report, and one short real run.

The figures themselves come from ``python benchmarks/throughput.py``; these tests make sure the
numbers it prints are computed the way its report says, and that its server comes and goes.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
from types import ModuleType
from typing import Any

import pytest

from . import load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("throughput")


def results_of(bench: ModuleType, rows: dict[tuple[str, int], list[tuple[float, float]]]) -> Any:
    """Results with the given (rps, p99 seconds) per repetition; p50 is half the p99."""
    return {
        cell: [bench.Sample(rps, p99 / 2, p99, int(rps)) for rps, p99 in samples]
        for cell, samples in rows.items()
    }


def test_a_sample_is_responses_per_second_and_nearest_rank_latencies(bench: ModuleType) -> None:
    sample = bench.Sample.of([i / 1000 for i in range(1, 101)], errors=2, seconds=2.0)
    assert sample.rps == 50.0
    assert sample.p50 == pytest.approx(0.050)
    assert sample.p99 == pytest.approx(0.099)
    assert (sample.requests, sample.errors) == (100, 2)
    empty = bench.Sample.of([], errors=0, seconds=1.0)
    assert empty.rps == 0.0
    assert math.isnan(empty.p99)


def test_medians_spreads_and_ratios_are_taken_over_repetitions(bench: ModuleType) -> None:
    results = results_of(
        bench,
        {
            ("httpx", 64): [(600, 0.4), (500, 0.5), (700, 0.2)],
            ("httprail", 64): [(1300, 0.1), (1200, 0.05), (100, 0.2)],
        },
    )
    assert bench.median(results, "httpx", 64) == 600
    assert bench.spread(results, "httpx", 64) == (500, 700)
    assert bench.spread(results, "httpx", 64, "p99") == (0.2, 0.5)
    assert bench.ratio(results, "httprail", "httpx", 64) == pytest.approx(1200 / 600)
    assert bench.ratio(results, "httprail", "httpx", 64, "p99") == pytest.approx(0.1 / 0.4)
    assert math.isnan(bench.ratio(results, "httprail", "aiohttp", 64))  # not measured
    assert math.isnan(bench.median(results, "httpx", 16))


def test_the_fastest_terminal_has_the_best_geometric_mean_at_c16_and_c64(bench: ModuleType) -> None:
    results = results_of(
        bench,
        {
            ("httprail", 16): [(1000, 0.01)],
            ("httprail", 64): [(1000, 0.01)],
            ("httprail-aiohttp", 16): [(4000, 0.01)],
            ("httprail-aiohttp", 64): [(900, 0.01)],  # gm 1,897
            ("httprail-curl", 16): [(2000, 0.01)],
            ("httprail-curl", 64): [(2000, 0.01)],  # gm 2,000
            ("aiohttp", 64): [(9000, 0.01)],  # a raw client is never the candidate
        },
    )
    assert bench.fastest_terminal(results) == "httprail-curl"
    assert bench.fastest_terminal({}) is None


def test_the_targets_are_the_issue_s(bench: ModuleType) -> None:
    rows = {
        ("httpx", 16): [(700, 0.2)],
        ("httpx", 64): [(600, 0.400)],
        ("aiohttp", 16): [(8000, 0.004)],
        ("aiohttp", 64): [(8000, 0.010)],
        ("httprail", 16): [(1500, 0.05)],
        ("httprail", 64): [(1200, 0.100)],
        ("httprail-aiohttp", 16): [(8000, 0.005)],
        ("httprail-aiohttp", 64): [(8000, 0.012)],
    }
    checks = bench.judge(results_of(bench, rows))
    assert [c.met for c in checks] == [True, True, True, True]
    assert "httprail on aiohttp" in checks[2].measured
    assert checks[3].target == ">= 1x"  # issue 18's: at least raw aiohttp's rps
    rows[("httprail", 64)] = [(1199, 0.1001)]  # just under 2x, just over 0.25x
    rows[("httprail-aiohttp", 64)] = [(7999, 0.012)]  # just under 1.0x
    checks = bench.judge(results_of(bench, rows))
    assert [c.met for c in checks] == [False, False, True, False]


def test_targets_that_were_not_measured_are_skipped_not_missed(bench: ModuleType) -> None:
    checks = bench.judge(results_of(bench, {("httpx", 1): [(1000, 0.001)]}))
    assert [c.met for c in checks] == [None, None, None, None]
    assert all(c.measured == "not measured" for c in checks)


WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:18080/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.46ms    2.09ms  24.35ms   79.07%
    Req/Sec    18.06k     4.71k   27.47k    80.00%
  Latency Distribution
     50%  213.00us
     75%    4.79ms
     90%    5.88ms
     99%   10.30ms
  54357 requests in 3.03s, 11.92MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  17922.99
Transfer/sec:      3.93MB
"""


def test_wrk_output_is_read_into_a_sample(bench: ModuleType) -> None:
    sample = bench.parse_wrk(WRK_OUTPUT, 3)
    assert sample.rps == pytest.approx(17922.99)
    assert sample.p50 == pytest.approx(213e-6)
    assert sample.p99 == pytest.approx(10.30e-3)
    assert sample.errors == 2 + 1 + 4
    assert bench.wrk_seconds(0.2) == 1
    assert bench.wrk_seconds(3.0) == 3
    with pytest.raises(ValueError, match="no Requests/sec"):
        bench.parse_wrk("wrk: connection refused", 3)


def soak_of(bench: ModuleType, **changes: Any) -> Any:
    result = bench.Soak(requests=200_000, concurrency=64, warm_up=10_000, seconds=100.0)
    result.rss = {"before": 50.0, "warm": 60.0, "end": 64.5, "after": 64.0}
    result.fds = {"before": 8, "warm": 30, "end": 30, "after": 8}
    result.tasks = {"before": 1, "warm": 1, "end": 1, "after": 1}
    for name, value in changes.items():
        setattr(result, name, value)
    return result


def test_the_soak_judge_applies_the_issue_targets(bench: ModuleType) -> None:
    result = soak_of(bench)
    assert result.growth == pytest.approx(4.5)
    assert result.rps == 2000.0
    assert [c.met for c in bench.judge_soak(result)] == [True, True, True, True]
    leaky = soak_of(
        bench,
        rss={"before": 50.0, "warm": 60.0, "end": 65.5, "after": 65.0},
        fds={"before": 8, "warm": 30, "end": 30, "after": 9},
        tasks={"before": 1, "warm": 1, "end": 2, "after": 1},
        failures=3,
    )
    assert [c.met for c in bench.judge_soak(leaky)] == [False, False, False, False]


def test_the_report_has_the_snippet_markers_and_keeps_the_other_section(
    bench: ModuleType,
) -> None:
    results = results_of(
        bench,
        {("httpx", 64): [(600, 0.4), (650, 0.5)], ("httprail", 64): [(1300, 0.1), (1250, 0.1)]},
    )
    subjects = [bench.BY_KEY["httpx"], bench.BY_KEY["httprail"]]
    args = argparse.Namespace(duration=3.0, warm_up=0.5, repeats=2)
    checks = bench.judge(results)
    matrix = bench.render_matrix(
        results, subjects, [64], checks, args, "python benchmarks/throughput.py", (0.5, 0.7), True
    )
    assert "| raw httpx | 625 | 600-650 | 225 | 450 | 400-500 | 1.00x | - |" in matrix
    assert "| httprail default | 1,275 | 1,250-1,300 |" in matrix
    assert "| httprail default client rps at c=64, x raw httpx >= 2x | 2.04x" in matrix
    soak = bench.render_soak(
        soak_of(bench), bench.judge_soak(soak_of(bench)), "python x --soak", (0.1, 0.2)
    )
    first = bench.compose("", matrix=matrix)
    assert "<!-- --8<-- [start:report] -->" in first
    assert "<!-- --8<-- [end:report] -->" in first
    assert "No soak recorded yet" in first
    both = bench.compose(first, soak=soak)
    assert matrix in both  # the matrix of the earlier run is kept
    assert "+4.50 MiB" in both
    again = bench.compose(both, matrix="new matrix\n")
    assert "new matrix" in again
    assert matrix not in again
    assert "+4.50 MiB" in again


def test_quick_and_the_options(bench: ModuleType) -> None:
    quick = bench.parse_args(["--quick"])
    assert (quick.repeats, quick.duration, quick.warm_up) == (1, 0.5, 0.2)
    full = bench.parse_args(["--concurrency", "1, 64", "--repeats", "5"])
    assert (full.concurrencies, full.repeats, full.duration) == ([1, 64], 5, 3.0)
    assert bench.parse_args(["--soak"]).soak == 200_000
    assert bench.parse_args(["--soak", "1000"]).soak == 1000
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "httpx,nope"])


def test_the_soak_runs_on_another_terminal_only_when_asked_and_is_then_printed_only(
    bench: ModuleType,
) -> None:
    """``--soak-terminal`` defaults to the default client, takes a terminal key, and goes
    with ``--soak`` and without ``--write``; its report names the terminal."""
    assert bench.parse_args(["--soak"]).soak_terminal == "default"
    assert bench.parse_args(["--soak", "--soak-terminal", "reqwest"]).soak_terminal == "reqwest"
    for wrong in (
        ["--soak-terminal", "reqwest"],
        ["--soak", "--soak-terminal", "reqwest", "--write"],
    ):
        with pytest.raises(SystemExit):
            bench.parse_args(wrong)
    result = soak_of(bench)
    text = bench.render_soak(result, bench.judge_soak(result), "x", (0.1, 0.2), "reqwest")
    assert text.startswith("### Soak on reqwest\n")
    assert "`PyreqwestTerminal(settings)`" in text


def test_a_short_real_run_against_granian_then_no_server_is_left(bench: ModuleType) -> None:
    pytest.importorskip("granian")
    lines: list[str] = []
    subjects = [bench.BY_KEY["httpx"], bench.BY_KEY["httprail"]]
    with bench.Server() as server:
        results = bench.run_matrix(
            subjects,
            [4],
            1,
            server.url,
            warm_up=0.05,
            duration=0.3,
            client_cpu=None,
            log=lines.append,
        )
        result = asyncio.run(bench.soak(server.url, requests=200, concurrency=8, warm_up=50))
        group = server._process.pid
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)  # the whole process group is gone
    for key in ("httpx", "httprail"):
        (sample,) = results[(key, 4)]
        assert sample.rps > 0
        assert sample.errors == 0
    assert len(lines) == 2
    checks = bench.judge_soak(result)
    assert result.failures == 0
    assert [c.met for c in checks[1:]] == [True, True, True]  # fds, tasks, failures
    assert [done for done, _mib in result.series][:2] == [0, 20]


def test_the_server_is_stopped_when_the_run_is_interrupted(bench: ModuleType) -> None:
    pytest.importorskip("granian")
    server = bench.Server()
    groups: list[int] = []

    def run_interrupted() -> None:
        with server:
            groups.append(server._process.pid)
            raise KeyboardInterrupt  # what Ctrl-C raises

    with pytest.raises(KeyboardInterrupt):
        run_interrupted()
    with pytest.raises(ProcessLookupError):
        os.killpg(groups[0], 0)
