"""The HTTP/2 rotation benchmark's harness: its statistics, report sections and closed loop.

The figures come from ``python benchmarks/http2.py``; its server is exercised by
``tests/integration/test_http2_rotation.py``.
"""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any

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


def _results(bench: ModuleType, rps: dict[str, float]) -> dict[tuple[str, int], list[Any]]:
    throughput = bench.throughput
    return {
        (kind, c): [throughput.Sample(rps=value, p50=0.004, p99=0.01, requests=100)]
        for kind, value in rps.items()
        for c in (16, 64)
    }


def test_compare_judges_reqwest_h2_against_httpx_h2_and_its_own_http1(bench: ModuleType) -> None:
    """``--compare``: the stack on reqwest h2 must reach 3x raw httpx h2 and 0.9x itself over
    HTTP/1.1 at each concurrency; a client not measured leaves its target unjudged."""
    h1 = "httprail-reqwest-h1"
    met = _results(bench, {"httpx-h2": 100, "httprail-reqwest-h2": 300, h1: 330})
    assert [c.met for c in bench.compare_checks(met, [16, 64])] == [True] * 4
    missed = _results(bench, {"httpx-h2": 100, "httprail-reqwest-h2": 290, h1: 400})
    assert [c.met for c in bench.compare_checks(missed, [16])] == [False, False]
    unmeasured = _results(bench, {"httprail-reqwest-h2": 300})
    assert [c.met for c in bench.compare_checks(unmeasured, [16])] == [None, None]


def test_compare_report_has_every_client_at_every_concurrency(bench: ModuleType) -> None:
    """The section names the command, the targets, one row per client and concurrency with
    the ratio to raw httpx h2, and how each client is built."""
    results = _results(bench, {kind: 100.0 * (i + 1) for i, kind in enumerate(bench.COMPARED)})
    args = argparse.Namespace(duration=3.0, warm_up=0.5, repeats=1)
    text = bench.compare_report(
        results,
        list(bench.COMPARED),
        [16, 64],
        args,
        "python benchmarks/http2.py --compare",
        (0.5, 0.7),
        True,
    )
    assert text.startswith("### HTTP/2 over TLS, side by side (issue 18)\n")
    assert "Command: `python benchmarks/http2.py --compare`" in text
    assert "| httprail-reqwest-h2 | 64 | 400 | 400-400 | 4.00 | 10.0 | 4.00x |" in text
    assert sum(line.startswith("| httprail-aiohttp |") for line in text.splitlines()) == 2
    assert "- reqwest-h2: raw pyreqwest" in text


def test_a_compared_client_not_known_is_refused(bench: ModuleType) -> None:
    """``--compare --only`` takes the compared clients only."""
    with pytest.raises(SystemExit):
        bench.main(["--compare", "--only", "httprail-h2"])


def test_every_compared_client_gets_its_protocol_from_the_tls_server(bench: ModuleType) -> None:
    """A short real run of each ``--compare`` client against granian over TLS: answers, no
    errors (each counts a response only in the protocol it names), and no server left."""
    pytest.importorskip("granian")
    pytest.importorskip("pyreqwest")
    pytest.importorskip("trustme")
    results, _pinned = bench.compare(
        list(bench.COMPARED), [2], 1, warm_up=0.0, duration=0.3, log=lambda line: None
    )
    for kind in bench.COMPARED:
        (sample,) = results[(kind, 2)]
        assert (sample.requests > 0, sample.errors) == (True, 0), kind
