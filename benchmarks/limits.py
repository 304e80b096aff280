"""Peak memory of hostile response bodies, per terminal, with the default settings (issue 13).

A raw asyncio server (its own process) answers with one of three bodies:

* ``body``: a 500 MB body with its ``Content-Length``;
* ``bomb``: 1 GB of zeros gzip-compressed (~1 MB on the wire, ``Content-Encoding: gzip``);
* ``endless``: a chunked body that never ends.

Each case runs in a fresh Python process (so one case's peak cannot hide another's): an
``AsyncClient`` with the default stack and ``HttpSettings()`` (``max_body_bytes`` = 100 MiB)
over the aiohttp, httpx or curl terminal sends one GET; the process reports the outcome, the
time it took and its peak RSS (``VmHWM``). Targets: every case a ``ResponseTooLargeError``
Failure in under 5 s, peak RSS <= the cap + 64 MiB (the whole process, interpreter included).

    python benchmarks/limits.py            # 9 cases, ~1 min
    python benchmarks/limits.py --write    # and store benchmarks/results/limits.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from httprail import AsyncClient, Failure, HttpSettings
from httprail._pipeline import TerminalPlugin
from httprail.terminals import AiohttpTerminal, CurlTerminal, HttpxTerminal

TERMINALS = ("aiohttp", "httpx", "curl")
CASES = ("body", "bomb", "endless")
MB = 1_000_000
MIB = 1024 * 1024
HEADROOM = 64 * MIB  # the target: peak RSS <= cap + 64 MiB
SECONDS = 5.0  # the target: a Failure within 5 s
BLOCK = 1024 * 1024


# --- the server (its own process) -------------------------------------------------------------


def gzip_of_zeros(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed, made block by block (never ``size`` in memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(BLOCK)
    parts = []
    left = size
    while left > 0:
        parts.append(packer.compress(zeros[: min(left, BLOCK)]))
        left -= BLOCK
    parts.append(packer.flush())
    return b"".join(parts)


class Server:
    """``/body/<bytes>``, ``/bomb/<bytes>`` (decoded size) and ``/endless``; one answer per
    connection, written until the client closes it."""

    def __init__(self, body_bytes: int, bomb_bytes: int) -> None:
        self.body_bytes = body_bytes
        self.bomb = gzip_of_zeros(bomb_bytes)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            ok = b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
            if path.startswith(b"/body"):
                writer.write(ok + b"Content-Length: %d\r\n\r\n" % self.body_bytes)
                block = b"x" * BLOCK
                for _ in range(0, self.body_bytes, BLOCK):
                    writer.write(block)
                    await writer.drain()
            elif path.startswith(b"/bomb"):
                writer.write(
                    ok + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(self.bomb)
                )
                writer.write(self.bomb)
                await writer.drain()
            else:
                writer.write(ok + b"Transfer-Encoding: chunked\r\n\r\n")
                chunk = b"%x\r\n" % (64 * 1024) + b"e" * (64 * 1024) + b"\r\n"
                while True:
                    writer.write(chunk)
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def run_server(body_bytes: int, bomb_bytes: int) -> None:
    server = await asyncio.start_server(Server(body_bytes, bomb_bytes).serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


# --- one case (its own process) ---------------------------------------------------------------


def build(kind: str, settings: HttpSettings) -> TerminalPlugin:
    match kind:
        case "httpx":
            return HttpxTerminal(settings)
        case "aiohttp":
            return AiohttpTerminal(settings)
        case _:
            return CurlTerminal(settings)


def memory(field: str) -> int:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of this process, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"no {field} in /proc/self/status")


async def run_case(terminal: str, case: str, url: str) -> dict[str, Any]:
    settings = HttpSettings()
    async with AsyncClient(url, terminal=build(terminal, settings), settings=settings) as client:
        await asyncio.sleep(0)
        before = memory("VmRSS")
        started = time.perf_counter()
        outcome = await client.get(f"/{case}")
        seconds = time.perf_counter() - started
    return {
        "outcome": type(outcome.failure()).__name__ if isinstance(outcome, Failure) else "Success",
        "seconds": seconds,
        "before": before,
        "peak": memory("VmHWM"),
        "cap": settings.max_body_bytes,
    }


def measure(terminal: str, case: str, url: str, env: dict[str, str]) -> dict[str, Any]:
    """Run one case in a fresh interpreter; its JSON report (a time-out is reported too)."""
    command = [sys.executable, __file__, "--case", terminal, case, url]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        return {"outcome": "no answer in 120 s", "seconds": 120.0, "before": 0, "peak": 0}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        return {"outcome": f"crashed: {tail[0][:80]}", "seconds": 0.0, "before": 0, "peak": 0}
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


# --- the table --------------------------------------------------------------------------------


def verdict(row: dict[str, Any], cap: int | None) -> str:
    limit = (cap or 0) + HEADROOM
    met = (
        row["outcome"] == "ResponseTooLargeError"
        and row["seconds"] < SECONDS
        and 0 < row["peak"] <= limit
    )
    return "ok" if met else "MISS"


def table(rows: list[tuple[str, str, dict[str, Any]]], cap: int | None) -> list[str]:
    lines = [
        "| terminal | case | outcome | seconds | peak RSS (MiB) | RSS before the request (MiB) "
        "| target |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for terminal, case, row in rows:
        lines.append(
            f"| {terminal} | {case} | {row['outcome']} | {row['seconds']:.2f} "
            f"| {row['peak'] / MIB:.1f} | {row['before'] / MIB:.1f} | {verdict(row, cap)} |"
        )
    return lines


def main(
    body_bytes: int, bomb_bytes: int, terminals: list[str], cap: int | None = None
) -> list[str]:
    """Run every case; the table's lines. ``cap``: another limit than the default (tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HTTP_")}  # defaults only
    if cap is not None:
        env["HTTP_MAX_BODY_BYTES"] = str(cap)
    with subprocess.Popen(
        [sys.executable, __file__, "--serve", str(body_bytes), str(bomb_bytes)],
        stdout=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
            rows = [(t, case, measure(t, case, url, env)) for t in terminals for case in CASES]
        finally:
            server.terminate()
    for terminal, case, row in rows:
        print(
            f"{terminal:8s} {case:8s} {row['outcome']:24s} {row['seconds']:6.2f} s  "
            f"peak {row['peak'] / MIB:7.1f} MiB  (before {row['before'] / MIB:.1f})"
        )
    lines = table(rows, cap if cap is not None else HttpSettings().max_body_bytes)
    print()
    print("\n".join(lines))
    return lines


def write(lines: list[str], body_bytes: int, bomb_bytes: int) -> None:
    out = Path(__file__).parent / "results" / "limits.md"
    cap = HttpSettings().max_body_bytes
    text = [
        "# Limits: hostile response bodies",
        "",
        "Command: `python benchmarks/limits.py --write`  ",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"httpx {httpx.__version__}, {platform.machine()}, {platform.system()}  ",
        f"Default settings: `max_body_bytes` = {cap:,} bytes (100 MiB). Bodies: "
        f"`body` {body_bytes / MB:,.0f} MB with its Content-Length, `bomb` {bomb_bytes / MB:,.0f}"
        " MB of zeros gzip-compressed, `endless` a chunked body that never ends.",
        "",
        "Each case is one GET through `AsyncClient` with the default stack, in a fresh process;",
        "peak RSS is the process's `VmHWM` (interpreter and imports included). Targets: a",
        "`ResponseTooLargeError` Failure in under 5 s, peak RSS <= cap + 64 MiB.",
        "",
        *lines,
        "",
        "Before this limit (issue 13): the 500 MB body was a Success at 1.08 GB peak RSS on every",
        "terminal, the gzip bomb was inflated whole (2.1 GB), the endless body grew ~400 MB/s",
        "until the total timeout.",
        "",
    ]
    out.write_text("\n".join(text))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/limits.md")
    parser.add_argument("--body-bytes", type=int, default=500 * MB)
    parser.add_argument("--bomb-bytes", type=int, default=1000 * MB)
    parser.add_argument("--terminals", default=",".join(TERMINALS))
    parser.add_argument("--serve", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(run_server(*args.serve))
    elif args.case:
        print(json.dumps(asyncio.run(run_case(*args.case))))
    else:
        table_lines = main(args.body_bytes, args.bomb_bytes, args.terminals.split(","))
        if args.write:
            write(table_lines, args.body_bytes, args.bomb_bytes)
