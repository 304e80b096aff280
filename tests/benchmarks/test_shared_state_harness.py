"""The shared-state benchmark's harness: its figures from hit times, and a reduced run.

The figures come from ``python benchmarks/shared_state.py`` (8 workers, T = 100, 10 s); here two
workers, T = 5 and a Redis outage of 0.7 s, with its own redis-server (skipped only where the
``redis-server`` binary is missing, and never when ``HTTPRAIL_TEST_REDIS_URL`` says the
machine has one).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from ..integration._redis_server import NO_BINARY, URL_VARIABLE
from . import load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("shared_state")


def test_hits_before_the_last_rejection_count_as_before_and_later_ones_as_probes(
    bench: ModuleType,
) -> None:
    hits = [0.0, 0.1, 0.2, 0.25, 1.3, 2.31, 3.32]
    figures = bench.breaker_figures(hits, [0.21, 0.3], cooldown=1.0)
    assert figures == {"before": 4, "probes": 3, "busiest": 1, "failed_fast": True}
    crowded = bench.breaker_figures([*hits, 1.31, 1.32], [0.21, 0.3], cooldown=1.0)
    assert crowded["busiest"] == 3
    never = bench.breaker_figures(hits, [0.21, None], cooldown=1.0)
    assert never["failed_fast"] is False


def test_p99_and_rows(bench: ModuleType) -> None:
    assert bench.p99([float(i) for i in range(1, 101)]) == 100.0
    assert bench.row("a", 1, "") == "| a | 1 |  |"
    assert bench.verdict(True) == "ok"
    assert bench.verdict(False) == "MISS"


def test_a_reduced_run_shares_the_breaker_and_survives_redis_dying(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get(URL_VARIABLE):
            pytest.fail(f"{URL_VARIABLE} is set but redis-server is not on PATH", pytrace=False)
        pytest.skip(NO_BINARY)
    monkeypatch.setattr(bench, "OUTAGE", (0.7, 0.7, 2.0))
    rows = bench.main(
        workers=2, threshold=5, cooldown=0.3, timeout=0.05, scenarios=("breaker", "outage")
    )
    table = [line.split(" | ") for line in rows[2:]]
    before = {cells[1]: int(cells[3]) for cells in table if "fail fast" in cells[2]}
    assert before["shared"] < before["local"]  # one breaker for both workers
    assert before["local"] >= 2 * 5
    failed = next(cells for cells in table if "requests failed" in cells[2])
    assert failed[3] == "0"
    monkeypatch.setattr(bench, "__file__", str(tmp_path / "benchmarks" / "shared_state.py"))
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    written = bench.write(rows, ["--workers", "2"]).read_text()
    assert "python benchmarks/shared_state.py --write --workers 2" in written
    assert rows[-1] in written
