"""The scaling benchmark's machinery: a reduced run of each scenario gives sane figures.

``benchmarks/scaling.py`` measures rps and RSS over many hosts, memory per SSE stream, the two
SSE parsers and body MB/s. These tests run each scenario small, against its real server, and
check what the report is built from (every request answered, every stream fed, memory figures
finite, the ratios computed as the report says); they assert no timing.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ..benchmarks import load_benchmark

pytest.importorskip("pyreqwest")
pytest.importorskip("aiohttp")

pytestmark = pytest.mark.timeout(120)

HOSTS = 3


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("scaling")


@pytest.fixture(scope="module")
def server(bench: ModuleType) -> Iterator[Any]:
    with bench._server_class()(0, HOSTS) as running:
        yield running


@pytest.mark.parametrize("kind", ["aiohttp", "httprail-aiohttp", "reqwest", "httprail-reqwest"])
async def test_a_hosts_cell_answers_every_request_on_every_host(
    bench: ModuleType, server: Any, kind: str
) -> None:
    """Every request of the first pass and of the timed loop succeeds, each host on its own
    loopback address is reached, and the RSS figures are finite."""
    urls = [server.url(i) for i in range(HOSTS)]
    accepted = server.counters()["accepted"]
    cell = await bench.hosts_cell(kind, urls, duration=0.2, warm_up=0.0, concurrency=4)
    assert cell["failed"] == 0
    assert cell["first_ok"] == HOSTS
    assert cell["ok"] > 0
    assert cell["rps"] > 0
    assert server.counters()["accepted"] - accepted - 2 >= HOSTS  # not the two /stats calls
    for key in ("rss_before", "rss_peak", "rss_after"):
        assert math.isfinite(cell[key])
        assert cell[key] > 0
    assert cell["rss_peak"] >= cell["rss_after"]
    assert cell["fds"] > 0


async def test_the_in_memory_client_keeps_no_record_of_its_requests(bench: ModuleType) -> None:
    """The in-memory row (the stack's own state) answers every host and empties the mock
    terminal's record after each request, so the record is not counted as the stack's memory."""
    urls = [f"http://127.0.{i // 254}.{i % 254 + 1}:1/" for i in range(50)]
    cell = await bench.hosts_cell("httprail-memory", urls, duration=0.1, warm_up=0.0, concurrency=4)
    assert (cell["failed"], cell["first_ok"]) == (0, 50)
    async with bench.open_client("httprail-memory") as client:
        assert await client.get(urls[0])
        assert client.recorded == []


@pytest.mark.parametrize("kind", ["aiohttp", "httprail-aiohttp", "reqwest", "httprail-reqwest"])
async def test_an_sse_cell_feeds_every_stream_and_measures_its_memory(
    bench: ModuleType, server: Any, kind: str
) -> None:
    """Every stream opens and receives the events asked for, parsed; memory per stream is
    finite; events are delivered in the window, and no more than the server can have sent:
    one per stream every ``SSE_INTERVAL`` since the client was opened (a stall before the window
    may bring a burst into it, so the bound is what was sent, not the steady rate)."""
    cell = await bench.sse_cell(kind, server.url(0, "/sse"), streams=20, events=1, window=0.25)
    assert cell["failed"] == 0, cell["errors"]
    assert cell["min_events"] >= 1
    assert math.isfinite(cell["kib_per_stream"])
    window = cell["window_seconds"]  # as it ran: a loaded loop wakes up late
    assert window > 0.24  # never shorter than asked (but for the clock's resolution)
    # The server ticks every SSE_INTERVAL, one event to each open stream; no event the client
    # reads was sent before the client existed. (Bounded by the streams' own age instead, the
    # check failed twice in loaded CI runs, 3 events per stream in the window: unexplained.)
    sendable = cell["streams"] * (cell["client_seconds"] / bench.SSE_INTERVAL + 1)
    assert 0 < cell["delivered_per_s"] * window <= sendable


def test_memory_per_stream_in_a_fresh_process_is_positive(bench: ModuleType, server: Any) -> None:
    """In a fresh process (as the benchmark runs it), the RSS grown by open streams gives a
    positive, finite memory per stream."""
    job = {"scenario": "sse", "kind": "httprail-aiohttp", "url": server.url(0, "/sse")}
    cell = bench.run_child({**job, "streams": 100, "events": 1, "window": 0.1}, timeout=60)
    assert cell["failed"] == 0, cell["errors"]
    assert math.isfinite(cell["kib_per_stream"])
    assert cell["kib_per_stream"] > 0


@pytest.mark.parametrize("kind", ["aiohttp", "httprail-aiohttp", "reqwest", "httprail-reqwest"])
async def test_a_bodies_cell_reads_every_byte_whole_and_streamed(
    bench: ModuleType, server: Any, kind: str
) -> None:
    """Each body arrives complete, read whole and streamed, with a finite rate and peak RSS."""
    origin = server.url(0, "").rstrip("/")
    rows = await bench.bodies_cell(kind, origin, [(100_000, 2), (3_000_000, 1)])
    assert set(rows) == {"100000:whole", "100000:stream", "3000000:whole", "3000000:stream"}
    for row in rows.values():
        assert row["ok"]
        assert math.isfinite(row["mb_per_s"])  # a time was measured (no zero-length read)


def test_both_sse_parsers_read_the_same_events_from_the_same_bytes(bench: ModuleType) -> None:
    """httprail's parser and the openai SDK's decoder give the same events from each chunking,
    and the micro benchmark reports a rate per parser and chunking."""
    pytest.importorskip("openai")
    for size in (0, 7, 4096):
        chunks = bench.sse_chunks(30, size)
        assert b"".join(chunks) == b"".join(bench.sse_event(n) for n in range(30))
        assert bench.parse_ours(chunks) == bench.parse_openai(chunks)
        assert len(bench.parse_ours(chunks)) == 30
    rows = bench.parser_bench(200, 1)
    labels = [label for label, rates in rows.items() if isinstance(rates, dict)]
    assert len(labels) == 3
    for label in labels:
        assert all(rate > 0 for rate in rows[label]["httprail"] + rows[label]["openai"])


def _hosts_run(rps: float, growth: float) -> dict[str, Any]:
    return {
        "rps": rps,
        "first_rps": rps / 2,
        "second_rps": rps / 4 * 3,
        "rss_before": 40.0,
        "rss_peak": 40.0 + growth,
        "rss_after": 40.0 + growth,
        "connections": 64,
        "failed": 0,
    }


def test_the_report_gives_ratios_to_the_raw_client_and_memory_per_added_host(
    bench: ModuleType,
) -> None:
    """x raw is the median rps over the raw client's median at the same host count, x its
    1-host rps is against its own 1-host median, both passes over the hosts are reported, and
    KiB per added host is the growth beyond the 1-host growth divided by the hosts added."""
    results: dict[str, Any] = {
        "hosts": {
            ("aiohttp", 1): [_hosts_run(r, 1.0) for r in (90, 100, 110)],
            ("aiohttp", 101): [_hosts_run(r, 2.0) for r in (80, 100, 200)],
            ("httprail-aiohttp", 1): [_hosts_run(r, 1.0) for r in (40, 50, 60)],
            ("httprail-aiohttp", 101): [_hosts_run(r, 11.0) for r in (45, 25, 5)],
        },
        "sse": {},
        "bodies": {},
        "parser": None,
    }
    lines = bench.render_hosts(results, ["aiohttp", "httprail-aiohttp"], [1, 101])
    row = next(line for line in lines if line.startswith("| httprail, aiohttp terminal | 101 "))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[2:6] == ["25", "5-45", "0.25x", "0.50x"]
    assert cells[6:8] == ["12", "19"]  # the first and second passes' medians
    assert cells[12] == f"{10.0 * 1024 / 100:,.2f}"  # (11 - 1) MiB over 100 added hosts


def test_write_replaces_the_run_and_keeps_the_reading(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--write`` replaces the measured section of scaling.md and keeps the prose after it."""
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    first = bench.write("run one\n")
    text = first.read_text()
    first.write_text(
        text.replace("<!-- --8<-- [end:report] -->", "Reading.\n\n<!-- --8<-- [end:report] -->")
    )
    second = bench.write("run two\n").read_text()
    assert "run two" in second
    assert "run one" not in second
    assert "Reading." in second


def test_quick_arguments_keep_the_run_small(bench: ModuleType) -> None:
    """--quick shrinks every scenario and keeps a single repetition."""
    args: argparse.Namespace = bench.parse_args(["--quick"])
    assert args.repeats == 1
    assert max(args.plan.hosts) < 100
    assert args.plan.streams < 1000
    assert max(size for size, _ in args.plan.bodies) < 100_000_000
