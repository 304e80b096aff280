"""Throughput on loopback: raw httpx, aiohttp and curl_cffi next to httprail on each terminal.

One command starts granian (RSGI, one worker, HTTP/1.1 and h2c on one port) serving a 104-byte
JSON on 127.0.0.1, pinned with ``taskset`` to CPU 1, and drives it from this process, pinned to
CPU 0. Every measurement is closed-loop: ``c`` workers each send their next request as soon as
the previous one is answered, on a fresh client, for ``--duration`` seconds after a
``--warm-up``; rps counts the responses completed inside that window, p50/p99 are their
latencies. Every (client, concurrency) cell is measured ``--repeats`` times, clients in
alternating order from one repetition to the next so that drift hits them all; the tables give
medians and the spread (min-max) across repetitions.

Clients (``--only`` keys):

  httpx             raw ``httpx.AsyncClient()``: defaults (HTTP/1.1, 100 connections, 20 kept)
  httpx-h2c         raw ``httpx.AsyncClient(http1=False, http2=True)``: h2c, prior knowledge
  aiohttp           raw ``aiohttp.ClientSession()``: defaults (100 connections)
  curl              raw curl_cffi ``AsyncSession()``: defaults (``max_clients=10``)
  reqwest           raw pyreqwest ``ClientBuilder().build()``: defaults (HTTP/1.1, no limit)
  reqwest-h2c       raw pyreqwest ``ClientBuilder().http2_prior_knowledge().build()``: h2c
  httprail          ``httprail.AsyncClient(url)``: default stack, default terminal
                    (``AiohttpTerminal``)
  httprail-httpx    default stack, ``HttpxTerminal`` (its HTTP/2 is ALPN-only, so HTTP/1.1
                    on ``http://``)
  httprail-h2c      default stack, ``HttpxTerminal`` over an h2c ``httpx.AsyncClient``
  httprail-aiohttp  default stack, ``AiohttpTerminal``
  httprail-curl     default stack, ``CurlTerminal``
  httprail-reqwest  default stack, ``PyreqwestTerminal`` (HTTP/1.1 on ``http://``)
  httprail-reqwest-h2c  default stack, ``PyreqwestTerminal(h2c=True)``
  httprail-otel     ``OpenTelemetry()`` + default stack, default terminal, the API alone (no SDK)
  httprail-otel-sdk the same with the SDK: spans to a batch processor (dropped), metrics in memory
  wrk               the server's ceiling: ``wrk -t1 -c<c>`` on CPU 0 (skipped without wrk)

Targets (issues 5 and 18):

1. the default httprail client >= 2x raw httpx's rps at c=64, with p99 <= 0.25x raw httpx's;
2. the default stack on the fastest terminal (the ``httprail*`` row with the highest geometric
   mean of rps at c=16 and c=64) >= 1.0x raw aiohttp's rps at c=16 and at c=64 (issue 18;
   issue 5 asked 0.7x);
3. ``--soak``: N requests (200,000) through the default client at c=64: RSS growth <= 5 MiB
   (after a warm-up vs the end), no leaked fds or asyncio tasks. ``--soak-terminal`` runs it
   on the default stack over another terminal (``reqwest``, ``reqwest-h2c``, ``aiohttp``,
   ``httpx``, ``curl``); ``--write`` then records only the default client's soak.

Run:  python benchmarks/throughput.py [--quick] [--only httpx,httprail] [--concurrency 1,16,64]
                                      [--repeats 3] [--duration 3] [--warm-up 0.5] [--write]
      python benchmarks/throughput.py --soak [N] [--soak-terminal reqwest] [--write]

``--write`` stores ``benchmarks/results/throughput.md`` and ``throughput.png``; the matrix and
the soak are separate runs, each replacing its own section of the markdown file. Exit status 1
if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import importlib.metadata
import importlib.util
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import httpx

from httprail import AsyncClient, HttpSettings, Success
from httprail.terminals import AiohttpTerminal, CurlTerminal, HttpxTerminal, PyreqwestTerminal

Terminal = HttpxTerminal | AiohttpTerminal | CurlTerminal | PyreqwestTerminal

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BODY = (
    b'{"id": 1, "name": "httprail", "tags": ["fast", "typed"], "ok": true, '
    b'"value": 3.14159, "n": 42, "p": 10}'
)
assert len(BODY) == 104, len(BODY)
PATH = "/item"
SERVER_CPU, CLIENT_CPU = 1, 0
SOAK_REQUESTS = 200_000
SOAK_CONCURRENCY = 64
SOAK_RSS_GROWTH_MIB = 5.0
MIB = 1024 * 1024


# -- the server --------------------------------------------------------------------------------

_HEADERS = [("content-type", "application/json")]


async def app(_scope: Any, protocol: Any) -> None:
    """The RSGI app granian serves: the same 104-byte JSON for every request."""
    protocol.response_bytes(200, _HEADERS, BODY)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to send SIGTERM to the server if this process dies without cleaning up."""
    os.setsid()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def pinning() -> bool:
    """Whether the server and the clients get a CPU each (Linux, taskset, two CPUs or more)."""
    return (
        hasattr(os, "sched_setaffinity")
        and (os.cpu_count() or 1) >= 2
        and shutil.which("taskset") is not None
    )


class ServerProcess:
    """A server in its own process group on 127.0.0.1, stopped on exit.

    The process is pinned to ``cpu`` with taskset when :func:`pinning` allows; ``__exit__``
    stops the whole group (SIGTERM, then SIGKILL), also on Ctrl-C, and the kernel sends
    SIGTERM to the server should this process die first. Subclasses say how to start it
    (:meth:`_command`, after ``port`` is chosen) and how to tell it is ready (:meth:`_answers`).
    """

    name = "server"
    ready_timeout = 20.0

    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu if cpu is not None and pinning() else None
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _answers(self) -> bool:
        """One readiness probe: whether the server answers as it should now."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.port = _free_port()
        command = [*([] if self.cpu is None else ["taskset", "-c", str(self.cpu)])]
        self._process = subprocess.Popen(
            [*command, *self._command()],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # new session; SIGTERM when this process dies
        )
        try:
            self._wait_ready(self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                code = self._process.returncode
                raise RuntimeError(f"{self.name} exited ({code}): {self.log()}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer within {timeout:g} s: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()[-2000:]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the server's process group (idempotent)."""
        process, self._process = self._process, None
        if process is not None:
            for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
                try:
                    process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            with contextlib.suppress(ProcessLookupError):  # a worker outliving the supervisor
                os.killpg(process.pid, signal.SIGKILL)
        self._log.close()


class Server(ServerProcess):
    """granian serving :func:`app` (RSGI, one worker, HTTP/1.1 and h2c)."""

    name = "granian"

    def __init__(self, cpu: int | None = SERVER_CPU) -> None:
        super().__init__(cpu)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        if importlib.util.find_spec("granian") is None:
            raise RuntimeError("granian is not installed (pip install -e '.[bench]')")
        return super().__enter__()

    def _command(self) -> list[str]:
        return [
            *(sys.executable, "-m", "granian", "--interface", "rsgi", "--http", "auto"),
            *("--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"),
            *("--no-ws", "--no-access-log", "--log-level", "warning"),
            *("--working-dir", str(HERE), "throughput:app"),
        ]

    def _answers(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
            try:
                connection.request("GET", PATH)
                response = connection.getresponse()
                return response.status == 200 and response.read() == BODY
            finally:
                connection.close()
        except OSError:
            return False


def _pin(cpu: int) -> None:
    """Run this process on ``cpu`` alone when :func:`pinning` allows."""
    if pinning():
        os.sched_setaffinity(0, {cpu})


# -- the clients -------------------------------------------------------------------------------

Send = Callable[[], Awaitable[bool]]
Opener = Callable[[str], contextlib.AbstractAsyncContextManager[Send]]


@contextlib.asynccontextmanager
async def raw_httpx(url: str, *, h2c: bool = False) -> AsyncIterator[Send]:
    client = httpx.AsyncClient(http1=False, http2=True) if h2c else httpx.AsyncClient()
    async with client:

        async def send() -> bool:
            response = await client.get(url)
            return response.status_code == 200

        yield send


@contextlib.asynccontextmanager
async def raw_httpx_h2c(url: str) -> AsyncIterator[Send]:
    async with raw_httpx(url, h2c=True) as send:
        yield send


@contextlib.asynccontextmanager
async def raw_aiohttp(url: str) -> AsyncIterator[Send]:
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def send() -> bool:
            async with session.get(url) as response:
                await response.read()
                return response.status == 200

        yield send


@contextlib.asynccontextmanager
async def raw_curl(url: str) -> AsyncIterator[Send]:
    from curl_cffi.requests import AsyncSession

    async with AsyncSession() as session:

        async def send() -> bool:
            response = await session.get(url)
            return bool(response.status_code == 200)

        yield send


@contextlib.asynccontextmanager
async def raw_pyreqwest(url: str, *, h2c: bool = False) -> AsyncIterator[Send]:
    from pyreqwest.client import ClientBuilder

    builder = ClientBuilder()
    client = (builder.http2_prior_knowledge() if h2c else builder).build()
    async with client:

        async def send() -> bool:
            response = await client.get(url).build().send()
            await response.bytes()
            return response.status == 200

        yield send


@contextlib.asynccontextmanager
async def raw_pyreqwest_h2c(url: str) -> AsyncIterator[Send]:
    async with raw_pyreqwest(url, h2c=True) as send:
        yield send


def _terminal(kind: str, settings: HttpSettings, stack: contextlib.AsyncExitStack) -> Terminal:
    if kind in ("reqwest", "reqwest-h2c"):
        return PyreqwestTerminal(settings, h2c=kind == "reqwest-h2c")
    if kind == "aiohttp":
        return AiohttpTerminal(settings)
    if kind == "curl":
        return CurlTerminal(settings)
    if kind == "httpx":
        return HttpxTerminal(settings)
    assert kind == "h2c", kind
    client = httpx.AsyncClient(
        http1=False,
        http2=True,
        limits=settings.httpx_limits(),
        timeout=settings.httpx_timeout(),
    )
    stack.push_async_callback(client.aclose)  # the terminal does not close a client it was given
    return HttpxTerminal(settings, client=client)


def httprail_on(terminal: str) -> Opener:
    """An opener for httprail's default stack on ``terminal`` ("default": nothing but the URL)."""

    @contextlib.asynccontextmanager
    async def opener(url: str) -> AsyncIterator[Send]:
        origin, path = url.removesuffix(PATH), PATH
        async with contextlib.AsyncExitStack() as stack:
            if terminal == "default":
                client = AsyncClient(origin)
            else:
                settings = HttpSettings()
                built = _terminal(terminal, settings, stack)
                client = AsyncClient(origin, terminal=built, settings=settings)
            await stack.enter_async_context(client)

            async def send() -> bool:
                return isinstance(await client.get(path), Success)

            yield send

    return opener


def httprail_otel(sdk: bool) -> Opener:
    """An opener for ``OpenTelemetry()`` in front of the default stack, on the default terminal:
    the API's no-op providers, or the SDK (batch span processor, in-memory metric reader)."""

    @contextlib.asynccontextmanager
    async def opener(url: str) -> AsyncIterator[Send]:
        from httprail.middleware import OpenTelemetry, default_plugins
        from overhead import _otel_sdk

        origin, path = url.removesuffix(PATH), PATH
        stage = _otel_sdk() if sdk else OpenTelemetry()
        async with AsyncClient(origin, plugins=[stage, *default_plugins()]) as client:

            async def send() -> bool:
                return isinstance(await client.get(path), Success)

            yield send

    return opener


@dataclass(frozen=True)
class Subject:
    """One row of the tables: a client (``open``), or wrk when ``open`` is None."""

    key: str
    label: str
    note: str
    open: Opener | None
    needs: str = ""  # the module it cannot run without


SUBJECTS = (
    Subject("httpx", "raw httpx", "`httpx.AsyncClient()` (HTTP/1.1)", raw_httpx),
    Subject(
        "httpx-h2c",
        "raw httpx h2c",
        "`httpx.AsyncClient(http1=False, http2=True)`: HTTP/2 with prior knowledge",
        raw_httpx_h2c,
    ),
    Subject("aiohttp", "raw aiohttp", "`aiohttp.ClientSession()`", raw_aiohttp, "aiohttp"),
    Subject(
        "curl",
        "raw curl_cffi",
        "`curl_cffi.requests.AsyncSession()` (its default `max_clients=10`)",
        raw_curl,
        "curl_cffi",
    ),
    Subject(
        "reqwest",
        "raw pyreqwest",
        "`pyreqwest.client.ClientBuilder().build()` (HTTP/1.1, no connection limit)",
        raw_pyreqwest,
        "pyreqwest",
    ),
    Subject(
        "reqwest-h2c",
        "raw pyreqwest h2c",
        "`ClientBuilder().http2_prior_knowledge().build()`: HTTP/2 with prior knowledge",
        raw_pyreqwest_h2c,
        "pyreqwest",
    ),
    Subject(
        "httprail",
        "httprail default",
        "`httprail.AsyncClient(url)`: default stack, default terminal (`AiohttpTerminal`)",
        httprail_on("default"),
    ),
    Subject(
        "httprail-httpx",
        "httprail on httpx",
        "default stack, `HttpxTerminal(settings)` (HTTP/2 is negotiated by ALPN, so HTTP/1.1 on "
        "`http://`)",
        httprail_on("httpx"),
    ),
    Subject(
        "httprail-h2c",
        "httprail on httpx h2c",
        "default stack, `HttpxTerminal(settings, client=httpx.AsyncClient(http1=False, "
        "http2=True, ...))`",
        httprail_on("h2c"),
    ),
    Subject(
        "httprail-aiohttp",
        "httprail on aiohttp",
        "default stack, `AiohttpTerminal(settings)`",
        httprail_on("aiohttp"),
        "aiohttp",
    ),
    Subject(
        "httprail-curl",
        "httprail on curl",
        "default stack, `CurlTerminal(settings)`",
        httprail_on("curl"),
        "curl_cffi",
    ),
    Subject(
        "httprail-reqwest",
        "httprail on reqwest",
        "default stack, `PyreqwestTerminal(settings)` (HTTP/2 by ALPN only: HTTP/1.1 on `http://`)",
        httprail_on("reqwest"),
        "pyreqwest",
    ),
    Subject(
        "httprail-reqwest-h2c",
        "httprail on reqwest h2c",
        "default stack, `PyreqwestTerminal(settings, h2c=True)`",
        httprail_on("reqwest-h2c"),
        "pyreqwest",
    ),
    Subject(
        "httprail-otel",
        "httprail + otel (API only)",
        "`OpenTelemetry()` + default stack, default terminal; no SDK installed in the process",
        httprail_otel(sdk=False),
    ),
    Subject(
        "httprail-otel-sdk",
        "httprail + otel (SDK)",
        "the same with the OpenTelemetry SDK: batch span processor, in-memory metric reader",
        httprail_otel(sdk=True),
        "opentelemetry.sdk",
    ),
    Subject("wrk", "wrk (server ceiling)", "`wrk -t1 -c<c>` (C, one thread)", None, "wrk"),
)
BY_KEY = {s.key: s for s in SUBJECTS}
RAIL_ROWS = (
    "httprail",
    "httprail-httpx",
    "httprail-h2c",
    "httprail-aiohttp",
    "httprail-curl",
    "httprail-reqwest",
    "httprail-reqwest-h2c",
)


def available(subject: Subject) -> bool:
    if subject.needs == "wrk":
        return shutil.which("wrk") is not None
    return not subject.needs or importlib.util.find_spec(subject.needs) is not None


# -- measuring ---------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(frozen=True)
class Sample:
    """One measurement: responses per second, p50/p99 latency (seconds), and failures."""

    rps: float
    p50: float
    p99: float
    requests: int
    errors: int = 0

    @classmethod
    def of(cls, latencies: Sequence[float], errors: int, seconds: float) -> Sample:
        return cls(
            rps=len(latencies) / seconds,
            p50=quantile(latencies, 0.5),
            p99=quantile(latencies, 0.99),
            requests=len(latencies),
            errors=errors,
        )


async def closed_loop(send: Send, concurrency: int, warm_up: float, duration: float) -> Sample:
    """``concurrency`` workers sending back to back; what completed in the window after warm-up.

    A failed request (``send`` returning False or raising) counts as an error, not as a
    response; workers send nothing after the window and what is still in flight then is not
    counted.
    """
    clock = time.perf_counter
    start = clock() + warm_up
    end = start + duration
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while (sent := clock()) < end:
            try:
                ok = await send()
            except Exception:
                ok = False
            done = clock()
            if start <= done < end:
                if ok:
                    latencies.append(done - sent)
                else:
                    errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Sample.of(latencies, errors, duration)


async def measure(
    subject: Subject, url: str, concurrency: int, warm_up: float, duration: float
) -> Sample:
    """One measurement of ``subject`` on a fresh client."""
    assert subject.open is not None
    async with subject.open(url) as send:
        return await closed_loop(send, concurrency, warm_up, duration)


_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(output: str, seconds: float) -> Sample:
    """A :class:`Sample` from ``wrk --latency`` output (errors: socket errors and non-2xx)."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None:
        raise ValueError(f"no Requests/sec in wrk's output: {output!r}")
    rps = float(rate[1])
    found = {
        q: float(value) * _WRK_UNITS[unit]
        for q, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    }
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    if non_2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(non_2xx[1])
    return Sample(
        rps=rps,
        p50=found.get("50", math.nan),
        p99=found.get("99", math.nan),
        requests=round(rps * seconds),
        errors=errors,
    )


def wrk_seconds(duration: float) -> int:
    """wrk takes whole seconds: at least one."""
    return max(1, round(duration))


def measure_wrk(url: str, concurrency: int, duration: float, cpu: int | None) -> Sample:
    seconds = wrk_seconds(duration)
    command = [
        *([] if cpu is None else ["taskset", "-c", str(cpu)]),
        *("wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", url),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse_wrk(done.stdout, seconds)


Results = dict[tuple[str, int], list[Sample]]


KEPT_NOTE = (
    " In every pyreqwest row, raw ones too, pyreqwest's runtime thread keeps one Python thread "
    "state, as `PyreqwestTerminal` arranges (`docs/decisions.md`)."
)


def keep_runtime_thread_state() -> None:
    """Give pyreqwest's runtime thread its lasting Python thread state now.

    ``PyreqwestTerminal`` does it when it is first used, and the thread is one per process: a
    raw pyreqwest row measured after a terminal row would run with it, one measured before
    without. Kept from the start, every pyreqwest row of a run is measured the same way.
    """
    import pyreqwest.client
    import pyreqwest.proxy

    from httprail.terminals._reqwest_thread import keep_runtime_thread_state as keep

    keep(pyreqwest.client, pyreqwest.proxy)


def run_matrix(
    subjects: Sequence[Subject],
    concurrencies: Sequence[int],
    repeats: int,
    url: str,
    *,
    warm_up: float,
    duration: float,
    client_cpu: int | None,
    log: Callable[[str], None] = print,
) -> Results:
    """Every subject at every concurrency, ``repeats`` times; the order flips every repetition.

    Each client measurement runs in its own event loop (``asyncio.run``), so nothing a previous
    client left behind runs during the next one.
    """
    results: Results = {}
    if any(subject.needs == "pyreqwest" for subject in subjects):
        keep_runtime_thread_state()
        log(" " + KEPT_NOTE)
    for rep in range(repeats):
        order = list(subjects) if rep % 2 == 0 else list(reversed(subjects))
        for concurrency in concurrencies:
            for subject in order:
                gc.collect()
                if subject.open is None:
                    sample = measure_wrk(url, concurrency, duration, client_cpu)
                else:
                    sample = asyncio.run(measure(subject, url, concurrency, warm_up, duration))
                results.setdefault((subject.key, concurrency), []).append(sample)
                errors = f"  {sample.errors} errors" if sample.errors else ""
                log(
                    f"  [{rep + 1}/{repeats}] c={concurrency:<3} {subject.label:22s} "
                    f"{sample.rps:9,.0f} rps  p50 {_ms(sample.p50):>8} ms  "
                    f"p99 {_ms(sample.p99):>8} ms{errors}"
                )
    return results


# -- figures and targets -----------------------------------------------------------------------


def median(results: Results, key: str, concurrency: int, attr: str = "rps") -> float:
    samples = results.get((key, concurrency))
    if not samples:
        return math.nan
    return float(statistics.median(getattr(s, attr) for s in samples))


def spread(results: Results, key: str, concurrency: int, attr: str = "rps") -> tuple[float, float]:
    values = [getattr(s, attr) for s in results.get((key, concurrency), [])]
    return (min(values), max(values)) if values else (math.nan, math.nan)


def ratio(results: Results, key: str, base: str, concurrency: int, attr: str = "rps") -> float:
    """Median ``attr`` of ``key`` over that of ``base`` at ``concurrency``; NaN if either lacks."""
    below = median(results, base, concurrency, attr)
    above = median(results, key, concurrency, attr)
    return above / below if below and math.isfinite(below) and math.isfinite(above) else math.nan


def fastest_terminal(results: Results, concurrencies: Sequence[int] = (16, 64)) -> str | None:
    """The ``httprail*`` row with the highest geometric mean of median rps at ``concurrencies``."""
    best: tuple[float, str] | None = None
    for key in RAIL_ROWS:
        values = [median(results, key, c) for c in concurrencies]
        if all(math.isfinite(v) and v > 0 for v in values):
            score = math.exp(sum(math.log(v) for v in values) / len(values))
            if best is None or score > best[0]:
                best = (score, key)
    return None if best is None else best[1]


@dataclass(frozen=True)
class Check:
    """One target: what was measured, the limit, and whether it was met (None: not measured)."""

    what: str
    measured: str
    target: str
    met: bool | None


FASTEST_SHARE = 1.0
"""Target 2: the default stack on the fastest terminal, as a share of raw aiohttp's rps."""


def judge(results: Results) -> list[Check]:
    """The issue's throughput targets, from the medians."""
    checks = []
    speed = ratio(results, "httprail", "httpx", 64)
    tail = ratio(results, "httprail", "httpx", 64, "p99")
    if math.isfinite(speed):
        checks.append(
            Check(
                "httprail default client rps at c=64, x raw httpx",
                f"{speed:.2f}x ({median(results, 'httprail', 64):,.0f} vs "
                f"{median(results, 'httpx', 64):,.0f} rps)",
                ">= 2x",
                speed >= 2.0,
            )
        )
    else:
        checks.append(Check("httprail default client rps at c=64", "not measured", ">= 2x", None))
    if math.isfinite(tail):
        checks.append(
            Check(
                "httprail default client p99 at c=64, x raw httpx",
                f"{tail:.2f}x ({_ms(median(results, 'httprail', 64, 'p99'))} vs "
                f"{_ms(median(results, 'httpx', 64, 'p99'))} ms)",
                "<= 0.25x",
                tail <= 0.25,
            )
        )
    else:
        checks.append(
            Check("httprail default client p99 at c=64", "not measured", "<= 0.25x", None)
        )
    fastest = fastest_terminal(results)
    for concurrency in (16, 64):
        what = f"default stack on the fastest terminal, rps at c={concurrency}, x raw aiohttp"
        share = math.nan if fastest is None else ratio(results, fastest, "aiohttp", concurrency)
        if fastest is None or not math.isfinite(share):
            checks.append(Check(what, "not measured", f">= {FASTEST_SHARE:g}x", None))
            continue
        checks.append(
            Check(
                what,
                f"{share:.2f}x ({BY_KEY[fastest].label}: "
                f"{median(results, fastest, concurrency):,.0f} vs "
                f"{median(results, 'aiohttp', concurrency):,.0f} rps)",
                f">= {FASTEST_SHARE:g}x",
                share >= FASTEST_SHARE,
            )
        )
    return checks


# -- the soak ----------------------------------------------------------------------------------


def rss_mib() -> float:
    """This process's resident set size now (Linux ``/proc``), NaN elsewhere."""
    try:
        resident = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return math.nan
    return resident * os.sysconf("SC_PAGE_SIZE") / MIB


def open_fds() -> int | None:
    """How many file descriptors this process has open (Linux ``/proc``), None elsewhere."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


@dataclass
class Soak:
    """What a soak saw: at ``before`` (no client), ``warm`` (after the warm-up), ``end`` (after
    the last request, client still open) and ``after`` (client closed)."""

    requests: int
    concurrency: int
    warm_up: int
    seconds: float = 0.0
    failures: int = 0
    rss: dict[str, float] = field(default_factory=dict)  # MiB
    fds: dict[str, int | None] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    series: list[tuple[int, float]] = field(default_factory=list)  # (requests done, MiB)

    @property
    def growth(self) -> float:
        return self.rss["end"] - self.rss["warm"]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else math.nan


async def _run_n(
    send: Send, n: int, concurrency: int, on_step: Callable[[int], None] | None = None
) -> int:
    """Send ``n`` requests with ``concurrency`` workers; returns the failures."""
    left = n
    done = 0
    failures = 0
    step = max(1, n // 10)

    async def worker() -> None:
        nonlocal left, done, failures
        while left > 0:
            left -= 1
            try:
                ok = await send()
            except Exception:
                ok = False
            failures += not ok
            done += 1
            if on_step is not None and done % step == 0:
                on_step(done)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


SOAK_TERMINALS = ("default", "aiohttp", "reqwest", "reqwest-h2c", "httpx", "curl")


async def soak(
    url: str,
    requests: int = SOAK_REQUESTS,
    concurrency: int = SOAK_CONCURRENCY,
    warm_up: int | None = None,
    log: Callable[[str], None] = print,
    terminal: str = "default",
) -> Soak:
    """``requests`` requests through the default client at ``concurrency``, after a warm-up.

    ``terminal``: ``"default"`` (``AsyncClient(url)``) or the default stack over another
    terminal (see :func:`httprail_on`; one of :data:`SOAK_TERMINALS`).

    RSS, open fds and asyncio tasks are taken after a ``gc.collect()`` at the four points of
    :class:`Soak`, after one client has sent one request and been closed (what the process sets
    up once, such as pyreqwest's runtime thread, is not the client's); the warm-up (10% of the
    requests, at most 10,000) fills the pools, caches and allocator arenas first.
    """
    warm = warm_up if warm_up is not None else max(1, min(10_000, requests // 10))
    result = Soak(requests, concurrency, warm)

    def take(point: str) -> None:
        gc.collect()
        result.rss[point] = rss_mib()
        result.fds[point] = open_fds()
        result.tasks[point] = len(asyncio.all_tasks())

    async with httprail_on(terminal)(url) as send:  # what a process makes once: not counted
        await send()  # (pyreqwest's runtime thread keeps 3 fds: an eventfd and two epolls)
    take("before")
    async with httprail_on(terminal)(url) as send:
        result.failures += await _run_n(send, warm, concurrency)
        take("warm")
        result.series.append((0, result.rss["warm"]))
        started = time.perf_counter()

        def step(done: int) -> None:
            result.series.append((done, rss_mib()))
            elapsed = time.perf_counter() - started
            log(
                f"  {done:>9,} requests  rss {result.series[-1][1]:7.1f} MiB  "
                f"{done / elapsed:7,.0f} rps"
            )

        result.failures += await _run_n(send, requests, concurrency, step)
        result.seconds = time.perf_counter() - started
        take("end")
    await asyncio.sleep(0.1)  # let closing connections finish their callbacks
    take("after")
    return result


def judge_soak(result: Soak) -> list[Check]:
    growth = result.growth
    checks = [
        Check(
            "RSS growth, after warm-up -> end",
            f"{growth:+.2f} MiB ({result.rss['warm']:.1f} -> {result.rss['end']:.1f} MiB)",
            f"<= {SOAK_RSS_GROWTH_MIB:g} MiB",
            growth <= SOAK_RSS_GROWTH_MIB if math.isfinite(growth) else None,
        )
    ]
    before, after = result.fds["before"], result.fds["after"]
    checks.append(
        Check(
            "open fds, before the client -> after closing it",
            f"{before} -> {after} (open client: {result.fds['warm']} after warm-up, "
            f"{result.fds['end']} at the end)",
            "no more after than before",
            None if before is None or after is None else after <= before,
        )
    )
    tasks = result.tasks
    checks.append(
        Check(
            "asyncio tasks: before -> after closing; after warm-up -> end",
            f"{tasks['before']} -> {tasks['after']}; {tasks['warm']} -> {tasks['end']}",
            "no more after than before",
            tasks["after"] <= tasks["before"] and tasks["end"] <= tasks["warm"],
        )
    )
    checks.append(
        Check(
            "failed requests (sanity)",
            f"{result.failures:,} of {result.requests + result.warm_up:,}",
            "0",
            result.failures == 0,
        )
    )
    return checks


# -- reporting ---------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    ms = seconds * 1000
    return f"{ms:,.2f}" if ms < 10 else f"{ms:,.1f}" if ms < 100 else f"{ms:,.0f}"


def _x(value: float) -> str:
    return f"{value:.2f}x" if math.isfinite(value) else "-"


def _versions() -> str:
    names = ("httpx", "httpcore", "h2", "aiohttp", "curl_cffi", "httprail", "granian")
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        found = re.search(r"wrk (\S+)", out.stdout + out.stderr)
        parts.append(f"wrk {found[1] if found else '?'}")
    else:
        parts.append("wrk (not installed)")
    return ", ".join(parts)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_lines(command: str, load: tuple[float, float]) -> list[str]:
    return [
        f"Command: `{command}`  ",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.platform()}, {_cpu_model()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()} (asyncio's default loop); "
        f"load average {load[0]:.2f} at the start, {load[1]:.2f} at the end  ",
        f"Versions: {_versions()}  ",
    ]


def check_rows(checks: Sequence[Check]) -> list[str]:
    lines = ["| target | measured | met |", "| --- | --- | --- |"]
    for check in checks:
        mark = "-" if check.met is None else "yes" if check.met else "**no**"
        lines.append(f"| {check.what} {check.target} | {check.measured} | {mark} |")
    return lines


def render_matrix(
    results: Results,
    subjects: Sequence[Subject],
    concurrencies: Sequence[int],
    checks: Sequence[Check],
    args: argparse.Namespace,
    command: str,
    load: tuple[float, float],
    pinned: bool,
) -> str:
    """The matrix section: how it was run, the targets, the rps summary, a table per c."""
    placement = (
        f"granian pinned to CPU {SERVER_CPU} (taskset), the clients and wrk to CPU {CLIENT_CPU}"
        if pinned
        else "no CPU pinning (needs Linux, taskset and two CPUs)"
    )
    lines = [
        *machine_lines(command, load),
        f"Server: granian, RSGI, one worker, HTTP/1.1 and h2c on 127.0.0.1, a 104-byte JSON; "
        f"{placement}.  ",
        f"Method: closed loop, c workers on a fresh client per measurement, {args.duration:g} s "
        f"after a {args.warm_up:g} s warm-up (wrk: {wrk_seconds(args.duration)} s, no warm-up); "
        f"{args.repeats} repetitions, client order reversed every other one; medians, with the "
        "min-max spread across repetitions."
        + (KEPT_NOTE if any(BY_KEY[key].needs == "pyreqwest" for key, _ in results) else ""),
        "",
        "### Targets (issues 5 and 18)",
        "",
        *check_rows(checks),
        "",
        "### Requests per second (median)",
        "",
        "| client | " + " | ".join(f"c={c}" for c in concurrencies) + " |",
        "| --- |" + " ---: |" * len(concurrencies),
    ]
    for subject in subjects:
        cells = [f"{median(results, subject.key, c):,.0f}" for c in concurrencies]
        lines.append(f"| {subject.label} | " + " | ".join(cells) + " |")
    for concurrency in concurrencies:
        lines += [
            "",
            f"### c = {concurrency}",
            "",
            "| client | rps | rps min-max | p50 ms | p99 ms | p99 min-max | x httpx | x aiohttp |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for subject in subjects:
            key = subject.key
            low, high = spread(results, key, concurrency)
            p99_low, p99_high = spread(results, key, concurrency, "p99")
            errors = sum(s.errors for s in results.get((key, concurrency), []))
            label = subject.label + (f" ({errors:,} errors)" if errors else "")
            lines.append(
                f"| {label} | {median(results, key, concurrency):,.0f} "
                f"| {low:,.0f}-{high:,.0f} | {_ms(median(results, key, concurrency, 'p50'))} "
                f"| {_ms(median(results, key, concurrency, 'p99'))} "
                f"| {_ms(p99_low)}-{_ms(p99_high)} "
                f"| {_x(ratio(results, key, 'httpx', concurrency))} "
                f"| {_x(ratio(results, key, 'aiohttp', concurrency))} |"
            )
    lines += ["", "Clients:", ""]
    lines += [f"- {s.label}: {s.note}" for s in subjects]
    return "\n".join(lines) + "\n"


def _soak_note(terminal: str) -> str:
    """How :func:`_terminal` builds the soak's ``terminal``."""
    return {
        "reqwest": "`PyreqwestTerminal(settings)`, HTTP/1.1 on `http://`",
        "reqwest-h2c": "`PyreqwestTerminal(settings, h2c=True)`",
        "aiohttp": "`AiohttpTerminal(settings)`",
        "httpx": "`HttpxTerminal(settings)`, HTTP/1.1 on `http://`",
        "curl": "`CurlTerminal(settings)`",
    }[terminal]


def render_soak(
    result: Soak,
    checks: Sequence[Check],
    command: str,
    load: tuple[float, float],
    terminal: str = "default",
) -> str:
    series = ", ".join(f"{done:,}: {mib:.1f}" for done, mib in result.series)
    client = (
        "`httprail.AsyncClient(url)` (default stack, default terminal)"
        if terminal == "default"
        else f"the default stack on the `{terminal}` terminal ({_soak_note(terminal)})"
    )
    return "\n".join(
        [
            "### Soak (issue 5)" if terminal == "default" else f"### Soak on {terminal}",
            "",
            *machine_lines(command, load),
            f"{result.requests:,} requests through {client} at c={result.concurrency}, after "
            f"{result.warm_up:,} warm-up requests: {result.seconds:.1f} s, {result.rps:,.0f} "
            "rps. RSS, fds and tasks are taken after `gc.collect()`.",
            "",
            *check_rows(checks),
            "",
            f"RSS (MiB) after N requests: {series}.",
            "",
        ]
    )


SECTIONS = ("matrix", "soak")
_PLACEHOLDERS = {
    "matrix": "_No throughput run recorded yet: `python benchmarks/throughput.py --write`._\n",
    "soak": "### Soak (issue 5)\n\n"
    "_No soak recorded yet: `python benchmarks/throughput.py --soak --write`._\n",
}


def _section_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"<!-- throughput:{name} -->\n(.*?)<!-- /throughput:{name} -->", re.S)


def compose(previous: str, **sections: str) -> str:
    """The markdown file with the given sections replaced and the others kept from
    ``previous`` (or a placeholder)."""
    parts = []
    for name in SECTIONS:
        body = sections.get(name)
        if body is None:
            found = _section_re(name).search(previous)
            body = found[1] if found else _PLACEHOLDERS[name]
        parts.append(f"<!-- throughput:{name} -->\n{body}<!-- /throughput:{name} -->")
    return "\n".join(
        [
            "# Throughput benchmark",
            "",
            "<!-- --8<-- [start:report] -->",
            "\n\n".join(parts),
            "<!-- --8<-- [end:report] -->",
            "",
            "![requests per second and p99 latency per concurrency](throughput.png)",
            "",
        ]
    )


def write(**sections: str) -> Path:
    path = RESULTS / "throughput.md"
    previous = path.read_text(encoding="utf-8") if path.exists() else ""
    RESULTS.mkdir(exist_ok=True)
    path.write_text(compose(previous, **sections), encoding="utf-8")
    return path


def plot(
    results: Results, subjects: Sequence[Subject], concurrencies: Sequence[int], path: Path
) -> bool:
    """rps and p99 per concurrency, one line per client (bars: min-max); False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    positions = list(range(len(concurrencies)))
    for subject in subjects:
        for axis, attr, scale in ((axes[0], "rps", 1.0), (axes[1], "p99", 1000.0)):
            mid = [median(results, subject.key, c, attr) * scale for c in concurrencies]
            bounds = [spread(results, subject.key, c, attr) for c in concurrencies]
            below = [m - lo * scale for m, (lo, _hi) in zip(mid, bounds, strict=True)]
            above = [hi * scale - m for m, (_lo, hi) in zip(mid, bounds, strict=True)]
            axis.errorbar(
                positions,
                mid,
                yerr=[below, above],
                marker="o",
                capsize=3,
                label=subject.label,
                linestyle="--" if subject.open is None else "-",
            )
    for axis, title, unit in (
        (axes[0], "requests per second (median, min-max)", "rps"),
        (axes[1], "p99 latency (median, min-max)", "ms"),
    ):
        axis.set_xticks(positions, [f"c={c}" for c in concurrencies])
        axis.set_yscale("log")
        axis.set_title(title, fontsize=10)
        axis.set_ylabel(unit)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def print_checks(checks: Sequence[Check]) -> None:
    for check in checks:
        mark = "skip" if check.met is None else "ok  " if check.met else "MISS"
        print(f"   {mark} {check.what}: {check.measured} (target {check.target})")


# -- main --------------------------------------------------------------------------------------


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="clients: " + ", ".join(BY_KEY),
    )
    parser.add_argument("--only", default="", help="comma-separated clients (see below)")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated, e.g. 1,16,64")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (3; --quick: 1)")
    parser.add_argument("--duration", type=float, default=None, help="seconds (3; --quick: 0.5)")
    parser.add_argument("--warm-up", type=float, default=None, help="seconds (0.5; --quick: 0.2)")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument(
        "--soak",
        type=int,
        nargs="?",
        const=SOAK_REQUESTS,
        default=None,
        metavar="N",
        help=f"instead: N requests (default {SOAK_REQUESTS:,}) through the default client "
        f"at c={SOAK_CONCURRENCY}; RSS, fds, tasks",
    )
    parser.add_argument(
        "--soak-terminal",
        default="default",
        choices=SOAK_TERMINALS,
        help="the soak's client: the default one, or the default stack on this terminal "
        "(--write records only the default client's soak; others are printed)",
    )
    parser.add_argument("--write", action="store_true", help="write results/throughput.{md,png}")
    args = parser.parse_args(argv)
    quick = args.quick
    args.repeats = args.repeats if args.repeats is not None else 1 if quick else 3
    args.duration = args.duration if args.duration is not None else 0.5 if quick else 3.0
    args.warm_up = args.warm_up if args.warm_up is not None else 0.2 if quick else 0.5
    try:
        args.concurrencies = [int(c) for c in _csv(args.concurrency)]
    except ValueError:
        parser.error(f"--concurrency takes integers: {args.concurrency!r}")
    unknown = [key for key in _csv(args.only) if key not in BY_KEY]
    if unknown:
        parser.error(f"--only: unknown client(s) {', '.join(unknown)}; known: {', '.join(BY_KEY)}")
    if args.repeats < 1 or args.duration <= 0 or args.warm_up < 0:
        parser.error("--repeats must be >= 1, --duration > 0 and --warm-up >= 0")
    if not args.concurrencies or min(args.concurrencies) < 1:
        parser.error("--concurrency must list integers >= 1")
    if args.soak is not None and args.soak < 1:
        parser.error("--soak N must be >= 1")
    if args.soak_terminal != "default" and (args.soak is None or args.write):
        parser.error("--soak-terminal goes with --soak and without --write (printed only)")
    return args


def _stop_on_sigterm() -> None:
    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(
        ["python", "benchmarks/throughput.py", *(sys.argv[1:] if argv is None else argv)]
    )
    _stop_on_sigterm()  # a SIGTERM unwinds like Ctrl-C, so the server is stopped
    _pin(CLIENT_CPU)
    load_start = os.getloadavg()[0]
    if args.soak is not None:
        terminal = args.soak_terminal
        with Server() as server:
            print(f"== soak: {args.soak:,} requests, {terminal} client, c={SOAK_CONCURRENCY}")
            result = asyncio.run(soak(server.url, args.soak, terminal=terminal))
        checks = judge_soak(result)
        print(f"   {result.seconds:.1f} s, {result.rps:,.0f} rps")
        print_checks(checks)
        load = (load_start, os.getloadavg()[0])
        section = render_soak(result, checks, command, load, terminal)
        if terminal != "default":
            print(f"\n{section}")
        if args.write:
            print(f"\nwrote {write(soak=section)}")
        return 0 if all(c.met is not False for c in checks) else 1

    wanted = _csv(args.only) or list(BY_KEY)
    subjects = []
    for key in wanted:
        subject = BY_KEY[key]
        if available(subject):
            subjects.append(subject)
        else:
            print(f"{subject.needs} is not installed: no '{key}' row")
    if not subjects:
        print("nothing to measure")
        return 2
    cells = len(subjects) * len(args.concurrencies) * args.repeats
    print(
        f"== {len(subjects)} clients x c={','.join(map(str, args.concurrencies))} x "
        f"{args.repeats} repetitions = {cells} measurements of {args.duration:g} s "
        f"(+{args.warm_up:g} s warm-up)",
        flush=True,
    )
    with Server() as server:
        pinned = server.cpu is not None
        results = run_matrix(
            subjects,
            args.concurrencies,
            args.repeats,
            server.url,
            warm_up=args.warm_up,
            duration=args.duration,
            client_cpu=CLIENT_CPU if pinned else None,
            log=lambda line: print(line, flush=True),
        )
    checks = judge(results)
    section = render_matrix(
        results,
        subjects,
        args.concurrencies,
        checks,
        args,
        command,
        (load_start, os.getloadavg()[0]),
        pinned,
    )
    print()
    print(section)
    print_checks(checks)
    if args.write:
        print(f"\nwrote {write(matrix=section)}")
        if not plot(results, subjects, args.concurrencies, RESULTS / "throughput.png"):
            print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
    return 0 if all(c.met is not False for c in checks) else 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("interrupted (the server is stopped)", file=sys.stderr)
        raise SystemExit(130) from None
