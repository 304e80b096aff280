"""The instruction-count benchmark's harness: how it reads valgrind and drives a client.

The figures come from ``python benchmarks/instructions.py`` (it needs valgrind); these tests
check what it computes from valgrind's report, and that its driver sends what it is asked to.
"""

from __future__ import annotations

import subprocess
from types import ModuleType
from typing import Any

import pytest

from httprail.testing import ChaosServer

from . import ROOT, load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "benchmarks"))  # it imports throughput.py
        return load_benchmark("instructions")


def test_the_count_is_valgrinds_collected_total(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    def fake_run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        report = f"==1== Events    : Ir\n==1== Collected : {int(command[-1]) * 1000}\n"
        return subprocess.CompletedProcess(command, 0, "", report)

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    assert bench._instructions("aiohttp", "http://127.0.0.1:1/item", 500) == 500_000
    assert seen[0][:2] == ["valgrind", "--tool=callgrind"]
    assert seen[0][-3:] == ["--drive", "aiohttp", "500"]

    def failed(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "valgrind: no such tool")

    monkeypatch.setattr(bench.subprocess, "run", failed)
    with pytest.raises(SystemExit, match="valgrind failed for aiohttp"):
        bench._instructions("aiohttp", "http://127.0.0.1:1/item", 500)


async def test_the_driver_sends_exactly_the_requests_asked_for(
    bench: ModuleType, chaos_server: ChaosServer
) -> None:
    await bench._drive("httprail", chaos_server.url_for("/item"), 40)
    assert chaos_server.count("/item") == 40


@pytest.mark.parametrize(
    "key", ["aiohttp-floor", "reqwest-floor", "aiohttp-terminal", "reqwest-terminal"]
)
async def test_the_extra_rows_send_each_request_once_with_the_clients_headers(
    bench: ModuleType, chaos_server: ChaosServer, key: str
) -> None:
    """The floor rows and the terminal-alone rows put one request per call on the wire, with
    the headers the client sends (the floor rows' headers are converted once, not dropped)."""
    await bench._drive(key, chaos_server.url_for("/item"), 20)
    assert chaos_server.count("/item") == 20
    seen = chaos_server.requests[-1]
    assert (seen.header("user-agent") or "").startswith("httprail/")
    assert seen.header("accept") == "*/*"
