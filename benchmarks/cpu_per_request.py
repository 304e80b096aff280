"""CPU time per request, split by thread, with the context switches that come with it.

Throughput on this 2-CPU machine is bounded by the CPU the client spends per request: the
client runs on one CPU (with pyreqwest's runtime thread, when there is one) and the server on
the other. This measures that cost directly, where ``throughput.py`` sees its effect on rps.

One command starts the benchmark server of ``throughput.py`` (granian pinned to CPU 1), then
runs each client in a fresh process pinned to CPU 0, one after another, ``--rounds`` times in
alternating order: ``--warm-up`` requests, then ``--requests`` at concurrency ``--concurrency``
(closed loop). Per request it reports the process's CPU time (``getrusage``: user and system),
each thread's CPU time and voluntary and involuntary context switches (``/proc/self/task``),
as the median and the range over the rounds; and the rps of that closed loop with how busy it
kept the client's CPU (CPU time over wall time): under 100% the client waits, not works.

Clients (``--only``): every key of ``throughput.py`` (``aiohttp``, ``reqwest``, ``httprail``,
``httprail-reqwest``, ...) and ``reqwest-streamed``: raw pyreqwest making the calls
``PyreqwestTerminal`` makes (streamed request with five headers, head, the body read at once,
``__aexit__``). In every pyreqwest client the runtime thread keeps one Python thread state, as
the terminal arranges.

Run:  python benchmarks/cpu_per_request.py [--only aiohttp,httprail-reqwest,reqwest-streamed]
                                           [--requests 16000] [--warm-up 500] [--rounds 4]
                                           [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput  # the benchmark's server and clients

DEFAULT = ("aiohttp", "reqwest-streamed", "httprail-reqwest", "httprail")
HEADERS = {
    "host": "127.0.0.1",
    "accept": "*/*",
    "accept-encoding": "gzip, deflate",
    "connection": "keep-alive",
    "user-agent": "python-httpx/0.28.1",
}
Send = throughput.Send


@contextlib.asynccontextmanager
async def reqwest_streamed(url: str) -> AsyncIterator[Send]:
    """Raw pyreqwest doing what ``PyreqwestTerminal`` asks of it for a plain answer."""
    from pyreqwest.client import ClientBuilder

    async with ClientBuilder().build() as client:

        async def send() -> bool:
            sending = client.request("GET", url).headers(HEADERS).build_streamed()
            response = await sending.__aenter__()
            try:
                await response.body_reader.bytes()
            finally:
                await sending.__aexit__(None, None, None)
            list(response.headers.items())
            return response.status == 200

        yield send


def opener(key: str) -> Any:
    if key == "reqwest-streamed":
        return reqwest_streamed
    subject = throughput.BY_KEY.get(key)
    if subject is None or subject.open is None:
        raise SystemExit(f"unknown client {key!r}")
    return subject.open


def threads() -> dict[str, tuple[float, int, int]]:
    """Each thread of this process: (CPU seconds, voluntary, involuntary context switches),
    keyed by name and id. CPU time comes in clock ticks (10 ms here): a run needs seconds of it
    (16,000 requests are 1-3 s) for per-request figures to be exact to a per cent."""
    found: dict[str, tuple[float, int, int]] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        base = f"/proc/self/task/{tid}"
        try:
            with open(f"{base}/stat") as stat, open(f"{base}/comm") as comm:
                fields = stat.read().rsplit(")", 1)[1].split()
                name = comm.read().strip()
            with open(f"{base}/status") as status:
                lines = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:  # the thread ended meanwhile
            continue
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        voluntary = int(lines["voluntary_ctxt_switches"])
        involuntary = int(lines["nonvoluntary_ctxt_switches"])
        found[f"{name}:{tid}"] = (cpu, voluntary, involuntary)
    return found


def per_request(
    before: dict[str, tuple[float, int, int]], after: dict[str, tuple[float, int, int]], n: int
) -> dict[str, dict[str, float]]:
    """Per thread name (``python`` is the main thread): µs of CPU and switches per request."""
    out: dict[str, dict[str, float]] = {}
    for key, (cpu, voluntary, involuntary) in after.items():
        was = before.get(key, (0.0, 0, 0))
        name = key.split(":")[0]
        row = out.setdefault(name, {"cpu_us": 0.0, "voluntary": 0.0, "involuntary": 0.0})
        row["cpu_us"] += (cpu - was[0]) / n * 1e6
        row["voluntary"] += (voluntary - was[1]) / n
        row["involuntary"] += (involuntary - was[2]) / n
    return {name: row for name, row in out.items() if any(row.values())}


async def measure(key: str, url: str, requests: int, warm_up: int, concurrency: int) -> Any:
    async with opener(key)(url) as send:
        for _ in range(warm_up):
            await send()

        async def worker(count: int) -> int:
            return sum([await send() for _ in range(count)])

        share = requests // concurrency
        before, used = threads(), resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        ok = sum(await asyncio.gather(*(worker(share) for _ in range(concurrency))))
        seconds = time.perf_counter() - started
        after, done = threads(), resource.getrusage(resource.RUSAGE_SELF)
    n = share * concurrency
    cpu = done.ru_utime + done.ru_stime - used.ru_utime - used.ru_stime
    return {
        "key": key,
        "requests": n,
        "ok": ok,
        "rps": n / seconds,
        "busy": cpu / seconds,  # of the one CPU the client has
        "cpu_us": cpu / n * 1e6,
        "system_us": (done.ru_stime - used.ru_stime) / n * 1e6,
        "threads": per_request(before, after, n),
    }


def child(key: str, url: str, requests: int, warm_up: int, concurrency: int) -> None:
    throughput._pin(throughput.CLIENT_CPU)
    if "reqwest" in key:
        throughput.keep_runtime_thread_state()
    print(json.dumps(asyncio.run(measure(key, url, requests, warm_up, concurrency))), flush=True)
    if "reqwest" in key:
        # pyreqwest's runtime thread still drops the closed client's connections for a moment;
        # an interpreter finalizing meanwhile aborts (PyGILState_Release: 1 raw run in 20 here).
        # PyreqwestTerminal waits for it at exit; a raw client does not, so the child does.
        time.sleep(0.2)


def run_child(key: str, url: str, options: argparse.Namespace) -> Any:
    command = [sys.executable, __file__, "--child", key, url]
    command += ["--requests", str(options.requests), "--warm-up", str(options.warm_up)]
    command += ["--concurrency", str(options.concurrency)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(samples: Sequence[float]) -> str:
    return f"{statistics.median(samples):7.1f} ({min(samples):.1f}-{max(samples):.1f})"


def report(results: dict[str, list[Any]]) -> str:
    lines = [
        "| client | CPU µs/request | system µs | rps | CPU busy | thread: CPU µs, voluntary / "
        "involuntary switches per request (medians) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, rows in results.items():
        names = sorted({name for row in rows for name in row["threads"]})
        parts = []
        for name in names:
            got = [row["threads"].get(name, {}) for row in rows]
            cpu = statistics.median(g.get("cpu_us", 0.0) for g in got)
            voluntary = statistics.median(g.get("voluntary", 0.0) for g in got)
            involuntary = statistics.median(g.get("involuntary", 0.0) for g in got)
            parts.append(f"{name} {cpu:.1f} µs, {voluntary:.2f} / {involuntary:.2f}")
        cpu = summary([row["cpu_us"] for row in rows])
        system = summary([row["system_us"] for row in rows])
        rps = statistics.median(row["rps"] for row in rows)
        busy = summary([row["busy"] * 100 for row in rows])
        lines.append(f"| {key} | {cpu} | {system} | {rps:,.0f} | {busy} % | {'; '.join(parts)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(DEFAULT), help="comma-separated clients")
    parser.add_argument("--requests", type=int, default=16_000)
    parser.add_argument("--warm-up", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--child", nargs=2, metavar=("KEY", "URL"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        key, url = options.child
        child(key, url, options.requests, options.warm_up, options.concurrency)
        return 0
    keys = [key for key in options.only.split(",") if key]
    for key in keys:
        opener(key)  # an unknown one stops here, before the server starts
    results: dict[str, list[Any]] = {key: [] for key in keys}
    with throughput.Server() as server:
        for round_ in range(options.rounds):
            order = keys if round_ % 2 == 0 else keys[::-1]
            for key in order:
                row = run_child(key, server.url, options)
                results[key].append(row)
                print(
                    f"  [{round_ + 1}/{options.rounds}] {key:20} {row['cpu_us']:7.1f} µs/request",
                    flush=True,
                )
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
