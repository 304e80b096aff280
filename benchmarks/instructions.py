"""CPU instructions per request, counted by valgrind: a noise-free companion to throughput.py.

Requests per second on a shared VM move by ±10-20% between repetitions, which hides changes of
a few percent. The number of instructions a client executes per request does not: this script
runs each client of ``throughput.py`` under ``valgrind --tool=callgrind`` (the local server
runs outside valgrind) for two request counts, and reports the difference per request, so
start-up and imports cancel out. The ratio to raw aiohttp is an upper bound for the throughput
ratio: cache misses, which valgrind does not charge, cost the longer path a little more.

    python benchmarks/instructions.py                     # aiohttp, httprail, httprail-aiohttp
    python benchmarks/instructions.py --only aiohttp,httprail
    python benchmarks/instructions.py --stages            # each default stage, in memory

Each loopback client takes about two minutes (valgrind runs Python some 50 times slower).

What is counted: every instruction executed in user space by every thread of the client's
process, Python and native code alike (callgrind follows all threads and reports their sum).
For pyreqwest (``reqwest``, ``httprail-reqwest``) that includes the Rust code on its runtime
thread: HTTP parsing, the pool, the hand-over to the event loop. Kernel work (the socket
system calls) is counted by no row. ``--base KEY`` sets the row the others are compared with.

Rows of this script besides ``throughput.py``'s (loopback):

  aiohttp-terminal  ``AiohttpTerminal.send`` alone, of a request built per call the way the
                    client builds one (``_fast.bodiless_request``, the client's headers)
  reqwest-terminal  the same with ``PyreqwestTerminal``
  bare-aiohttp      ``AsyncClient(url, plugins=[], terminal=AiohttpTerminal())``: no stage
  bare-reqwest      the same with ``PyreqwestTerminal``
  aiohttp-floor     the least any terminal speaking httpx through aiohttp's session
                    (``session.request``) does over raw aiohttp: the request built as the
                    client builds it, handed over, the body read, an ``httpx.Response`` built
                    with the terminals' fast constructors (no gate, no checks, no error
                    mapping). ``AiohttpTerminal`` goes below it: it takes aiohttp's request
                    steps itself where that does the same (``DirectRoad``)
  aiohttp-session   the default stack on ``AiohttpTerminal`` kept on the session road (its
                    short road off): what the short road saves
  reqwest-floor     the same over raw pyreqwest
  reqwest-kept      raw pyreqwest with its runtime thread given one lasting Python thread state
                    first, as ``PyreqwestTerminal`` gives it (``reqwest``: a new one per request)

``--stages`` measures, without any network, the client over a terminal that answers at once
(after one pass through the event loop, as a real answer comes back after at least one) with
no stage, with each default stage alone, and with the whole default stack; a stage's cost is
its row minus the ``none`` row. ``PYTHONHASHSEED=0`` keeps the runs repeatable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
from returns.result import Success

import throughput
from httprail import AsyncClient, HttpSettings, MiddlewarePlugin, Next, Outcome
from httprail._context import EXTENSION_KEY, RequestContext
from httprail._fast import bodiless_request, header_items, read_plain, response_of
from httprail.middleware import (
    CircuitBreaker,
    Logging,
    Metrics,
    Retry,
    Timeout,
    default_plugins,
)
from httprail.terminals import AiohttpTerminal

FEW, MANY = 500, 2500
STAGE_FEW, STAGE_MANY = 1000, 5000
CONCURRENCY = 16

Send = throughput.Send
Opener = Callable[[str], contextlib.AbstractAsyncContextManager[Send]]


def _terminal(kind: str, settings: HttpSettings) -> throughput.Terminal:
    if kind == "reqwest":
        return throughput.PyreqwestTerminal(settings)
    return throughput.AiohttpTerminal(settings)


def terminal_only(kind: str) -> Opener:
    """The terminal's ``send`` alone, of a request built per call as the client builds it."""

    @contextlib.asynccontextmanager
    async def opener(url: str) -> AsyncIterator[Send]:
        settings = HttpSettings()
        terminal = _terminal(kind, settings)
        target = httpx.URL(url)
        headers = AsyncClient()._headers  # the client's default headers
        context = RequestContext()
        try:

            async def send() -> bool:
                request = bodiless_request("GET", target, headers)
                request.extensions[EXTENSION_KEY] = context
                return isinstance(await terminal.send(request), Success)

            yield send
        finally:
            await terminal.aclose()

    return opener


@contextlib.asynccontextmanager
async def session_road(url: str) -> AsyncIterator[Send]:
    """``throughput.httprail_on("aiohttp")``: the default stack on ``AiohttpTerminal``, kept on
    the session road (each row runs in a process of its own)."""
    AiohttpTerminal._short_road = False
    async with throughput.httprail_on("aiohttp")(url) as send:
        yield send


def bare_client(kind: str) -> Opener:
    """``AsyncClient`` with no stage in front of the terminal."""

    @contextlib.asynccontextmanager
    async def opener(url: str) -> AsyncIterator[Send]:
        origin, path = url.removesuffix(throughput.PATH), throughput.PATH
        settings = HttpSettings()
        terminal = _terminal(kind, settings)
        async with AsyncClient(origin, plugins=[], terminal=terminal, settings=settings) as client:

            async def send() -> bool:
                return isinstance(await client.get(path), Success)

            yield send

    return opener


Items = tuple[bytes, bytes, bytes]  # a header as httpx keeps it: name, lowered name, value


def floor(kind: str) -> Opener:
    """The least an adapter speaking httpx to the pipeline does over the raw client: the
    ``httpx.Request`` built as the client builds it, its method, URL and headers handed to the
    raw client (their conversion kept from the first request, as the terminals keep it), the
    body read whole, an ``httpx.Response`` built and read with the fast constructors the
    terminals use (``_fast``), and the ``Success`` around it. Nothing else: no admission gate,
    no checks, no error mapping, no cancellation guard. No terminal can cost less than this."""

    @contextlib.asynccontextmanager
    async def opener(url: str) -> AsyncIterator[Send]:
        target = httpx.URL(url)
        headers = AsyncClient()._headers
        context = RequestContext()
        extensions: dict[str, object] = {}
        first = bodiless_request("GET", target, headers)
        pairs = [
            (n.decode("latin-1"), v.decode("latin-1")) for n, _, v in header_items(first.headers)
        ]
        last: list[object] = [None, None]  # the last response head as given, and converted

        def head_of(given: object, pairs: Callable[[], list[tuple[bytes, bytes]]]) -> list[Items]:
            if given != last[0]:
                last[0] = given
                last[1] = [(name, name.lower(), value) for name, value in pairs()]
            items: list[Items] = last[1]  # type: ignore[assignment]
            return items

        if kind == "reqwest":
            from pyreqwest.client import ClientBuilder

            client = ClientBuilder().build()
            text = str(target)

            async def send() -> bool:
                request = bodiless_request("GET", target, headers)
                request.extensions[EXTENSION_KEY] = context
                sending = client.request(request.method, text).headers(pairs).build_streamed()
                raw = await sending.__aenter__()
                try:
                    body = bytes(await raw.body_reader.bytes())
                finally:
                    await sending.__aexit__(None, None, None)
                given = list(raw.headers.items())
                items = head_of(given, lambda: [(n.encode(), v.encode()) for n, v in given])
                response = response_of(raw.status, items, _EMPTY, request, extensions)
                read_plain(response, body)
                return isinstance(Success(response), Success)

            async with client:
                yield send
        else:
            import aiohttp
            import multidict
            import yarl

            plain = yarl.URL(url, encoded=True)
            sent = multidict.CIMultiDictProxy(multidict.CIMultiDict(pairs))
            async with aiohttp.ClientSession() as session:

                async def send() -> bool:
                    request = bodiless_request("GET", target, headers)
                    request.extensions[EXTENSION_KEY] = context
                    async with session.request(request.method, plain, headers=sent) as raw:
                        body = await raw.read()
                    given = raw.raw_headers
                    items = head_of(given, lambda: list(given))
                    response = response_of(raw.status, items, _EMPTY, request, extensions)
                    read_plain(response, body)
                    return isinstance(Success(response), Success)

                yield send

    return opener


_EMPTY = httpx.ByteStream(b"")


def kept(opener: Opener) -> Opener:
    """``opener`` with pyreqwest's runtime thread given its lasting thread state first (as
    ``PyreqwestTerminal`` gives it; ``throughput.keep_runtime_thread_state``)."""

    @contextlib.asynccontextmanager
    async def wrapped(url: str) -> AsyncIterator[Send]:
        throughput.keep_runtime_thread_state()
        async with opener(url) as send:
            yield send

    return wrapped


EXTRA: dict[str, tuple[str, Opener]] = {
    "aiohttp-floor": ("floor of an httpx adapter, aiohttp", floor("aiohttp")),
    "reqwest-floor": ("floor of an httpx adapter, pyreqwest", floor("reqwest")),
    "reqwest-kept": (
        "raw pyreqwest, runtime thread state kept",
        kept(throughput.raw_pyreqwest),
    ),
    "aiohttp-session": ("default stack, aiohttp session road", session_road),
    "aiohttp-terminal": ("AiohttpTerminal.send", terminal_only("aiohttp")),
    "reqwest-terminal": ("PyreqwestTerminal.send", terminal_only("reqwest")),
    "bare-aiohttp": ("client, no stage, aiohttp", bare_client("aiohttp")),
    "bare-reqwest": ("client, no stage, reqwest", bare_client("reqwest")),
}


# -- in memory: the stages one by one ----------------------------------------------------------


class _Instant:
    """A terminal answering every request with one prepared response, after one pass through
    the event loop (``asyncio.sleep(0)``), so each stage's frame is suspended and resumed once
    as it is over a real terminal."""

    name = "instant"

    def __init__(self) -> None:
        response = httpx.Response(200, content=throughput.BODY)
        self._outcome: Outcome = Success(response)

    async def send(self, request: httpx.Request) -> Outcome:
        await asyncio.sleep(0)
        return self._outcome

    async def aclose(self) -> None:
        return None


class _NoOp:
    """A stage that only passes the request on: the floor of any stage."""

    name = "noop"

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        return await call_next(request)


def _retry_only(settings: HttpSettings) -> list[MiddlewarePlugin]:
    return [Retry.from_settings(settings, budget=None)]


STAGES: dict[str, tuple[str, Callable[[HttpSettings], list[MiddlewarePlugin]]]] = {
    "none": ("no stage (client + terminal)", lambda s: []),
    "noop": ("a no-op stage", lambda s: [_NoOp()]),
    "logging": ("Logging", lambda s: [Logging()]),
    "metrics": ("Metrics", lambda s: [Metrics()]),
    "timeout": ("Timeout(total)", lambda s: [Timeout(s.timeout_total)]),
    "retry-alone": ("Retry, no budget", _retry_only),
    "retry": ("Retry + RetryBudget", lambda s: [Retry.from_settings(s)]),
    "breaker": ("CircuitBreaker", lambda s: [CircuitBreaker.from_settings(s)]),
    "default": ("default stack", default_plugins),
}


def in_memory(stage: str) -> Opener:
    @contextlib.asynccontextmanager
    async def opener(url: str) -> AsyncIterator[Send]:
        settings = HttpSettings()
        plugins = STAGES[stage][1](settings)
        client = AsyncClient(url, plugins=plugins, terminal=_Instant(), settings=settings)
        async with client:

            async def send() -> bool:
                return isinstance(await client.get(throughput.PATH), Success)

            yield send

    return opener


def _opener(key: str) -> Opener:
    if key.startswith("mem:"):
        return in_memory(key.removeprefix("mem:"))
    if key in EXTRA:
        return EXTRA[key][1]
    opener = throughput.BY_KEY[key].open
    assert opener is not None
    return opener


def _label(key: str) -> str:
    if key.startswith("mem:"):
        return STAGES[key.removeprefix("mem:")][0]
    if key in EXTRA:
        return EXTRA[key][0]
    return throughput.BY_KEY[key].label


async def _drive(key: str, url: str, count: int) -> None:
    async with _opener(key)(url) as send:
        left = count

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                if not await send():
                    raise SystemExit(f"{key}: a request failed")

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def _instructions(key: str, url: str, count: int, keep: Path | None = None) -> int:
    out = "/dev/null" if keep is None else str(keep / f"callgrind.{key.replace(':', '-')}.{count}")
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--drive",
        key,
        str(count),
    ]
    env = {**os.environ, "BENCH_URL": url, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed for {key}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def _report(
    keys: list[str], url: str, base_key: str, few: int, many: int, keep: Path | None
) -> None:
    per_request: dict[str, float] = {}
    for key in keys:
        # One request outside valgrind first: a module changed since its last import is
        # compiled (and cached) then, not in one of the two counted runs (~1k per request).
        env = {**os.environ, "BENCH_URL": url, "PYTHONHASHSEED": "0"}
        subprocess.run([sys.executable, __file__, "--drive", key, "1"], env=env, check=True)
        low, high = (_instructions(key, url, n, keep) for n in (few, many))
        per_request[key] = (high - low) / (many - few)
        base = per_request.get(base_key)
        versus = f"  {per_request[key] / base:.3f}x {_label(base_key)}" if base else ""
        extra = ""
        if key.startswith("mem:") and "mem:none" in per_request and key != "mem:none":
            extra = f"  stage(s): {(per_request[key] - per_request['mem:none']) / 1000:6.1f}k"
        print(f"{_label(key):30s} {per_request[key] / 1000:8.1f}k{versus}{extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None)
    parser.add_argument("--base", default=None, help="the row to compare with")
    parser.add_argument("--stages", action="store_true", help="the stages in memory")
    parser.add_argument("--keep", type=Path, help="keep callgrind's files in this directory")
    parser.add_argument("--drive", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        asyncio.run(_drive(args.drive[0], os.environ["BENCH_URL"], int(args.drive[1])))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    if args.stages:
        names = args.only.split(",") if args.only else list(STAGES)
        keys = [f"mem:{name}" for name in names]
        base = f"mem:{args.base}" if args.base else keys[0]
        _report(keys, "http://bench.local", base, STAGE_FEW, STAGE_MANY, args.keep)
        return
    keys = (args.only or "aiohttp,httprail,httprail-aiohttp").split(",")
    with throughput.Server() as server:
        _report(keys, server.url, args.base or keys[0], FEW, MANY, args.keep)


if __name__ == "__main__":
    main()
