"""The CPU-per-request benchmark's harness: its arithmetic, and one short real run.

The figures come from ``python benchmarks/cpu_per_request.py``; these tests check that its
per-thread figures are computed as its report says and that a run produces them.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from . import load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("cpu_per_request")


def test_per_request_divides_each_thread_s_growth_by_the_requests(bench: ModuleType) -> None:
    """CPU in µs and switches per request, by thread name (two threads of a name add up); a
    thread that neither ran nor waited is left out."""
    before = {"python:1": (1.0, 10, 2), "pyreqwest:2": (0.5, 0, 0), "idle:3": (0.2, 4, 0)}
    after = {
        "python:1": (1.2, 110, 52),
        "pyreqwest:2": (0.6, 300, 0),
        "pyreqwest:4": (0.1, 100, 0),  # started during the run
        "idle:3": (0.2, 4, 0),
    }
    rows = bench.per_request(before, after, 1000)
    assert set(rows) == {"python", "pyreqwest"}
    assert rows["python"] == pytest.approx({"cpu_us": 200.0, "voluntary": 0.1, "involuntary": 0.05})
    assert rows["pyreqwest"] == pytest.approx(
        {"cpu_us": 200.0, "voluntary": 0.4, "involuntary": 0.0}
    )


def test_an_unknown_client_stops_before_any_server_starts(bench: ModuleType) -> None:
    with pytest.raises(SystemExit, match="unknown client 'nope'"):
        bench.main(["--only", "aiohttp,nope"])


def test_a_short_real_run_reports_each_client_s_threads(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two clients in fresh processes against granian: the table has a row each, the pyreqwest
    one with its runtime thread beside the main one."""
    # enough requests for every thread's CPU time to pass a clock tick (10 ms)
    options = ["--requests", "2000", "--warm-up", "8", "--rounds", "1", "--concurrency", "4"]
    assert bench.main(["--only", "aiohttp,reqwest-streamed", *options]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| aiohttp", "| reqwest"))]
    assert len(rows) == 2
    assert "python " in rows[0]
    assert "pyreqwest " not in rows[0]
    assert "pyreqwest " in rows[1]
    assert "python " in rows[1]
