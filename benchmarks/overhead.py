"""In-memory cost per request: httpx's own AsyncClient.get vs httprail's client and stages.

No network: every client sends to an in-memory transport returning a 104-byte JSON body, so
what is measured is the client-side work per request. Each figure is the median of several
repetitions of a timed loop, all measured in the same run.

Run:  python benchmarks/overhead.py [--requests 20000] [--repeats 7] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from returns.result import Success

from httprail import AsyncClient, HttpSettings, Next, Outcome, Pipeline
from httprail.middleware import OpenTelemetry, default_plugins
from httprail.terminals import HttpxTerminal

BODY = (
    b'{"id": 1, "name": "httprail", "tags": ["fast", "typed"], "ok": true, '
    b'"value": 3.14159, "n": 42, "p": 10}'
)
assert len(BODY) == 104, len(BODY)
URL = "http://bench.local/item"


def handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=BODY, headers={"content-type": "application/json"})


class NoOp:
    name = "noop"

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        return await call_next(request)


class InstantTerminal:
    """Returns one prepared response: isolates the cost of the stages themselves.

    (Building a response costs ~30 µs and varies by several µs from call to call, which
    would drown the stages' cost; the stages only read its status.)
    """

    name = "instant"

    def __init__(self) -> None:
        self._outcome: Outcome = Success(httpx.Response(200, content=BODY))

    async def send(self, request: httpx.Request) -> Outcome:
        return self._outcome

    async def aclose(self) -> None:
        return None


Call = Callable[[], Awaitable[object]]


class Chain:
    """A pipeline case: every call sends a fresh request (no stage profits from a cache on
    the previous one). Requests are built untimed in small batches, so they are still warm in
    the CPU cache when sent, as a request a client has just built is.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline


async def timed_us(call: Call | Chain, n: int) -> float:
    if isinstance(call, Chain):
        send = call.pipeline.send
        clock = time.perf_counter
        spent = 0.0
        for done in range(0, n, 64):
            batch = [httpx.Request("GET", URL) for _ in range(min(64, n - done))]
            start = clock()
            for request in batch:
                await send(request)
            spent += clock() - start
        return spent / n * 1e6
    start = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - start) / n * 1e6


async def measure(
    cases: dict[str, tuple[Call | Chain, int]], repeats: int
) -> dict[str, list[float]]:
    """Per-call µs of every case, in interleaved rounds of shuffled order (drift hits all)."""
    for call, n in cases.values():  # warm-up
        await timed_us(call, min(n, 2000))
    samples: dict[str, list[float]] = {name: [] for name in cases}
    rng = random.Random(1)
    for _ in range(repeats):
        order = list(cases)
        rng.shuffle(order)
        for name in order:
            call, n = cases[name]
            samples[name].append(await timed_us(call, n))
    return samples


def _otel_sdk() -> OpenTelemetry:
    """The stage on a real SDK: spans to a batch processor whose exporter drops them, metrics
    aggregated in memory (collected by nobody during the run)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return OpenTelemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)


def summary(samples: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return f"{statistics.median(samples):8.2f} µs  (IQR {q1:.2f} to {q3:.2f})"


async def main(n: int, repeats: int) -> dict[str, float]:
    settings = HttpSettings(http2=False)
    raw = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    raw_twin = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    bare = AsyncClient(
        plugins=[],
        terminal=HttpxTerminal(settings, transport=httpx.MockTransport(handler)),
        settings=settings,
    )
    default = AsyncClient(
        terminal=HttpxTerminal(settings, transport=httpx.MockTransport(handler)), settings=settings
    )
    stages = 20
    empty_chain = Pipeline([], InstantTerminal())
    default_chain = Pipeline(default_plugins(settings), InstantTerminal())
    noop_chain = Pipeline([NoOp() for _ in range(stages)], InstantTerminal())
    # The OpenTelemetry stage in front of the default stack: with the API's no-op providers
    # (no SDK configured), and with the SDK (a batch span processor, a metric reader).
    otel_noop_chain = Pipeline([OpenTelemetry(), *default_plugins(settings)], InstantTerminal())
    otel_sdk_chain = Pipeline([_otel_sdk(), *default_plugins(settings)], InstantTerminal())
    fast = n * 2

    cases: dict[str, tuple[Call | Chain, int]] = {
        "httpx AsyncClient.get": (lambda: raw.get(URL), n),
        "httpx AsyncClient.get, identical twin": (lambda: raw_twin.get(URL), n),
        "httprail client, bare chain": (lambda: bare.get(URL), n),
        "httprail client, default stack": (lambda: default.get(URL), n),
        "pipeline, 0 stages": (Chain(empty_chain), fast),
        "pipeline, default stack's stages": (Chain(default_chain), fast),
        f"pipeline, {stages} no-op stages": (Chain(noop_chain), fast),
        "pipeline, otel (no-op API) + default stack": (Chain(otel_noop_chain), fast),
        "pipeline, otel (SDK, batch) + default stack": (Chain(otel_sdk_chain), fast),
    }
    results = await measure(cases, repeats)
    await raw.aclose()
    await raw_twin.aclose()
    await bare.aclose()
    await default.aclose()

    med = {k: statistics.median(v) for k, v in results.items()}
    for name, samples in results.items():
        print(f"{name:34s} {summary(samples)}")
    per_stage = (med[f"pipeline, {stages} no-op stages"] - med["pipeline, 0 stages"]) / stages
    httpx_cost = med["httpx AsyncClient.get"]
    stack_cost = med["pipeline, default stack's stages"] - med["pipeline, 0 stages"]
    derived = {
        "per no-op stage (µs)": per_stage,
        "default stack's stages (µs)": stack_cost,
        "default stack's stages, added to httpx's cost (%)": stack_cost / httpx_cost * 100,
        "otel stage with the no-op API (µs)": med["pipeline, otel (no-op API) + default stack"]
        - med["pipeline, default stack's stages"],
        "otel stage with the SDK and a batch exporter (µs)": med[
            "pipeline, otel (SDK, batch) + default stack"
        ]
        - med["pipeline, default stack's stages"],
        "bare client vs httpx get, end to end (ratio)": med["httprail client, bare chain"]
        / httpx_cost,
        "default client vs httpx get, end to end (ratio)": med["httprail client, default stack"]
        / httpx_cost,
        "noise floor: httpx twin vs httpx get (ratio)": med["httpx AsyncClient.get, identical twin"]
        / httpx_cost,
    }
    print()
    for name, value in derived.items():
        print(f"{name:52s} {value:8.3f}")
    return {**med, **derived}


def write(figures: dict[str, float], n: int, repeats: int) -> None:
    out = Path(__file__).parent / "results" / "overhead.md"
    lines = [
        "# Overhead (in-memory, per request)",
        "",
        f"Command: `python benchmarks/overhead.py --requests {n} --repeats {repeats} --write`  ",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"httpx {httpx.__version__}, {platform.machine()}, {platform.system()}  ",
        "Medians of the repetitions (interleaved rounds, shuffled order); all rows measured in",
        "the same run. The stages' own cost is measured over an instant terminal (a fresh request",
        "per call, one prepared response, no I/O), where it is not drowned in the run-to-run noise",
        "of a full httpx request; the end-to-end ratios are shown with that noise floor (two",
        "identical httpx clients compared with each other).",
        "",
        "| measure | value |",
        "| --- | ---: |",
    ]
    for name, value in figures.items():
        unit = "" if "(" in name else " µs"
        lines.append(f"| {name} | {value:.3f}{unit} |")
    lines.append("")
    out.write_text("\n".join(lines))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/overhead.md")
    args = parser.parse_args()
    figures = asyncio.run(main(args.requests, args.repeats))
    if args.write:
        write(figures, args.requests, args.repeats)
    sys.exit(0)
