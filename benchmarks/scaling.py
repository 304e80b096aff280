"""Costs as work grows: many upstream hosts, 1,000 long-lived SSE streams, 1 MB / 100 MB bodies.

Issue 18 asks that httprail's costs stay flat as work grows. Each scenario runs httprail's
default stack (``AsyncClient`` with the default plugins) on the aiohttp terminal and on the
reqwest terminal (``PyreqwestTerminal``), next to the raw client under it (raw aiohttp, raw
pyreqwest), all in the same run:

1. **hosts**: closed loop, ``--concurrency`` workers (64) sending GETs round-robin to 1, 100
   and 10,000 distinct upstream hosts. Each host is its own loopback address
   (``127.0.b.c``; Linux routes all of 127.0.0.0/8 to ``lo``) with its own listener: the
   server binds one socket per address, split over two processes of at most 5,000 listeners
   each (a listener and an accepted connection each take a file descriptor). First one pass
   over every host (each opens a connection), a second pass (the stack's per-request caches
   keep a value from its key's second sighting, so this pass fills them; both passes' rps are
   reported), a warm-up, then ``--duration`` seconds measured:
   rps, errors, RSS before / peak / after, connections the server accepted, fds open at the
   end. Every cell runs in a fresh process, so its RSS is its own. One more row, the stack
   alone: the default stack over ``MockTerminal`` (no connection), its own per-host state.
2. **sse**: ``--streams`` (1,000) concurrent ``text/event-stream`` responses, each read through
   ``client.stream("GET", ...)`` and ``httprail.generators.iter_sse`` (raw clients: their own
   streaming read fed to the same ``SSEParser``); the server sends an OpenAI-style chunk to
   every stream every 0.2 s. Memory per stream: the RSS delta once every stream has received
   ``--events`` events, divided by the number of streams. Beside it, a pure-CPU micro
   benchmark: the same bytes, cut into the same chunks, through ``SSEParser`` and through the
   openai SDK's ``openai._streaming.SSEDecoder`` (events/s).
3. **bodies**: 1 MB (10^6 bytes, 100 requests) and 100 MB (10^8 bytes, 1 request) response
   bodies, read whole (``client.get``; raw: ``read()`` / ``bytes()``) and streamed
   (``aiter_bytes``; raw: ``iter_any()`` / ``read_chunk()``): MB/s and peak RSS above the
   start. 10^8 bytes fit under the default body cap (``HTTP_MAX_BODY_BYTES``, 100 MiB), so the
   default settings are used.

The server is a raw asyncio protocol answering fixed HTTP/1.1 responses, in its own processes
pinned to CPU 1 with taskset; the clients run on CPU 0 (as ``throughput.py``). Every cell is
repeated ``--repeats`` times (3), clients in reversed order every other repetition; tables give
medians with the min-max spread, ratios against the raw client measured in the same run.

Run:  python benchmarks/scaling.py [--quick] [--only hosts,sse,bodies,parser] [--repeats 3]
                                   [--duration 1.5] [--hosts 1,100,10000] [--streams 1000]
                                   [--write]

``--write`` stores ``benchmarks/results/scaling.md``. ``--quick``: small numbers (smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MB = 1_000_000
MIB = 1024 * 1024
SERVER_CPU, CLIENT_CPU = 1, 0
PER_SERVER = 5_000  # listeners per server process (each also holds its accepted connections)
SSE_INTERVAL = 0.2
BACKLOG = 4096  # connections waiting to be accepted, per listener (Linux caps it at somaxconn)
KINDS = ("aiohttp", "httprail-aiohttp", "reqwest", "httprail-reqwest", "httprail-memory")
NETWORKED = KINDS[:4]  # the SSE and body scenarios need a real connection
LABELS = {
    "aiohttp": "raw aiohttp",
    "httprail-aiohttp": "httprail, aiohttp terminal",
    "reqwest": "raw pyreqwest",
    "httprail-reqwest": "httprail, reqwest terminal",
    "httprail-memory": "httprail, in-memory terminal",
}
RAW_OF = {"httprail-aiohttp": "aiohttp", "httprail-reqwest": "reqwest"}
SCENARIOS = ("hosts", "sse", "bodies", "parser")
BODY = (
    b'{"id": 1, "name": "httprail", "tags": ["fast", "typed"], "ok": true, '
    b'"value": 3.14159, "n": 42, "p": 10}'
)


def address(index: int) -> str:
    """The loopback address of host ``index`` (0: 127.0.0.1; 254 hosts per /24)."""
    return f"127.0.{index // 254}.{index % 254 + 1}"


# -- the server (its own process: ``scaling.py --serve FIRST COUNT``) -------------------------

_SMALL = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
_PIECE = b"x" * MIB
_STATS = {"accepted": 0, "open": 0, "requests": 0}
_STREAMS: set[_Connection] = set()


def sse_event(n: int) -> bytes:
    """One OpenAI-style chat completion chunk as an SSE event (``data: {...}`` and a blank line)."""
    chunk = {
        "id": "chatcmpl-scaling",
        "object": "chat.completion.chunk",
        "created": 1765000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": f" token{n}"}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: ``/`` (104-byte JSON), ``/bytes/N``, ``/sse``, ``/stats``."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=4 * MIB)
        _STATS["accepted"] += 1
        _STATS["open"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        _STATS["open"] -= 1
        _STREAMS.discard(self)
        self._transport = None
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        while (end := buffer.find(b"\r\n\r\n")) >= 0:  # GETs only: no request bodies
            self._answer(buffer[:end])
            buffer = buffer[end + 4 :]
        self._buffer = buffer

    def _answer(self, head: bytes) -> None:
        transport = self._transport
        assert transport is not None
        _STATS["requests"] += 1
        path = head.split(b" ", 2)[1]
        if path == b"/":
            transport.write(_SMALL)
        elif path.startswith(b"/bytes/"):
            size = int(path[7:])
            transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
            asyncio.get_running_loop().create_task(self._send(size))
        elif path == b"/sse":
            transport.write(_SSE_HEAD)
            _STREAMS.add(self)
        elif path == b"/stats":
            body = json.dumps(_STATS).encode()
            transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        else:
            transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")

    async def _send(self, size: int) -> None:
        left = size
        while left > 0 and self._transport is not None:
            await self._writable.wait()
            if self._transport is None:
                return
            piece = _PIECE if left >= len(_PIECE) else _PIECE[:left]
            self._transport.write(piece)
            left -= len(piece)

    def push(self, frame: bytes) -> None:
        if self._transport is not None:
            self._transport.write(frame)


async def _tick() -> None:
    """Every :data:`SSE_INTERVAL` seconds: one event to every open event stream (chunked)."""
    n = 0
    while True:
        await asyncio.sleep(SSE_INTERVAL)
        event = sse_event(n)
        frame = b"%x\r\n%s\r\n" % (len(event), event)
        for stream in list(_STREAMS):
            stream.push(frame)
        n += 1


async def _serve(first: int, count: int, port: int) -> None:
    import socket

    loop = asyncio.get_running_loop()
    sockets = []
    for index in range(first, first + count):  # all bound before any is served
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address(index), port))
        sock.listen(BACKLOG)
        sockets.append(sock)
    # create_server listens again with its own backlog (100 by default): a burst of 1,000
    # connects would overflow it, and the kernel's dropped handshakes stall them for seconds
    servers = [
        await loop.create_server(_Connection, sock=sock, backlog=BACKLOG) for sock in sockets
    ]
    ticker = loop.create_task(_tick())
    try:
        await asyncio.Event().wait()
    finally:
        ticker.cancel()
        for server in servers:
            server.close()


def _raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def serve_main(first: int, count: int, port: int) -> None:
    _raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(first, count, port))


def stats(host: str, port: int) -> dict[str, int]:
    """The server's counters (connections accepted and open, requests answered)."""
    connection = http.client.HTTPConnection(host, port, timeout=5.0)
    try:
        connection.request("GET", "/stats")
        answer: dict[str, int] = json.loads(connection.getresponse().read())
        return answer
    finally:
        connection.close()


def _server_class() -> Any:
    """``ScalingServer``, built on ``throughput.ServerProcess`` (imported only by the parent)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from throughput import ServerProcess

    class ScalingServer(ServerProcess):  # type: ignore[misc]
        """``scaling.py --serve``: hosts ``first`` .. ``first + count - 1``, one port."""

        name = "scaling server"

        def __init__(self, first: int, count: int, cpu: int | None = SERVER_CPU) -> None:
            super().__init__(cpu)
            self.first, self.count = first, count

        def _command(self) -> list[str]:
            first, count, port = str(self.first), str(self.count), str(self.port)
            return [sys.executable, str(Path(__file__)), "--serve", first, count, port]

        def _answers(self) -> bool:
            try:  # the last address is bound last
                return stats(address(self.first + self.count - 1), self.port)["open"] >= 1
            except (OSError, ValueError, http.client.HTTPException):
                return False

        def __exit__(self, *exc: object) -> None:
            self.stop()

        def url(self, index: int, path: str = "/") -> str:
            return f"http://{address(index)}:{self.port}{path}"

        def counters(self) -> dict[str, int]:
            return stats(address(self.first), self.port)

    return ScalingServer


# -- memory ------------------------------------------------------------------------------------


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (Linux); 0 where there is none."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_mib() -> float:
    gc.collect()
    return _status("VmRSS") / 1024


def peak_mib() -> float:
    return _status("VmHWM") / 1024


def reset_peak() -> None:
    """Start the peak RSS (``VmHWM``) again from the current RSS (Linux's ``clear_refs``)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as file:
        file.write("5")


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


# -- the clients -------------------------------------------------------------------------------


class Client:
    """One client under test: a raw aiohttp session, a raw pyreqwest client or httprail."""

    async def get(self, url: str) -> bool:
        raise NotImplementedError

    async def whole(self, url: str) -> int:
        raise NotImplementedError

    async def streamed(self, url: str) -> int:
        raise NotImplementedError

    def events(self, url: str) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Any]]:
        """An open event stream: an iterator of parsed events (``SSEParser``'s)."""
        raise NotImplementedError


class RawAiohttp(Client):
    def __init__(self, session: Any) -> None:
        self.session = session

    async def get(self, url: str) -> bool:
        async with self.session.get(url) as response:
            await response.read()
            return bool(response.status == 200)

    async def whole(self, url: str) -> int:
        async with self.session.get(url) as response:
            return len(await response.read())

    async def streamed(self, url: str) -> int:
        size = 0
        async with self.session.get(url) as response:
            async for chunk in response.content.iter_any():
                size += len(chunk)
        return size

    @contextlib.asynccontextmanager
    async def events(self, url: str) -> AsyncIterator[AsyncIterator[Any]]:
        from httprail.generators import SSEParser

        async def parsed(response: Any) -> AsyncIterator[Any]:
            parser = SSEParser()
            async for chunk in response.content.iter_any():
                for event in parser.feed(chunk).unwrap():
                    yield event

        async with self.session.get(url) as response:
            yield parsed(response)


class RawPyreqwest(Client):
    def __init__(self, client: Any) -> None:
        self.client = client

    async def get(self, url: str) -> bool:
        response = await self.client.get(url).build().send()
        await response.bytes()
        return bool(response.status == 200)

    async def whole(self, url: str) -> int:
        response = await self.client.get(url).build().send()
        return len(await response.bytes())

    async def streamed(self, url: str) -> int:
        size = 0
        async with self.client.get(url).build_streamed() as response:
            while (chunk := await response.body_reader.read_chunk()) is not None:
                size += len(chunk)
        return size

    @contextlib.asynccontextmanager
    async def events(self, url: str) -> AsyncIterator[AsyncIterator[Any]]:
        from httprail.generators import SSEParser

        async def parsed(response: Any) -> AsyncIterator[Any]:
            parser = SSEParser()
            while (chunk := await response.body_reader.read_chunk()) is not None:
                for event in parser.feed(bytes(chunk)).unwrap():
                    yield event

        request = self.client.get(url).streamed_read_buffer_limit(0).build_streamed()
        async with request as response:
            yield parsed(response)


class Httprail(Client):
    def __init__(self, client: Any, recorded: list[Any] | None = None) -> None:
        from httprail import Success

        self.client = client
        self.recorded = recorded  # MockTerminal's record of requests: emptied after each
        self._success = Success  # imported once, not in every request's measured time

    async def get(self, url: str) -> bool:
        outcome = await self.client.get(url)
        if self.recorded is not None:
            self.recorded.clear()
        return isinstance(outcome, self._success) and outcome.unwrap().status_code == 200

    async def whole(self, url: str) -> int:
        return len((await self.client.get(url)).unwrap().content)

    async def streamed(self, url: str) -> int:
        size = 0
        async with self.client.stream("GET", url) as outcome:
            async for chunk in outcome.unwrap().aiter_bytes():
                size += len(chunk)
        return size

    @contextlib.asynccontextmanager
    async def events(self, url: str) -> AsyncIterator[AsyncIterator[Any]]:
        from httprail.generators import iter_sse

        async def parsed(items: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for item in items:
                yield item.unwrap()

        async with self.client.stream("GET", url) as outcome:
            yield parsed(iter_sse(outcome.unwrap()))


@contextlib.asynccontextmanager
async def open_client(kind: str, connections: int | None = None) -> AsyncIterator[Client]:
    """The client ``kind`` (see :data:`KINDS`) with its defaults, or room for ``connections``
    concurrent requests when given (the event streams)."""
    if kind == "aiohttp":
        import aiohttp

        limit = {} if connections is None else {"connector": aiohttp.TCPConnector(limit=0)}
        async with aiohttp.ClientSession(**limit) as session:
            yield RawAiohttp(session)
    elif kind == "reqwest":
        from pyreqwest.client import ClientBuilder

        async with ClientBuilder().build() as client:
            yield RawPyreqwest(client)
    elif kind == "httprail-memory":  # the stack's own state: no connection at all
        import httpx

        from httprail import AsyncClient
        from httprail.testing import MockTerminal

        mock = MockTerminal(lambda _request: httpx.Response(200, content=BODY))
        async with AsyncClient(terminal=mock) as client:
            yield Httprail(client, mock.requests)
    else:
        from httprail import AsyncClient, HttpSettings
        from httprail.terminals import AiohttpTerminal, PyreqwestTerminal

        extra = {} if connections is None else {"max_connections": connections + 16}
        settings = HttpSettings(**extra)
        terminal = (
            AiohttpTerminal(settings) if kind == "httprail-aiohttp" else PyreqwestTerminal(settings)
        )
        async with AsyncClient(terminal=terminal, settings=settings) as client:
            yield Httprail(client)


# -- the cells (each in a fresh process) -------------------------------------------------------


async def _drive(
    client: Client, urls: Sequence[str], concurrency: int, *, count: int = 0, seconds: float = 0
) -> tuple[int, int, float]:
    """``concurrency`` workers sending GETs to ``urls`` round-robin, ``count`` requests or for
    ``seconds``: (successes, failures, seconds taken); a response after the end is not counted.
    """
    state = {"next": 0, "ok": 0, "failed": 0}
    started = time.perf_counter()
    deadline = started + seconds if seconds else math.inf

    async def worker() -> None:
        while True:
            index = state["next"]
            if (count and index >= count) or time.perf_counter() >= deadline:
                return
            state["next"] = index + 1
            try:
                ok = await client.get(urls[index % len(urls)])
            except Exception:
                ok = False
            if time.perf_counter() < deadline:
                state["ok" if ok else "failed"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    ended = min(time.perf_counter(), deadline)
    return state["ok"], state["failed"], ended - started


async def hosts_cell(
    kind: str, urls: Sequence[str], *, duration: float, warm_up: float, concurrency: int
) -> dict[str, Any]:
    """rps and RSS of ``kind`` sending round-robin to ``urls`` (one per host)."""
    async with open_client(kind) as client:
        assert await client.get(urls[0]), f"{kind}: the first request failed"
        before = rss_mib()
        reset_peak()
        first_ok, first_failed, first_seconds = await _drive(
            client, urls, concurrency, count=len(urls)
        )
        # The second pass: the per-request caches keep a value from its key's second sighting
        # (``httprail._cache.remember``), so this pass fills them; later ones read them.
        second_ok, second_failed, second_seconds = await _drive(
            client, urls, concurrency, count=len(urls)
        )
        if warm_up:
            await _drive(client, urls, concurrency, seconds=warm_up)
        ok, failed, seconds = await _drive(client, urls, concurrency, seconds=duration)
        after, peak = rss_mib(), peak_mib()
        fds = open_fds()
    return {
        "hosts": len(urls),
        "ok": ok,
        "failed": failed + first_failed + second_failed,
        "first_ok": first_ok,
        "rps": ok / seconds,
        "first_rps": first_ok / first_seconds,
        "second_rps": second_ok / second_seconds,
        "rss_before": before,
        "rss_peak": max(peak, after),
        "rss_after": after,
        "fds": fds,
    }


async def sse_cell(
    kind: str, url: str, *, streams: int, events: int, window: float = 1.0
) -> dict[str, Any]:
    """Memory per open event stream once each has received ``events`` events; the events
    delivered per second over the next ``window`` seconds."""
    born = time.perf_counter()  # no event this client reads was sent before this
    async with open_client(kind, connections=streams) as client:
        async with client.events(url) as warm:  # imports, first connection, parser
            await anext(warm)
        before = rss_mib()
        reset_peak()
        counts = [0] * streams
        failed: list[str] = []
        ready = asyncio.Event()
        done = [0]

        stop = asyncio.Event()
        swallowed = [0]  # readers still running after their task was cancelled

        def reached(index: int) -> None:
            done[0] += 1
            if done[0] == streams:
                ready.set()

        async def reader(index: int) -> None:
            try:
                async with client.events(url) as parsed:
                    async for event in parsed:
                        assert event.data.startswith('{"id"'), event
                        counts[index] += 1
                        if counts[index] == events:
                            reached(index)
                        if stop.is_set():  # the end, also when a cancel was swallowed
                            task = asyncio.current_task()
                            swallowed[0] += bool(task is not None and task.cancelling())
                            return
            except Exception as exc:
                failed.append(f"{type(exc).__name__}: {exc}"[:200])
                if counts[index] < events:
                    reached(index)

        started = time.perf_counter()
        tasks = [asyncio.create_task(reader(i)) for i in range(streams)]
        try:
            await asyncio.wait_for(ready.wait(), timeout=60 + streams * 0.05)
            opened = time.perf_counter() - started
            open_rss = rss_mib()
            seen_before = sum(counts)
            window_started = time.perf_counter()
            await asyncio.sleep(window)
            # over the window as it ran: a stalled loop wakes up later than asked
            window = time.perf_counter() - window_started
            delivered = (sum(counts) - seen_before) / window
            peak = max(peak_mib(), open_rss)
            fds = open_fds()
        finally:
            # raw pyreqwest can swallow a cancel (its read returns the chunk instead): such a
            # reader would read on forever, so each also stops at its next event
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)
    return {
        "streams": streams,
        "failed": len(failed),
        "errors": failed[:3],
        "min_events": min(counts),
        "open_seconds": opened,
        "rss_before": before,
        "rss_open": open_rss,
        "rss_peak": peak,
        "kib_per_stream": (open_rss - before) * 1024 / streams,
        "delivered_per_s": delivered,
        "window_seconds": window,
        "client_seconds": time.perf_counter() - born,
        "expected_per_s": streams / SSE_INTERVAL,
        "fds": fds,
        "cancels_swallowed": swallowed[0],
    }


async def bodies_cell(kind: str, origin: str, plan: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """MB/s and peak RSS for each (size, requests) of ``plan``, read whole then streamed."""
    rows: dict[str, Any] = {}
    async with open_client(kind) as client:
        assert await client.get(origin + "/"), f"{kind}: the first request failed"
        smallest = min(size for size, _ in plan)
        await client.whole(f"{origin}/bytes/{smallest}")  # a warm-up of each way to read
        await client.streamed(f"{origin}/bytes/{smallest}")
        for size, requests in plan:
            url = f"{origin}/bytes/{size}"
            for mode in ("whole", "stream"):
                read = client.whole if mode == "whole" else client.streamed
                before = rss_mib()
                reset_peak()
                started = time.perf_counter()
                sizes = [await read(url) for _ in range(requests)]
                seconds = time.perf_counter() - started
                rows[f"{size}:{mode}"] = {
                    "ok": all(got == size for got in sizes),
                    "mb_per_s": size * requests / MB / seconds,
                    "peak_above": max(peak_mib() - before, 0.0),
                }
    return rows


def child_main(job: dict[str, Any]) -> dict[str, Any]:
    """Run one cell described by ``job`` (in a fresh process, see :func:`run_child`)."""
    import faulthandler

    # a stuck cell prints where every thread is and exits, rather than hang the run
    faulthandler.dump_traceback_later(float(job.get("stuck_after", 240)), exit=True)
    _raise_fd_limit()
    scenario, kind = job["scenario"], job["kind"]
    if scenario == "hosts":
        cell = hosts_cell(
            kind,
            job["urls"],
            duration=job["duration"],
            warm_up=job["warm_up"],
            concurrency=job["concurrency"],
        )
        return asyncio.run(cell)
    if scenario == "sse":
        cell = sse_cell(
            kind,
            job["url"],
            streams=job["streams"],
            events=job["events"],
            window=job.get("window", 1.0),
        )
        return asyncio.run(cell)
    assert scenario == "bodies", scenario
    plan = [(int(size), int(requests)) for size, requests in job["plan"]]
    return asyncio.run(bodies_cell(kind, job["origin"], plan))


_MARK = "SCALING-RESULT "


def run_child(job: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
    """Run ``job`` in a fresh Python process (same CPU affinity as this one); its result."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), "--child"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith(_MARK):
            result: dict[str, Any] = json.loads(line[len(_MARK) :])
            return result
    raise RuntimeError(
        f"{job['scenario']}/{job['kind']} exited {done.returncode}: {done.stderr[-1500:]}"
    )


# -- the SSE parsers on the same bytes (pure CPU) ----------------------------------------------


def sse_chunks(events: int, chunk: int) -> list[bytes]:
    """``events`` OpenAI-style events cut into ``chunk``-byte pieces (0: one event a piece)."""
    each = [sse_event(n) for n in range(events)]
    if chunk == 0:
        return each
    data = b"".join(each)
    return [data[i : i + chunk] for i in range(0, len(data), chunk)]


def parse_ours(chunks: Sequence[bytes]) -> list[str]:
    from httprail.generators import SSEParser

    parser = SSEParser()
    data: list[str] = []
    for chunk in chunks:
        events, error = parser.feed_events(chunk)
        assert error is None, error
        data.extend(event.data for event in events)
    return data


def parse_openai(chunks: Sequence[bytes]) -> list[str]:
    from openai._streaming import SSEDecoder

    return [event.data for event in SSEDecoder().iter_bytes(iter(chunks))]


def parser_bench(events: int, repeats: int) -> dict[str, Any]:
    """events/s of both parsers on the same chunks (medians and spread of ``repeats``)."""
    try:
        import openai
    except ImportError:
        return {"openai": None}
    rows: dict[str, Any] = {"openai": openai.__version__}
    for label, size in (("one event per chunk", 0), ("4 KiB chunks", 4096), ("64 KiB", 65536)):
        chunks = sse_chunks(events, size)
        assert parse_ours(chunks) == parse_openai(chunks), "the parsers disagree"
        rates: dict[str, list[float]] = {"httprail": [], "openai": []}
        for repeat in range(repeats):
            order = [("httprail", parse_ours), ("openai", parse_openai)]
            for name, parse in order if repeat % 2 == 0 else order[::-1]:
                gc.collect()
                started = time.perf_counter()
                count = len(parse(chunks))
                rates[name].append(count / (time.perf_counter() - started))
        rows[label] = rates
    return rows


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Plan:
    hosts: list[int]
    streams: int
    events: int
    bodies: list[tuple[int, int]]
    parser_events: int


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Every scenario asked for: raw results by scenario, kind and repetition."""
    plan: Plan = args.plan
    kinds = args.kinds
    results: dict[str, Any] = {"hosts": {}, "sse": {}, "bodies": {}, "parser": None, "servers": 1}
    wanted = args.scenarios
    server_class = _server_class()
    largest = max(plan.hosts) if "hosts" in wanted else 1
    blocks = [(first, min(PER_SERVER, largest - first)) for first in range(0, largest, PER_SERVER)]
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(server_class(first, count)) for first, count in blocks]
        results["servers"] = len(servers)
        results["pinned"] = servers[0].cpu is not None
        main_server = servers[0]

        def url_of(index: int) -> str:
            server = servers[index // PER_SERVER]
            return str(server.url(index))

        def accepted() -> int:
            return sum(server.counters()["accepted"] for server in servers)

        for repeat in range(args.repeats):
            order = kinds if repeat % 2 == 0 else kinds[::-1]
            if "hosts" in wanted:
                for hosts in plan.hosts:
                    urls = [url_of(i) for i in range(hosts)]
                    for kind in order:
                        opened = accepted()
                        job = {
                            "scenario": "hosts",
                            "kind": kind,
                            "urls": urls,
                            "duration": args.duration,
                            "warm_up": args.warm_up,
                            "concurrency": args.concurrency,
                        }
                        cell = run_child(job)
                        cell["connections"] = accepted() - opened - len(servers)  # not /stats
                        results["hosts"].setdefault((kind, hosts), []).append(cell)
                        log(
                            f"hosts={hosts:>6,} {kind:<17} rep {repeat + 1}: "
                            f"{cell['rps']:8,.0f} rps  first pass {cell['first_rps']:7,.0f} rps  "
                            f"second {cell['second_rps']:7,.0f} rps  "
                            f"RSS {cell['rss_before']:.1f} -> {cell['rss_after']:.1f} MiB "
                            f"(peak {cell['rss_peak']:.1f})  conns {cell['connections']:,}  "
                            f"failed {cell['failed']}"
                        )
            networked = [kind for kind in order if kind in NETWORKED]
            if "sse" in wanted:
                for kind in networked:
                    job = {
                        "scenario": "sse",
                        "kind": kind,
                        "url": main_server.url(0, "/sse"),
                        "streams": plan.streams,
                        "events": plan.events,
                    }
                    cell = run_child(job)
                    results["sse"].setdefault(kind, []).append(cell)
                    log(
                        f"sse {plan.streams:,} streams {kind:<17} rep {repeat + 1}: "
                        f"{cell['kib_per_stream']:6.1f} KiB/stream  RSS {cell['rss_before']:.1f}"
                        f" -> {cell['rss_open']:.1f} MiB  open in {cell['open_seconds']:.2f} s  "
                        f"{cell['delivered_per_s']:,.0f}/{cell['expected_per_s']:,.0f} events/s"
                        f"  failed {cell['failed']} {cell['errors'][:1]}"
                    )
            if "bodies" in wanted:
                for kind in networked:
                    origin = main_server.url(0, "").rstrip("/")
                    job = {"scenario": "bodies", "kind": kind, "origin": origin}
                    job["plan"] = plan.bodies
                    cell = run_child(job)
                    results["bodies"].setdefault(kind, []).append(cell)
                    shown = "  ".join(
                        f"{key} {row['mb_per_s']:,.0f} MB/s" + ("" if row["ok"] else " (SHORT)")
                        for key, row in cell.items()
                    )
                    log(f"bodies {kind:<17} rep {repeat + 1}: {shown}")
    if "parser" in wanted:
        results["parser"] = parser_bench(plan.parser_events, max(args.repeats, 3))
        for label, rates in results["parser"].items():
            if isinstance(rates, dict):
                ours, theirs = _med(rates["httprail"]), _med(rates["openai"])
                log(f"parser {label}: httprail {ours:,.0f} events/s, openai {theirs:,.0f}")
    return results


# -- the report --------------------------------------------------------------------------------


def _med(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def _spread(values: Sequence[float], fmt: str = ",.0f") -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    return f"{min(finite):{fmt}}-{max(finite):{fmt}}"


def _x(value: float) -> str:
    return f"{value:.2f}x" if math.isfinite(value) else "-"


def _ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


def _machine(command: str, load: tuple[float, float]) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("httprail", "httpx", "aiohttp", "pyreqwest", "openai"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"Command: `{command}`  ",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.platform()}, {cpu}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()} (asyncio's default loop); "
        f"load average {load[0]:.2f} at the start, {load[1]:.2f} at the end (the machine is "
        "shared with other work)  ",
        f"Versions: {', '.join(parts)}  ",
    ]


def render_hosts(results: dict[str, Any], kinds: Sequence[str], hosts: Sequence[int]) -> list[str]:
    cells = results["hosts"]
    if not cells:
        return []
    lines = [
        "### Hosts: rps and memory with 1, 100 and 10,000 upstream hosts",
        "",
        "| client | hosts | rps | rps min-max | x raw | x its 1-host rps | first pass rps "
        "| second pass rps | RSS before MiB | peak | after | after - before "
        "| KiB per added host | connections | failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: |",
    ]
    for kind in kinds:
        for count in hosts:
            runs = cells.get((kind, count), [])
            if not runs:
                continue
            rps = _med([r["rps"] for r in runs])
            raw = RAW_OF.get(kind)
            raw_rps = _med([r["rps"] for r in cells.get((raw, count), [])]) if raw else math.nan
            first = cells.get((kind, hosts[0]), [])
            one = _med([r["rps"] for r in first])
            growths = [r["rss_after"] - r["rss_before"] for r in runs]
            growth = _med(growths)
            base = _med([r["rss_after"] - r["rss_before"] for r in first])
            per_host = (growth - base) * 1024 / (count - hosts[0]) if count > hosts[0] else None
            lines.append(
                f"| {LABELS[kind]} | {count:,} | {rps:,.0f} | {_spread([r['rps'] for r in runs])} "
                f"| {_x(_ratio(rps, raw_rps)) if raw else ''} | {_x(_ratio(rps, one))} "
                f"| {_med([r['first_rps'] for r in runs]):,.0f} "
                f"| {_med([r['second_rps'] for r in runs]):,.0f} "
                f"| {_med([r['rss_before'] for r in runs]):.1f} "
                f"| {_med([r['rss_peak'] for r in runs]):.1f} "
                f"| {_med([r['rss_after'] for r in runs]):.1f} "
                f"| {growth:+.1f} ({_spread(growths, '+.1f')}) "
                f"| {'' if per_host is None else f'{per_host:,.2f}'} "
                f"| {_med([r['connections'] for r in runs]):,.0f} "
                f"| {sum(r['failed'] for r in runs):,} |"
            )
    return [*lines, ""]


def render_sse(results: dict[str, Any], kinds: Sequence[str]) -> list[str]:
    cells = results["sse"]
    if not cells:
        return []
    streams = next(iter(cells.values()))[0]["streams"]
    lines = [
        f"### SSE: {streams:,} concurrent event streams",
        "",
        "| client | KiB per stream | min-max | x raw | RSS before MiB | RSS open | peak "
        "| time to open all s | events/s delivered (sent) | min events per stream | failed "
        "| cancels swallowed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind in kinds:
        runs = cells.get(kind, [])
        if not runs:
            continue
        per = _med([r["kib_per_stream"] for r in runs])
        raw = RAW_OF.get(kind)
        raw_per = _med([r["kib_per_stream"] for r in cells.get(raw, [])]) if raw else math.nan
        lines.append(
            f"| {LABELS[kind]} | {per:.1f} | {_spread([r['kib_per_stream'] for r in runs], '.1f')} "
            f"| {_x(_ratio(per, raw_per)) if raw else ''} "
            f"| {_med([r['rss_before'] for r in runs]):.1f} "
            f"| {_med([r['rss_open'] for r in runs]):.1f} "
            f"| {_med([r['rss_peak'] for r in runs]):.1f} "
            f"| {_med([r['open_seconds'] for r in runs]):.2f} "
            f"| {_med([r['delivered_per_s'] for r in runs]):,.0f} "
            f"({runs[0]['expected_per_s']:,.0f}) "
            f"| {min(r['min_events'] for r in runs)} | {sum(r['failed'] for r in runs)} "
            f"| {'-'.join(str(r['cancels_swallowed']) for r in runs)} |"
        )
    return [*lines, ""]


def render_parser(results: dict[str, Any]) -> list[str]:
    rows = results["parser"]
    if not rows:
        return []
    if rows.get("openai") is None:
        return ["### SSE parsers", "", "_openai is not installed: no comparison._", ""]
    lines = [
        f"### SSE parsers on the same bytes (openai {rows['openai']}'s `SSEDecoder`)",
        "",
        "| chunks | httprail `SSEParser` events/s | min-max | openai `SSEDecoder` events/s "
        "| min-max | httprail / openai |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, rates in rows.items():
        if not isinstance(rates, dict):
            continue
        ours, theirs = _med(rates["httprail"]), _med(rates["openai"])
        lines.append(
            f"| {label} | {ours:,.0f} | {_spread(rates['httprail'])} | {theirs:,.0f} "
            f"| {_spread(rates['openai'])} | {_x(_ratio(ours, theirs))} |"
        )
    return [*lines, ""]


def render_bodies(results: dict[str, Any], kinds: Sequence[str]) -> list[str]:
    cells = results["bodies"]
    if not cells:
        return []
    keys = list(next(iter(cells.values()))[0])
    lines = [
        "### Bodies: MB/s (10^6 bytes per MB) and peak RSS above the start",
        "",
        "| client | body | read | MB/s | min-max | x raw | peak RSS above start MiB | complete |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for key in keys:
        size, mode = key.split(":")
        for kind in kinds:
            runs = [r[key] for r in cells.get(kind, [])]
            if not runs:
                continue
            rate = _med([r["mb_per_s"] for r in runs])
            raw = RAW_OF.get(kind)
            raw_runs = [r[key] for r in cells.get(raw, [])] if raw else []
            raw_rate = _med([r["mb_per_s"] for r in raw_runs]) if raw_runs else math.nan
            lines.append(
                f"| {LABELS[kind]} | {int(size) / MB:,.0f} MB | {mode} | {rate:,.0f} "
                f"| {_spread([r['mb_per_s'] for r in runs])} "
                f"| {_x(_ratio(rate, raw_rate)) if raw else ''} "
                f"| {_med([r['peak_above'] for r in runs]):,.1f} "
                f"| {'yes' if all(r['ok'] for r in runs) else '**no**'} |"
            )
    return [*lines, ""]


def render(
    results: dict[str, Any], args: argparse.Namespace, command: str, load: tuple[float, float]
) -> str:
    plan: Plan = args.plan
    placement = (
        f"server processes pinned to CPU {SERVER_CPU} (taskset), the clients to CPU {CLIENT_CPU}"
        if results.get("pinned")
        else "no CPU pinning"
    )
    lines = [
        *_machine(command, load),
        f"Server: a raw asyncio HTTP/1.1 protocol (fixed answers) in {results['servers']} "
        f"process(es), one listener per loopback address, at most {PER_SERVER:,} per process; "
        f"{placement}. Each cell ran in a fresh client process; {args.repeats} repetitions, "
        "client order reversed every other one; medians with the min-max spread.",
        f"Hosts: c={args.concurrency}, two passes over every host, {args.warm_up:g} s warm-up, "
        f"{args.duration:g} s measured. SSE: {plan.streams:,} streams, an event to each every "
        f"{SSE_INTERVAL:g} s, memory taken once each has {plan.events} events. Bodies: "
        + ", ".join(f"{size / MB:g} MB x {n}" for size, n in plan.bodies)
        + " requests per measurement, one at a time.",
        "",
        *render_hosts(results, args.kinds, plan.hosts),
        *render_sse(results, args.kinds),
        *render_parser(results),
        *render_bodies(results, args.kinds),
    ]
    return "\n".join(lines)


def write(section: str) -> Path:
    """``results/scaling.md``: the run's section, and the reading kept from the last file."""
    path = RESULTS / "scaling.md"
    previous = path.read_text(encoding="utf-8") if path.exists() else ""
    start, end = "<!-- scaling:run -->", "<!-- /scaling:run -->"
    reading = ""
    if end in previous:
        reading = previous.split(end, 1)[1]
    text = "\n".join(
        [
            "# Scaling: costs as work grows (issue 18)",
            "",
            "<!-- --8<-- [start:report] -->",
            start,
            section.rstrip("\n"),
            end,
        ]
    )
    path.write_text(text + (reading or "\n<!-- --8<-- [end:report] -->\n"), encoding="utf-8")
    return path


# -- main --------------------------------------------------------------------------------------


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", default="", help="scenarios: " + ",".join(SCENARIOS))
    parser.add_argument("--clients", default="", help="clients: " + ",".join(KINDS))
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (3; quick: 1)")
    parser.add_argument("--duration", type=float, default=None, help="hosts: s (1.5; quick: 0.3)")
    parser.add_argument("--warm-up", type=float, default=None, help="hosts: s (0.3; quick: 0)")
    parser.add_argument("--concurrency", type=int, default=64, help="hosts: workers (64)")
    parser.add_argument("--hosts", default="", help="host counts (1,100,10000; quick: 1,20)")
    parser.add_argument("--streams", type=int, default=None, help="SSE streams (1000; quick 50)")
    parser.add_argument("--quick", action="store_true", help="small numbers (smoke test)")
    parser.add_argument("--write", action="store_true", help="write results/scaling.md")
    args = parser.parse_args(argv)
    quick = args.quick
    args.repeats = args.repeats if args.repeats is not None else 1 if quick else 3
    args.duration = args.duration if args.duration is not None else 0.3 if quick else 1.5
    args.warm_up = args.warm_up if args.warm_up is not None else 0.0 if quick else 0.3
    try:
        hosts = [int(h) for h in _csv(args.hosts)] or ([1, 20] if quick else [1, 100, 10_000])
    except ValueError:
        parser.error(f"--hosts takes integers: {args.hosts!r}")
    streams = args.streams if args.streams is not None else 50 if quick else 1000
    bodies = [(MB, 5), (10 * MB, 1)] if quick else [(MB, 100), (100 * MB, 1)]
    args.plan = Plan(hosts, streams, 3, bodies, 2000 if quick else 20_000)
    args.scenarios = _csv(args.only) or list(SCENARIOS)
    args.kinds = _csv(args.clients) or list(KINDS)
    if unknown := [s for s in args.scenarios if s not in SCENARIOS]:
        parser.error(f"--only: unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    if unknown := [k for k in args.kinds if k not in KINDS]:
        parser.error(f"--clients: unknown client(s) {unknown}; known: {', '.join(KINDS)}")
    if args.repeats < 1 or args.duration <= 0 or min(hosts) < 1 or streams < 1:
        parser.error("--repeats, --duration, --hosts and --streams must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shown = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python", "benchmarks/scaling.py", *shown])
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {CLIENT_CPU})  # the children inherit it
    fd_limit = _raise_fd_limit()
    if "hosts" in args.scenarios and max(args.plan.hosts) + 256 > fd_limit:
        print(f"open-file limit {fd_limit:,}: too low for {max(args.plan.hosts):,} hosts")
        return 2
    load_start = os.getloadavg()[0]
    results = run(args, lambda line: print(line, flush=True))
    section = render(results, args, command, (load_start, os.getloadavg()[0]))
    print()
    print(section)
    if args.write:
        print(f"wrote {write(section)}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve_main(*(int(a) for a in sys.argv[2:5]))
    elif sys.argv[1:2] == ["--child"]:
        answer = child_main(json.loads(sys.stdin.read()))
        print(_MARK + json.dumps(answer), flush=True)
    else:
        try:
            raise SystemExit(main())
        except KeyboardInterrupt:
            print("interrupted (the servers are stopped)", file=sys.stderr)
            raise SystemExit(130) from None
