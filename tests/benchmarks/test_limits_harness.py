"""The limits benchmark's harness: its server, one case per fresh process, the verdicts.

The figures come from ``python benchmarks/limits.py`` (500 MB, 1 GB bomb, endless body, the
default 100 MiB cap); here the same run uses tiny bodies and a 64 KiB cap.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from types import ModuleType

import pytest

from . import load_benchmark

CAP = 64 * 1024


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("limits")


def test_the_bomb_is_that_many_zeros_gzip_compressed(bench: ModuleType) -> None:
    bomb = bench.gzip_of_zeros(3 * bench.BLOCK + 5)
    assert gzip.decompress(bomb) == bytes(3 * bench.BLOCK + 5)
    assert len(bomb) < 10_000


def test_a_case_meets_the_target_only_as_a_quick_typed_failure_within_the_memory_bound(
    bench: ModuleType,
) -> None:
    good = {"outcome": "ResponseTooLargeError", "seconds": 1.0, "before": 1, "peak": 100}
    assert bench.verdict(good, CAP) == "ok"
    assert bench.verdict({**good, "outcome": "Success"}, CAP) == "MISS"
    assert bench.verdict({**good, "seconds": 5.0}, CAP) == "MISS"
    assert bench.verdict({**good, "peak": CAP + bench.HEADROOM + 1}, CAP) == "MISS"


def test_every_hostile_body_is_a_response_too_large_failure_in_its_own_process(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lines = bench.main(200_000, 2_000_000, ["aiohttp"], cap=CAP)
    rows = [line.split(" | ") for line in lines[2:]]
    assert [(row[0].strip("| "), row[1]) for row in rows] == [
        ("aiohttp", case) for case in bench.CASES
    ]
    assert {row[2] for row in rows} == {"ResponseTooLargeError"}
    monkeypatch.setattr(bench, "__file__", str(tmp_path / "benchmarks" / "limits.py"))
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    bench.write(lines, 200_000, 2_000_000)
    written = (tmp_path / "benchmarks" / "results" / "limits.md").read_text()
    assert "python benchmarks/limits.py --write" in written
    assert lines[-1] in written
