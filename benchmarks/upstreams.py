"""Memory of per-upstream state: a million distinct hosts through the default client.

A crawler or a webhook sender talks to a new host with almost every request. Every stage that
keeps state per upstream (breaker, retry budget, metrics; hedge and rate limiter when used)
must keep a bounded table, or the process grows by a few hundred bytes per host forever. This
script sends ``--hosts`` requests, each to a new host, through ``AsyncClient`` with the default
stack (built by ``default_plugins``, with a no-op sleep so retries do not wait) over an
in-memory ``MockTerminal``. One host in ``--fail-every`` answers 503, so the retry budget and
the breaker write records too (the other hosts succeed: the breaker writes nothing for them).
It samples RSS (``VmRSS``) after a warm-up of 20,000 hosts (the tables are full by then) and
at checkpoints, and prints the growth and every table's size.

    python benchmarks/upstreams.py                   # 1,000,000 hosts, ~2-4 min
    python benchmarks/upstreams.py --hosts 200000 --write

Target (issue 13): RSS growth under 50 MiB for 1,000,000 hosts.
The terminal's own record of requests (``MockTerminal.requests``, a test helper) is emptied
every 1,000 requests: it is not the stack's state.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import structlog

from httprail import AsyncClient, HttpSettings
from httprail.middleware import CircuitBreaker, Metrics, Retry, default_plugins
from httprail.testing import MockTerminal

WARM_UP = 20_000
TARGET_MIB = 50.0
RESULTS = Path(__file__).parent / "results" / "upstreams.md"


def rss_mib() -> float:
    """Resident set size of this process now, MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmRSS in /proc/self/status (Linux only)")


async def _no_sleep(seconds: float) -> None:
    return None


async def run(hosts: int, fail_every: int) -> tuple[list[tuple[int, float]], dict[str, int]]:
    def answer(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        failing = int(host[1 : host.index(".")]) % fail_every == 0
        return httpx.Response(503 if failing else 200)

    terminal = MockTerminal(answer)
    plugins = default_plugins(HttpSettings(), sleep=_no_sleep)
    samples: list[tuple[int, float]] = []
    checkpoints = {WARM_UP, *(hosts * k // 10 for k in range(1, 11) if hosts * k // 10 > WARM_UP)}
    async with AsyncClient(plugins=plugins, terminal=terminal) as client:
        for n in range(hosts):
            await client.get(f"https://h{n}.example/")
            if n % 1000 == 999:
                terminal.requests.clear()
            if n + 1 in checkpoints:
                gc.collect()
                samples.append((n + 1, rss_mib()))
        breaker = next(p for p in plugins if isinstance(p, CircuitBreaker))
        retry = next(p for p in plugins if isinstance(p, Retry))
        metrics = next(p for p in plugins if isinstance(p, Metrics))
        sizes = {
            "breaker store": len(breaker.store),  # type: ignore[arg-type]
            "retry budget": retry.budget.tracked_keys if retry.budget is not None else 0,
            "metrics upstreams": len(metrics.snapshot()),
            "metrics requests counted": sum(m.requests for m in metrics.snapshot().values()),
        }
    return sorted(samples), sizes


def report(hosts: int, fail_every: int, samples: list[tuple[int, float]], sizes: dict[str, int],
           seconds: float) -> str:  # fmt: skip
    base = next(rss for n, rss in samples if n == WARM_UP)
    growth = samples[-1][1] - base
    verdict = "ok" if growth < TARGET_MIB else "MISS"
    lines = [
        "# Per-upstream state: memory over a million hosts",
        "",
        f"Command: `python benchmarks/upstreams.py --hosts {hosts} --fail-every {fail_every}"
        " --write`  ",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"httpx {httpx.__version__}, {platform.machine()}, {platform.system()}; "
        f"{seconds:.0f} s",
        "",
        "Each request goes to a new host through `AsyncClient` with the default stack over",
        "`MockTerminal`; one host in "
        f"{fail_every} answers 503 (retried, so the breaker and the retry budget keep records).",
        "",
        "| hosts sent | RSS (MiB) | growth since the warm-up (MiB) |",
        "| ---: | ---: | ---: |",
    ]
    lines += [f"| {n:,} | {rss:.1f} | {rss - base:+.1f} |" for n, rss in samples]
    lines += [
        "",
        f"Growth after {hosts:,} hosts: **{growth:+.1f} MiB** "
        f"(target < {TARGET_MIB:.0f} MiB: {verdict}).",
        "",
        "| table | entries at the end |",
        "| --- | ---: |",
    ]
    lines += [f"| {name} | {count:,} |" for name, count in sizes.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1_000_000)
    parser.add_argument("--fail-every", type=int, default=10)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    if args.hosts < WARM_UP * 2:
        raise SystemExit(f"--hosts must be at least {WARM_UP * 2}")
    # The failing hosts would print four log lines each: keep the logger quiet (the Logging
    # stage then builds no event at all).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    started = time.perf_counter()
    samples, sizes = asyncio.run(run(args.hosts, args.fail_every))
    text = report(args.hosts, args.fail_every, samples, sizes, time.perf_counter() - started)
    sys.stdout.write(text)
    if args.write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
