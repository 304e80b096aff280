"""Outlier ejection: one of three endpoints fails every request (issue 16).

Three endpoints of one service (``ChaosServer``s on 127.0.0.1); the bad one answers every
request with 503 (``503`` case) or refuses connections (``refused`` case: a port nobody
listens on). A ``ServiceRegistry`` client with the default stack (retry, breaker, budget,
timeouts) and the default balancer (round robin, ejection after 5 failures in a row for
30 s times the times ejected) sends GETs from ``concurrency`` workers for ``seconds``.

Reported per case: logical requests and the share that succeeded (target >= 99%), attempts in
all and on the bad endpoint, and the bad endpoint's share of the attempts made after the first
second (target <= 5%). The run lasts past the first ejection time (30 s) by default, so the bad
endpoint's return and second ejection are in the figures.

    python benchmarks/outliers.py                 # two cases, 40 s each
    python benchmarks/outliers.py --write         # and store benchmarks/results/outliers.md
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from httprail import Success
from httprail.services import ServiceConfig, ServiceRegistry
from httprail.testing import ChaosServer, Reply

CASES = ("503", "refused")
SUCCESS_TARGET = 0.99
SHARE_TARGET = 0.05
WARMUP = 1.0  # "after the first second"


@dataclass(frozen=True)
class Row:
    """One case's figures."""

    case: str
    logical: int
    succeeded: int
    attempts_after: int
    bad_after: int
    attempts: int
    bad: int
    ejections: int

    @property
    def success(self) -> float:
        return self.succeeded / self.logical if self.logical else 0.0

    @property
    def share(self) -> float:
        return self.bad_after / self.attempts_after if self.attempts_after else 0.0


def verdict(row: Row) -> str:
    """``ok`` when both targets are met, else ``MISS``."""
    return "ok" if row.success >= SUCCESS_TARGET and row.share <= SHARE_TARGET else "MISS"


def closed_port() -> int:
    """A local port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def run_case(
    case: str, seconds: float, concurrency: int, balancer: dict[str, Any] | None = None
) -> Row:
    """Load one service whose third endpoint fails (``case``) for ``seconds``."""
    with ChaosServer() as one, ChaosServer() as two, ChaosServer() as bad:
        for server in (one, two):
            server.script("/work", Reply.json({"ok": True}))
        bad.script("/work", Reply.status(503))
        bad_url = bad.url if case == "503" else f"http://127.0.0.1:{closed_port()}"
        config = ServiceConfig.from_entry(
            "svc",
            {"endpoints": [one.url, two.url, bad_url], "balancer": balancer or {}},
        )
        async with ServiceRegistry({"svc": config}) as registry:
            client = registry.client("svc").unwrap()
            endpoints = registry.balancer("svc").unwrap().endpoints
            succeeded = logical = 0
            start = time.monotonic()
            end = start + seconds

            async def worker() -> None:
                nonlocal succeeded, logical
                while time.monotonic() < end:
                    outcome = await client.get("/work")
                    logical += 1
                    succeeded += type(outcome) is Success

            async def snapshot() -> list[int]:
                await asyncio.sleep(WARMUP)
                return [e.attempts for e in endpoints]

            marks = asyncio.create_task(snapshot())
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            at_warmup = await marks
            final = [e.attempts for e in endpoints]
            ejections = endpoints[2].times_ejected
        one.forget_requests()
        two.forget_requests()
        bad.forget_requests()
    return Row(
        case=case,
        logical=logical,
        succeeded=succeeded,
        attempts_after=sum(final) - sum(at_warmup),
        bad_after=final[2] - at_warmup[2],
        attempts=sum(final),
        bad=final[2],
        ejections=ejections,
    )


def table(rows: list[Row]) -> list[str]:
    """The results as a markdown table."""
    lines = [
        "| case | logical requests | succeeded | attempts | on the bad endpoint | "
        "bad share after 1 s | times ejected | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.case} | {row.logical:,} | {row.success:.2%} | {row.attempts:,} | "
            f"{row.bad:,} | {row.share:.2%} ({row.bad_after:,} of {row.attempts_after:,}) | "
            f"{row.ejections} | {verdict(row)} |"
        )
    return lines


def main(seconds: float, concurrency: int, cases: list[str]) -> list[str]:
    """Run ``cases`` and print (and return) the table."""
    rows = [asyncio.run(run_case(case, seconds, concurrency)) for case in cases]
    lines = table(rows)
    print("\n".join(lines))
    return lines


def write(lines: list[str], seconds: float, concurrency: int) -> None:
    """Store the results in ``benchmarks/results/outliers.md``."""
    out = Path(__file__).parent / "results" / "outliers.md"
    text = [
        "# Outlier ejection: one of three endpoints failing",
        "",
        f"Command: `python benchmarks/outliers.py --write --seconds {seconds:g} "
        f"--concurrency {concurrency}`  ",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"httpx {httpx.__version__}, {platform.machine()}, {platform.system()}",
        "",
        "One service, three endpoints (ChaosServers on 127.0.0.1); the third answers 503 to",
        "everything (`503`) or refuses connections (`refused`). A `ServiceRegistry` client with",
        "the default stack and balancer (round robin; 5 failures in a row eject for 30 s x",
        f"times ejected) sends GETs from {concurrency} workers for {seconds:g} s. Targets: >= 99%",
        "of logical requests succeed; the bad endpoint gets <= 5% of the attempts made after",
        "the first second.",
        "",
        *lines,
        "",
    ]
    out.write_text("\n".join(text))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--case", choices=CASES, action="append")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    result = main(args.seconds, args.concurrency, args.case or list(CASES))
    if args.write:
        write(result, args.seconds, args.concurrency)
