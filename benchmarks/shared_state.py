"""Shared state through Redis (issue 17): 8 worker processes, one chaos server, one redis-server.

Each scenario runs twice in the same run where a comparison makes sense: with one
``RedisStore`` shared by the workers (``shared``) and with each worker's own in-memory state
(``local``). Counts come from the chaos server (what the upstream saw), times from
``time.monotonic`` (one clock for every process on the machine).

* ``breaker``: a dead upstream (503), ``CircuitBreaker(failure_threshold=T, cooldown=1 s)``,
  each worker calling in a loop. Upstream hits before every worker fails fast (target: <= 1.1 T
  shared, vs 8 T local), then probes per cooldown (target: exactly 1 shared; local: 8).
* ``rate``: ``RateLimiter(rate=C)``, 4 loops per worker as fast as the limiter lets them, for
  ``--seconds``: the server's rate (target C +- 5% shared; local 8 C).
* ``budget``: an outage under ``Retry(max_retries=3)`` with ``RetryBudget(ratio=0.2,
  min_per_second=2, window=10)``: retries <= 20% of logical requests + the floor (shared; local:
  the floor is each worker's).
* ``outage``: the full shared stack (budget, limiter, breaker) on a healthy upstream, Redis
  killed after 2 s and restarted 2 s later: requests failed (target 0) and p99 latency while
  Redis is down minus p99 before (target <= the Redis timeout).
* ``overhead``: one worker, c=16: p50 per request with Retry+budget and CircuitBreaker on
  Redis minus the same stages in memory (target <= 0.3 ms), and with a shared RateLimiter too.

    python benchmarks/shared_state.py              # ~1 min
    python benchmarks/shared_state.py --write      # and store benchmarks/results/shared_state.md
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from httprail import AsyncClient, CircuitBreakerOpenError, Success
from httprail.middleware import CircuitBreaker, RateLimiter, Retry, RetryBudget
from httprail.testing import ChaosServer, Reply

SCENARIOS = ("breaker", "rate", "budget", "outage", "overhead")
LOOPS = 4  # concurrent request loops per worker (rate, budget, outage)
RATIO, FLOOR, WINDOW = 0.2, 2.0, 10.0  # the retry budget
OUTAGE = (2.0, 2.0, 6.0)  # Redis killed after, for, of a run of (seconds)


# --- redis-server (its own process) -----------------------------------------------------------


class Redis:
    """A ``redis-server`` on a free port of 127.0.0.1, no persistence; killed and restarted."""

    def __init__(self, binary: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.binary = binary
        self.folder = tempfile.mkdtemp(prefix="httprail-bench-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        command += ["--appendonly", "no", "--dir", self.folder]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


# --- one worker (its own process) -------------------------------------------------------------


def stages(spec: dict[str, Any], store: Any) -> list[Any]:
    """The middleware of ``spec``'s scenario, on ``store`` (``None``: in memory)."""
    kind = spec["scenario"]
    if kind == "breaker":
        return [
            CircuitBreaker(
                failure_threshold=spec["threshold"], cooldown=spec["cooldown"], store=store
            )
        ]
    if kind == "rate":
        return [RateLimiter(rate=spec["rate"], store=store)]
    budget = RetryBudget(ratio=RATIO, min_per_second=FLOOR, window=WINDOW, store=store)
    retry = Retry(max_retries=3, backoff_base=0.001, backoff_max=0.005, budget=budget)
    if kind == "budget":
        return [retry]
    if kind == "outage":
        return [retry, RateLimiter(rate=100_000, store=store), CircuitBreaker(store=store)]
    raise ValueError(kind)


async def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the client, say ready, wait for go, run the scenario; the figures as a dict."""
    from httprail_redis import RedisStore

    if spec["scenario"] == "overhead":
        return await overhead(spec, RedisStore)
    store = (
        RedisStore(spec["redis"], namespace=spec["ns"], timeout=spec["timeout"])
        if spec["shared"]
        else None
    )
    async with AsyncClient(spec["base"], plugins=stages(spec, store)) as client:
        await client.get("/warm")  # a connection and (shared) the scripts loaded
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        end = time.monotonic() + spec["seconds"]
        result: dict[str, Any] = {"first_open": None, "failed": 0, "sent": 0, "samples": []}

        async def loop() -> None:
            while time.monotonic() < end:
                started = time.monotonic()
                outcome = await client.get(spec["path"])
                result["sent"] += 1
                if spec["scenario"] == "breaker":
                    refused = not isinstance(outcome, Success) and isinstance(
                        outcome.failure(), CircuitBreakerOpenError
                    )
                    if refused:
                        if result["first_open"] is None:
                            result["first_open"] = started
                        await asyncio.sleep(0.005)  # rejected at once: poll for the half-open
                    continue
                if spec["scenario"] == "outage":
                    result["samples"].append((started, time.monotonic() - started))
                    if not isinstance(outcome, Success):
                        result["failed"] += 1
                if spec["scenario"] == "budget":
                    await asyncio.sleep(spec["pace"])

        await asyncio.gather(
            *(loop() for _ in range(1 if spec["scenario"] == "breaker" else LOOPS))
        )
    if store is not None:
        result["store"] = dataclasses.asdict(store.stats)
        await store.aclose()
    return result


async def overhead(spec: dict[str, Any], redis_store: Any) -> dict[str, Any]:
    """p50 latency at c=16 per variant, in interleaved blocks (noise hits them alike)."""
    store = redis_store(spec["redis"], namespace=spec["ns"], timeout=spec["timeout"])

    def stack(shared: bool, limiter: bool) -> list[Any]:
        on = store if shared else None
        chosen: list[Any] = [Retry(budget=RetryBudget(store=on))]
        if limiter:
            chosen.append(RateLimiter(rate=1_000_000, store=on))
        return [*chosen, CircuitBreaker(store=on)]

    variants = {
        "local": stack(False, False),
        "redis": stack(True, False),
        "redis+limiter": stack(True, True),
    }
    latencies: dict[str, list[float]] = {name: [] for name in variants}
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    clients = {
        name: AsyncClient(spec["base"], plugins=plugins) for name, plugins in variants.items()
    }
    try:
        for round_ in range(spec["rounds"] + 1):
            order = list(clients.items())
            for name, client in order if round_ % 2 else order[::-1]:  # no place favoured
                samples = [] if round_ else None  # round 0 warms up
                await burst(client, spec["per_round"], 16, samples)
                if samples is not None:
                    latencies[name] += samples
    finally:
        for client in clients.values():
            await client.aclose()
    result = {name: statistics.median(values) * 1000 for name, values in latencies.items()}
    result["store"] = dataclasses.asdict(store.stats)
    await store.aclose()
    return result


async def burst(
    client: AsyncClient, count: int, concurrency: int, samples: list[float] | None
) -> None:
    left = [count]

    async def loop() -> None:
        while left[0] > 0:
            left[0] -= 1
            started = time.perf_counter()
            outcome = await client.get("/ok")
            if samples is not None:
                samples.append(time.perf_counter() - started)
            assert isinstance(outcome, Success), outcome

    await asyncio.gather(*(loop() for _ in range(concurrency)))


# --- the parent: servers, workers, figures ----------------------------------------------------


def run_workers(
    specs: list[dict[str, Any]], during: Any = None
) -> tuple[list[dict[str, Any]], float]:
    """Start one process per spec, wait until all are ready, say go; their results and the
    go time (``time.monotonic``). ``during(go)`` runs in the parent meanwhile."""
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"a worker did not start: {line!r}")
    go = time.monotonic()
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    if during is not None:
        during(go)
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        if process.returncode:
            raise RuntimeError(f"a worker failed (exit {process.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results, go


def report(rows: list[str]) -> list[str]:
    """Print ``rows`` now (a long run shows its figures as they come), and pass them on."""
    for row in rows:
        print(row, flush=True)
    return rows


def kill_redis(redis: Redis, marks: dict[str, float], go: float) -> None:
    """Kill Redis ``OUTAGE[0]`` s after go, start it again ``OUTAGE[1]`` s later (on the same
    port, empty)."""
    time.sleep(max(0.0, go + OUTAGE[0] - time.monotonic()))
    marks["down"] = time.monotonic()
    redis.kill()
    time.sleep(OUTAGE[1])
    redis.start()
    marks["up"] = time.monotonic()


def breaker_figures(
    hits: list[float], opens: list[float | None], cooldown: float
) -> dict[str, Any]:
    """Hits before every worker failed fast, and the probes after.

    ``hits``: when the upstream saw each request; ``opens``: when each worker was first turned
    away. A hit before the last worker's first rejection (+ half a cooldown, for calls still
    in flight then) counts as before; the later ones are probes: ``probes`` counts them and
    ``busiest`` is the most probes in any ``cooldown``-long span after the trip (1: exactly one
    probe per cooldown, whoever sent it)."""
    known = [t for t in opens if t is not None]
    if len(known) < len(opens) or not known:
        return {"before": len(hits), "probes": 0, "busiest": 0, "failed_fast": False}
    cut = max(known) + cooldown / 2
    probes = sorted(t for t in hits if t >= cut)
    busiest = 0
    for i, start in enumerate(probes):
        busiest = max(busiest, sum(1 for t in probes[i:] if t < start + cooldown * 0.95))
    return {
        "before": sum(1 for t in hits if t < cut),
        "probes": len(probes),
        "busiest": busiest,
        "failed_fast": True,
    }


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def main(
    workers: int = 8,
    seconds: float = 10.0,
    threshold: int = 100,
    cooldown: float = 1.0,
    rate: float = 200.0,
    timeout: float = 0.005,
    scenarios: tuple[str, ...] = SCENARIOS,
    overhead_rounds: int = 6,
    redis_binary: str | None = None,
) -> list[str]:
    """Run the scenarios; the result table's markdown lines."""
    binary = redis_binary or shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH (apt-get install redis-server)")
    redis = Redis(binary)
    redis.start()
    rows = [
        "| scenario | state | measure | value | target | verdict |",
        "| --- | --- | --- | ---: | --- | --- |",
    ]
    try:
        with ChaosServer() as server:
            base = {"base": server.url, "redis": redis.url, "timeout": timeout}
            server.script("/dead-shared", Reply.status(503))
            server.script("/dead-local", Reply.status(503))
            server.script("/budget-shared", Reply.status(503))
            server.script("/budget-local", Reply.status(503))
            for kind in scenarios:
                rows += report(
                    scenario(
                        kind,
                        server,
                        redis,
                        base,
                        workers,
                        seconds,
                        threshold,
                        cooldown,
                        rate,
                        timeout,
                        overhead_rounds,
                    )
                )
    finally:
        redis.close()
    return rows


def scenario(
    kind: str,
    server: ChaosServer,
    redis: Redis,
    base: dict[str, Any],
    workers: int,
    seconds: float,
    threshold: int,
    cooldown: float,
    rate: float,
    timeout: float,
    overhead_rounds: int,
) -> list[str]:
    rows: list[str] = []
    if kind == "overhead":
        spec = {**base, "scenario": "overhead", "ns": uuid.uuid4().hex, "shared": True}
        spec |= {"rounds": overhead_rounds, "per_round": 500}
        (result,), _ = run_workers([spec])
        added = result["redis"] - result["local"]
        limited = result["redis+limiter"] - result["local"]
        where = ("overhead", "c=16, 1 worker")
        local_redis = f"{result['local']:.3f} / {result['redis']:.3f}"
        rows.append(row(*where, "p50 local / redis (ms)", local_redis, "", ""))
        added_to = "p50 added: breaker + budget on Redis (ms)"
        rows.append(row(*where, added_to, f"{added:.3f}", "<= 0.3", verdict(added <= 0.3)))
        with_limiter = "p50 added: + shared RateLimiter, 1 round trip (ms)"
        rows.append(row(*where, with_limiter, f"{limited:.3f}", "(reported)", ""))
        return rows
    for mode in ("shared", "local"):
        if kind == "outage" and mode == "local":
            continue
        ns = uuid.uuid4().hex
        path = f"/dead-{mode}" if kind == "breaker" else f"/{kind}-{mode}"
        if kind in ("rate", "outage"):
            path += f"-{ns[:6]}"
        spec = {**base, "scenario": kind, "ns": ns, "shared": mode == "shared", "path": path}
        spec |= {"threshold": threshold, "cooldown": cooldown, "rate": rate}
        if kind == "breaker":
            spec["seconds"] = cooldown * 3.5 + 1.0
        elif kind == "budget":
            spec |= {"seconds": min(seconds, 5.0), "pace": 0.02}
        elif kind == "outage":
            spec["seconds"] = OUTAGE[2]
        else:
            spec["seconds"] = seconds + 1.0
        marks: dict[str, float] = {}
        during = partial(kill_redis, redis, marks) if kind == "outage" else None
        results, go = run_workers([dict(spec) for _ in range(workers)], during)
        hits = [r.time for r in server.requests_for(path)]
        fallbacks = sum(r.get("store", {}).get("fallbacks", 0) for r in results)
        note = f" (Redis fallbacks: {fallbacks})" if mode == "shared" else ""
        shared = mode == "shared"
        if kind == "breaker":
            figures = breaker_figures(hits, [r["first_open"] for r in results], cooldown)
            before = figures["before"]
            target = f"<= {1.1 * threshold:g}" if shared else f"~{workers * threshold}"
            ok = before <= 1.1 * threshold if shared else before >= threshold * workers * 0.9
            what = f"upstream hits before all fail fast{note}"
            outcome = verdict(ok and figures["failed_fast"])
            rows.append(row(f"dead upstream, T={threshold}", mode, what, before, target, outcome))
            busiest, probes = figures["busiest"], figures["probes"]
            wanted = "exactly 1" if shared else f"~{workers}"
            ok = busiest == 1 and probes >= 2
            what = f"most probes in one cooldown ({probes} probes in {spec['seconds'] - 1:g} s)"
            outcome = verdict(ok) if shared else ""
            rows.append(
                row(f"half-open, cooldown {cooldown:g} s", mode, what, busiest, wanted, outcome)
            )
        elif kind == "rate":
            window = [t for t in hits if go + 0.5 <= t < go + 0.5 + seconds]
            measured = len(window) / seconds
            what = f"requests/s the server saw over {seconds:g} s{note}"
            target = f"{rate * 0.95:g}..{rate * 1.05:g}" if shared else f"~{workers * rate:g}"
            outcome = verdict(abs(measured - rate) <= 0.05 * rate) if shared else ""
            rows.append(
                row(f"rate limit C={rate:g}/s", mode, what, f"{measured:.1f}", target, outcome)
            )
        elif kind == "budget":
            logical = sum(r["sent"] for r in results) + workers  # + each one's warm-up call
            retries = len(hits) - logical
            floor = FLOOR * WINDOW * (1 if shared else workers)
            allowed = RATIO * logical + floor
            value = f"{retries} / {logical} ({retries / max(logical, 1):.1%})"
            target = f"<= {allowed:.0f} (20% + {floor:g})"
            outcome = verdict(retries <= allowed) if shared else ""
            what = f"retries / logical requests{note}"
            rows.append(row("retry budget, outage", mode, what, value, target, outcome))
        else:
            samples = [s for r in results for s in r["samples"]]
            failed = sum(r["failed"] for r in results)
            healthy = [lat for t, lat in samples if t < marks["down"]]
            down = [lat for t, lat in samples if marks["down"] + 0.05 <= t < marks["up"]]
            added = (p99(down) - p99(healthy)) * 1000
            where = (f"Redis killed {OUTAGE[1]:g} s, restarted", mode)
            what = f"requests failed of {len(samples)}{note}"
            rows.append(row(*where, what, failed, "0", verdict(failed == 0)))
            value = f"{p99(healthy) * 1000:.2f} / {p99(down) * 1000:.2f}"
            rows.append(row(*where, "p99 before / while down (ms)", value, "", ""))
            outcome = verdict(added <= timeout * 1000)
            target = f"<= {timeout * 1000:g}"
            rows.append(row(*where, "p99 added while down (ms)", f"{added:.2f}", target, outcome))
    return rows


def row(*cells: object) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def write(rows: list[str], argv: list[str]) -> Path:
    import redis as redis_py

    import httprail

    out = Path(__file__).parent / "results" / "shared_state.md"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        "# Shared state through Redis",
        "",
        f"Command: `python benchmarks/shared_state.py --write{''.join(' ' + a for a in argv)}`  ",
        f"Run: {when}, Python {platform.python_version()}, httprail {httprail.__version__}, "
        f"redis-py {redis_py.__version__}, {platform.machine()}, {platform.system()}, "
        f"{os.cpu_count()} CPUs (shared with other work)",
        "",
        "8 worker processes (one for `overhead`), one `ChaosServer` (a thread of the parent),",
        "one `redis-server` (no persistence) on loopback. `shared`: one `RedisStore` namespace for",
        "all workers; `local`: each worker's own in-memory state. Counts are what the server saw.",
        "",
    ]
    out.write_text("\n".join([*header, *rows, ""]))
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--write", action="store_true", help="write benchmarks/results/shared_state.md"
    )
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threshold", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--redis-timeout", type=float, default=0.005)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(run_worker(json.loads(args.worker)))))
        return
    scenarios = tuple(s for s in args.only.split(",") if s)
    print("| scenario | state | measure | value | target | verdict |", flush=True)
    rows = main(
        args.workers, args.seconds, args.threshold, 1.0, args.rate, args.redis_timeout, scenarios
    )
    if args.write:
        argv = [a for a in sys.argv[1:] if a != "--write"]
        print(f"wrote {write(rows, argv)}")


if __name__ == "__main__":
    cli()
