"""``httprail bench``: finds the checkout's benchmarks and runs one, passing arguments through."""

from __future__ import annotations

from pathlib import Path

import pytest

from httprail.cli import main as run
from httprail.cli._bench_command import find_benchmarks

ROOT = Path(__file__).resolve().parents[2]


def test_the_checkout_benchmarks_are_found_from_any_folder(tmp_path: Path) -> None:
    assert find_benchmarks(ROOT / "docs") == ROOT / "benchmarks"
    assert find_benchmarks(tmp_path) == ROOT / "benchmarks"  # the checkout httprail runs from


def test_a_benchmark_runs_with_the_arguments_passed_through(
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert run(["bench", "resilience", "--help"]) == 0
    out = capfd.readouterr().out
    assert out.startswith("usage: resilience.py")  # the script's own help, not bench's
    assert "--quick" in out


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_bench_without_a_name_shows_its_own_help(
    flag: str, capfd: pytest.CaptureFixture[str]
) -> None:
    assert run(["bench", flag]) == 0
    out = capfd.readouterr().out
    assert "Usage: httprail bench" in out
    assert "Which benchmark: overhead, resilience, throughput" in out


def test_bench_without_anything_shows_its_help_and_exits_2(
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert run(["bench"]) == 2
    assert "Usage: httprail bench" in capfd.readouterr().out


def test_an_unknown_benchmark_is_one_line_and_exit_2(capfd: pytest.CaptureFixture[str]) -> None:
    assert run(["bench", "speed"]) == 2
    err = capfd.readouterr().err.strip()
    known = "overhead, resilience, throughput"
    assert err == f"httprail bench: error: unknown benchmark 'speed'; known: {known}"


def test_a_folder_without_benchmarks_is_one_line_and_exit_2(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert run(["bench", "overhead", "--dir", str(tmp_path)]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"httprail bench: error: no benchmarks/overhead.py in {tmp_path}")
