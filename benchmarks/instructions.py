"""CPU instructions per request, counted by valgrind: a noise-free companion to throughput.py.

Requests per second on a shared VM move by ±10-20% between repetitions, which hides changes of
a few percent. The number of instructions a client executes per request does not: this script
runs each client of ``throughput.py`` under ``valgrind --tool=callgrind`` (the local server
runs outside valgrind) for two request counts, and reports the difference per request, so
start-up and imports cancel out. The ratio to raw aiohttp is an upper bound for the throughput
ratio: cache misses, which valgrind does not charge, cost the longer path a little more.

    python benchmarks/instructions.py                     # aiohttp, httprail, httprail-aiohttp
    python benchmarks/instructions.py --only aiohttp,httprail

Each client takes about two minutes (valgrind runs Python some 50 times slower).

What is counted: every instruction executed in user space by every thread of the client's
process, Python and native code alike (callgrind follows all threads and reports their sum).
For pyreqwest (``reqwest``, ``httprail-reqwest``) that includes the Rust code on its runtime
thread: HTTP parsing, the pool, the hand-over to the event loop. Kernel work (the socket
system calls) is counted by no row. ``--base KEY`` sets the row the others are compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys

import throughput

FEW, MANY = 500, 2500
CONCURRENCY = 16


async def _drive(key: str, url: str, count: int) -> None:
    opener = throughput.BY_KEY[key].open
    assert opener is not None
    async with opener(url) as send:
        left = count

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                if not await send():
                    raise SystemExit(f"{key}: a request failed")

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def _instructions(key: str, url: str, count: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--drive",
        key,
        str(count),
    ]
    done = subprocess.run(
        command, env={**os.environ, "BENCH_URL": url}, capture_output=True, text=True, check=False
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed for {key}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="aiohttp,httprail,httprail-aiohttp")
    parser.add_argument("--base", default="aiohttp", help="the row to compare with")
    parser.add_argument("--drive", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        asyncio.run(_drive(args.drive[0], os.environ["BENCH_URL"], int(args.drive[1])))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    keys = args.only.split(",")
    per_request: dict[str, float] = {}
    with throughput.Server() as server:
        for key in keys:
            few, many = (_instructions(key, server.url, n) for n in (FEW, MANY))
            per_request[key] = (many - few) / (MANY - FEW)
            base = per_request.get(args.base)
            label = throughput.BY_KEY[args.base].label
            versus = f"  {base / per_request[key]:.3f}x {label}" if base else ""
            print(f"{throughput.BY_KEY[key].label:24s} {per_request[key] / 1000:8.1f}k{versus}")


if __name__ == "__main__":
    main()
