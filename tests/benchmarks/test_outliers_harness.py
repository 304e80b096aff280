"""The outlier benchmark's harness: verdicts, the table, the results file, one short run.

The figures come from ``python benchmarks/outliers.py --write`` (40 s per case); here the same
run lasts 1.5 s per case. The default 30 s ejection time keeps the bad endpoint out for the
rest of the run once ejected (its return and second ejection are unit tests of the balancer:
with a 0.5 s ejection time here, the 5 failures it takes on each return were a share that
depended on how many requests a loaded machine managed in the same second).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from . import load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("outliers")


def test_a_case_meets_the_targets_only_with_both_success_and_share(bench: ModuleType) -> None:
    good = bench.Row("503", 1000, 990, 900, 45, 1000, 60, 1)
    assert bench.verdict(good) == "ok"
    assert bench.verdict(bench.Row("503", 1000, 989, 900, 45, 1000, 60, 1)) == "MISS"
    assert bench.verdict(bench.Row("503", 1000, 1000, 900, 46, 1000, 60, 1)) == "MISS"
    assert bench.Row("x", 0, 0, 0, 0, 0, 0, 0).success == 0.0
    assert bench.Row("x", 0, 0, 0, 0, 0, 0, 0).share == 0.0


async def test_a_short_run_of_each_case_meets_the_targets(bench: ModuleType) -> None:
    for case in bench.CASES:
        row = await bench.run_case(case, 1.5, 4)
        assert row.logical > 100
        assert bench.verdict(row) == "ok", row
        assert row.ejections >= 1


def test_the_results_file_names_the_command_and_holds_the_table(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lines = bench.table([bench.Row("503", 1000, 995, 900, 9, 1000, 15, 2)])
    assert lines[2].startswith("| 503 | 1,000 | 99.50% | 1,000 | 15 | 1.00% (9 of 900) | 2 | ok")
    monkeypatch.setattr(bench, "__file__", str(tmp_path / "benchmarks" / "outliers.py"))
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    bench.write(lines, 40.0, 8)
    written = (tmp_path / "benchmarks" / "results" / "outliers.md").read_text()
    assert "python benchmarks/outliers.py --write --seconds 40 --concurrency 8" in written
    assert lines[-1] in written
