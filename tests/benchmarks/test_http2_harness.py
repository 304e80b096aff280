"""The HTTP/2 rotation benchmark's harness: its statistics, report sections and closed loop.

The figures come from ``python benchmarks/http2.py``; its server is exercised by
``tests/integration/test_http2_rotation.py``.
"""

from __future__ import annotations

import argparse
from types import ModuleType

import pytest

from . import ROOT, load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "benchmarks"))  # it imports throughput.py
        return load_benchmark("http2")


def test_a_sample_counts_successes_rps_and_nearest_rank_latencies(bench: ModuleType) -> None:
    sample = bench.Sample("x", 2.0, latencies=[i / 1000 for i in range(1, 101)])
    assert (sample.successes, sample.rps) == (100, 50.0)
    assert sample.quantile(0.5) == pytest.approx(0.050)
    assert sample.quantile(0.99) == pytest.approx(0.099)
    assert bench.Sample("empty", 1.0).quantile(0.99) == 0.0


def test_write_replaces_its_own_section_and_keeps_the_others(bench: ModuleType) -> None:
    document = bench.replace_section("", "### A\n\nfirst\n")
    document = bench.replace_section(document, "### B\n\nother\n")
    document = bench.replace_section(document, "### A\n\nsecond\n")
    assert document.startswith(bench.TITLE)
    body = document.partition(bench.START)[2].partition(bench.END)[0]
    assert body == "\n### A\n\nsecond\n\n### B\n\nother\n"
    assert document.endswith(bench.END + "\n")


async def test_the_closed_loop_stops_at_the_request_count_and_records_outcomes(
    bench: ModuleType,
) -> None:
    async def send(number: int) -> tuple[str | None, str]:
        return (None, "HTTP/2") if number % 2 else ("WriteError", "")

    sample = await bench.drive("fake", send, concurrency=4, duration=30.0, requests=10)
    assert sample.successes + sum(sample.failures.values()) == 10
    assert set(sample.failures) <= {"WriteError"}
    assert set(sample.versions) <= {"HTTP/2"}
    assert sample.seconds < 30.0


def test_the_report_names_its_section_command_and_table(bench: ModuleType) -> None:
    args = argparse.Namespace(rotate=1000, concurrency=64, duration=10.0, section="")
    sample = bench.Sample("httprail-h2", 10.0, latencies=[0.01] * 5)
    sample.versions["HTTP/2"] = 5
    text = bench.report([sample], args, "python benchmarks/http2.py")
    assert text.startswith("### Rotation every 1,000 requests\n")
    assert "Command: `python benchmarks/http2.py`" in text
    assert "| httprail-h2 | HTTP/2 | 5 | 0 | 0 | 0 | 10.0 | 10.0 |" in text
