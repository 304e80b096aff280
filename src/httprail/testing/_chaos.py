"""``ChaosServer``: a real HTTP/1.1 server on 127.0.0.1 whose replies are scripted per path.

It runs its own event loop in a daemon thread, so it serves synchronous and asynchronous tests
alike and never competes with the client under test for the caller's loop. Every request it
receives is recorded (method, path, query, headers, body, arrival time on ``time.monotonic``),
so tests can assert on what the server actually saw.

Example:
    >>> with ChaosServer() as server:                                       # doctest: +SKIP
    ...     server.script("/flaky", Reply.status(503), Reply.json({"ok": True}))
    ...     httpx.get(server.url_for("/flaky")).status_code
    503
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

__all__ = ["ChaosServer", "Fault", "RecordedRequest", "Reply", "ReplyFunction", "TokenBucket"]

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
_HANG_SECONDS = 3600.0


class Fault(StrEnum):
    """Ways the server can misbehave instead of answering properly."""

    RESET = "reset"  # abort the connection with a TCP RST before answering
    CLOSE = "close"  # close the connection cleanly without answering
    HANG = "hang"  # read the request and never answer
    GARBAGE = "garbage"  # answer with bytes that are not HTTP, then close
    TRUNCATE = "truncate"  # promise a body, send part of it, then close
    HANG_BODY = "hang_body"  # send the head and part of the body, then never finish


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer.

    Attributes:
        status_code: the status code.
        headers: extra response headers.
        body: the response body.
        delay: seconds to wait before answering.
        fault: misbehave this way instead of answering (the other fields are ignored).
        events: SSE ``data`` payloads; when set, the body is an ``text/event-stream``. An item
            that starts with ``event:`` is written as it is (a named event: its ``event:``
            line, then its ``data:`` lines).
        event_delay: seconds between SSE events.
        drop_after_events: break the connection after this many events.
    """

    status_code: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    delay: float = 0.0
    fault: Fault | None = None
    events: tuple[str, ...] | None = None
    event_delay: float = 0.0
    drop_after_events: int | None = None

    @classmethod
    def json(
        cls,
        payload: Any,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """A JSON answer."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        merged = {"content-type": "application/json", **(headers or {})}
        return cls(status_code=status, headers=tuple(merged.items()), body=body, delay=delay)

    @classmethod
    def status(
        cls,
        code: int,
        *,
        retry_after: str | None = None,
        retry_after_ms: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        delay: float = 0.0,
    ) -> Reply:
        """A bare status, optionally with ``Retry-After`` / ``retry-after-ms``."""
        merged = dict(headers or {})
        if retry_after is not None:
            merged["Retry-After"] = retry_after
        if retry_after_ms is not None:
            merged["retry-after-ms"] = retry_after_ms
        return cls(status_code=code, headers=tuple(merged.items()), body=body, delay=delay)

    @classmethod
    def slow(cls, seconds: float, *, status: int = 200, body: bytes = b"{}") -> Reply:
        """An answer that arrives after ``seconds``."""
        return cls(
            status_code=status,
            headers=(("content-type", "application/json"),),
            body=body,
            delay=seconds,
        )

    @classmethod
    def sse(
        cls,
        events: Iterable[str],
        *,
        event_delay: float = 0.0,
        drop_after: int | None = None,
        status: int = 200,
    ) -> Reply:
        """A ``text/event-stream`` of ``data:`` events, optionally broken after ``drop_after``."""
        return cls(
            status_code=status,
            headers=(("content-type", "text/event-stream"), ("cache-control", "no-cache")),
            events=tuple(events),
            event_delay=event_delay,
            drop_after_events=drop_after,
        )

    @classmethod
    def fail(cls, fault: Fault) -> Reply:
        """Misbehave with ``fault`` instead of answering."""
        return cls(fault=Fault(fault))


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the server received it. Header names are lower-case."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    time: float
    connection_id: int

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None


ReplyFunction = Callable[[RecordedRequest], Reply]


@dataclass(slots=True)
class _Script:
    replies: Sequence[Reply] = ()
    repeat_last: bool = True
    function: ReplyFunction | None = None
    position: int = 0

    def next_reply(self, request: RecordedRequest) -> Reply:
        if self.function is not None:
            return self.function(request)
        index = self.position
        self.position += 1
        if index >= len(self.replies):
            index = len(self.replies) - 1 if self.repeat_last else index % len(self.replies)
        return self.replies[index]


class TokenBucket:
    """A thread-safe token bucket: ``take()`` says whether a request fits the capacity now.

    Args:
        rate: tokens added per second (> 0).
        burst: the most tokens held (default: 50 ms worth of ``rate``, at least 1).
        clock: monotonic seconds (injectable).
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, rate / 20.0)
        if not self.burst >= 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self._clock = clock
        self._tokens = self.burst
        self._refilled: float | None = None
        self._lock = threading.Lock()
        self.taken = 0
        self.refused = 0

    def take(self) -> bool:
        """Take one token if there is one; count the answer."""
        with self._lock:
            now = self._clock()
            if self._refilled is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
            self._refilled = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.taken += 1
                return True
            self.refused += 1
            return False

    def next_free(self) -> float:
        """Seconds until :meth:`take` would find a token (0 when one is there now)."""
        with self._lock:
            if self._refilled is None:
                return 0.0
            tokens = min(self.burst, self._tokens + (self._clock() - self._refilled) * self.rate)
            return max(0.0, (1.0 - tokens) / self.rate)


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(slots=True)
class _State:
    scripts: dict[str, _Script] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    closed: dict[int, float] = field(default_factory=dict)  # connection id -> when it ended
    # Re-entrant: a route function may ask the server what it has seen (count, requests).
    lock: threading.RLock = field(default_factory=threading.RLock)


class ChaosServer:
    """A scripted fault server on 127.0.0.1 (a random free port unless ``port`` is given).

    Paths without a script answer ``200 {"ok": true}``. Use :meth:`script` for a sequence of
    replies (the last repeats), :meth:`script_random` for random failures, :meth:`route` for a
    function of the request. Start and stop it explicitly, or use it as a (sync or async)
    context manager; :meth:`stop` aborts hung connections and never blocks for long.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._state = _State()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._connection_ids = iter(range(1, 2**62))
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving (idempotent); returns once the port is bound."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(
                        self._serve, self._host, self._requested_port, limit=MAX_HEAD_BYTES
                    )
                )
                self._port = self._server.sockets[0].getsockname()[1]
            except OSError as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._stopping = False
        self._thread = threading.Thread(target=run, name="httprail-chaos", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving and drop every connection (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return

        async def shutdown() -> None:
            self._stopping = True
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            loop.stop()

        with contextlib.suppress(RuntimeError):  # the loop already stopped
            asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the server must have been started)."""
        if self._port is None:
            raise RuntimeError("ChaosServer is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self._host}:{self.port}"

    def url_for(self, path: str) -> str:
        """The absolute URL of ``path``."""
        return f"{self.url}/{path.lstrip('/')}"

    # -- scripting ------------------------------------------------------------------------

    def script(self, path: str, *replies: Reply, repeat_last: bool = True) -> None:
        """Answer requests to ``path`` with ``replies`` in order.

        After the last reply, repeat it (``repeat_last=True``) or start over. Re-scripting a
        path replaces its script and restarts the sequence.
        """
        if not replies:
            raise ValueError("script() needs at least one reply")
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(f"script() takes Reply values, got {reply!r}")
        with self._state.lock:
            self._state.scripts[path] = _Script(tuple(replies), repeat_last)

    def script_random(
        self,
        path: str,
        *,
        ok: Reply | None = None,
        fail: Reply | None = None,
        fail_ratio: float,
        seed: int = 0,
    ) -> None:
        """Answer ``fail`` with probability ``fail_ratio`` (seeded, reproducible), else ``ok``."""
        if not 0.0 <= fail_ratio <= 1.0:
            raise ValueError(f"fail_ratio must be within [0, 1], got {fail_ratio}")
        rng = random.Random(seed)
        good = ok or Reply.json({"ok": True})
        bad = fail or Reply.status(503)
        self.route(path, lambda _request: bad if rng.random() < fail_ratio else good)

    def script_rate_limited(
        self,
        path: str,
        *,
        rate: float,
        burst: float | None = None,
        ok: Reply | None = None,
        retry_after: str | None = "1",
    ) -> TokenBucket:
        """Serve ``rate`` requests per second on ``path``; above it, answer 429.

        Args:
            rate: the capacity, requests per second.
            burst: how many requests may arrive at once (default: 50 ms worth, at least 1).
            ok: the reply within capacity (default: a small JSON body).
            retry_after: the 429's ``Retry-After`` value (``None``: no header).

        Returns:
            The server's bucket (its ``refused`` count says how many 429s were sent).
        """
        bucket = TokenBucket(rate, burst)
        good = ok or Reply.json({"ok": True})
        refused = Reply.status(429, retry_after=retry_after)

        def answer(_request: RecordedRequest) -> Reply:
            return good if bucket.take() else refused

        self.route(path, answer)
        return bucket

    def route(self, path: str, function: ReplyFunction) -> None:
        """Answer requests to ``path`` with ``function(request)``; it runs on the server thread."""
        with self._state.lock:
            self._state.scripts[path] = _Script(function=function)

    # -- what the server saw --------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order."""
        with self._state.lock:
            return list(self._state.requests)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """The requests received for ``path``."""
        return [r for r in self.requests if r.path == path]

    def count(self, path: str | None = None) -> int:
        """How many requests were received (for ``path``, or in total)."""
        with self._state.lock:
            if path is None:
                return len(self._state.requests)
            return sum(1 for r in self._state.requests if r.path == path)

    def closed_at(self, connection_id: int) -> float | None:
        """When (``time.monotonic``) the connection ``connection_id`` (of a
        :class:`RecordedRequest`) ended, or ``None`` while it is open. During an SSE reply with
        ``event_delay``, a client's close is seen within 5 ms, not only at the next write."""
        with self._state.lock:
            return self._state.closed.get(connection_id)

    def reset(self) -> None:
        """Forget every script and every recorded request."""
        with self._state.lock:
            self._state.scripts.clear()
            self._state.requests.clear()
            self._state.closed.clear()

    def forget_requests(self) -> int:
        """Drop the recorded requests but keep the scripts; returns how many were dropped."""
        with self._state.lock:
            dropped = len(self._state.requests)
            self._state.requests.clear()
            return dropped

    # -- serving --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        connection_id = next(self._connection_ids)
        try:
            while await self._serve_one(reader, writer, connection_id):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.transport.abort()
            with self._state.lock:
                self._state.closed[connection_id] = time.monotonic()

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection_id: int
    ) -> bool:
        """Serve one request; ``False`` when the connection is finished."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        except asyncio.LimitOverrunError:
            await _write_status(writer, 431)
            return False
        try:
            method, target, headers = _parse_head(head)
            body = await _read_body(reader, headers)
        except _BadRequest as bad:
            await _write_status(writer, bad.status)
            return False
        parts = urlsplit(target)
        recorded = RecordedRequest(
            method=method,
            path=parts.path or "/",
            query=parts.query,
            headers=headers,
            body=body,
            time=time.monotonic(),
            connection_id=connection_id,
        )
        with self._state.lock:
            self._state.requests.append(recorded)
            script = self._state.scripts.get(recorded.path)
            reply = script.next_reply(recorded) if script else _DEFAULT_REPLY
        keep_alive = (recorded.header("connection") or "").lower() != "close"
        return await _answer(
            reply, reader, writer, keep_alive=keep_alive, head_only=method == "HEAD"
        )


_DEFAULT_REPLY = Reply.json({"ok": True})


def _parse_head(head: bytes) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise _BadRequest(400) from exc
    lines = text.split("\r\n")
    request_line = lines[0].split(" ")
    if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
        raise _BadRequest(400)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400)
        headers.append((name.lower(), value.strip()))
    return request_line[0], request_line[1], tuple(headers)


async def _read_body(reader: asyncio.StreamReader, headers: tuple[tuple[str, str], ...]) -> bytes:
    values = dict(headers)
    if values.get("transfer-encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise _BadRequest(400) from exc
            if size == 0:
                # Trailers (usually none) end with an empty line.
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BadRequest(413)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length_text = values.get("content-length")
    if length_text is None:
        return b""
    try:
        length = int(length_text)
    except ValueError as exc:
        raise _BadRequest(400) from exc
    if length < 0:
        raise _BadRequest(400)
    if length > MAX_BODY_BYTES:
        raise _BadRequest(413)
    return await reader.readexactly(length)


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


def _head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [_status_line(status)]
    lines.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers)
    lines.append(b"\r\n")
    return b"".join(lines)


async def _write_status(writer: asyncio.StreamWriter, status: int) -> None:
    writer.write(_head(status, [("content-length", "0"), ("connection", "close")]))
    with contextlib.suppress(ConnectionError):
        await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _answer(
    reply: Reply,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    keep_alive: bool,
    head_only: bool,
) -> bool:
    if reply.delay > 0:
        await asyncio.sleep(reply.delay)
    if reply.fault is not None:
        await _misbehave(reply.fault, writer)
        return False
    connection = [] if keep_alive else [("connection", "close")]
    if reply.events is not None:
        return await _answer_events(reply, reader, writer, connection)
    headers = [*reply.headers, ("content-length", str(len(reply.body))), *connection]
    writer.write(_head(reply.status_code, headers) + (b"" if head_only else reply.body))
    await writer.drain()
    return keep_alive


async def _answer_events(
    reply: Reply,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    connection: list[tuple[str, str]],
) -> bool:
    assert reply.events is not None
    writer.write(
        _head(reply.status_code, [*reply.headers, ("transfer-encoding", "chunked"), *connection])
    )
    for index, data in enumerate(reply.events):
        if reply.drop_after_events is not None and index >= reply.drop_after_events:
            writer.transport.abort()
            return False
        if index and reply.event_delay > 0 and await _client_left(reader, reply.event_delay):
            return False
        if data.startswith("event:"):  # a named event, written as given
            payload = data.rstrip("\n").encode() + b"\n\n"
        else:
            payload = "".join(f"data: {line}\n" for line in data.split("\n")).encode() + b"\n"
        writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        await writer.drain()
    if reply.drop_after_events is not None and reply.drop_after_events <= len(reply.events):
        writer.transport.abort()
        return False
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return not connection


async def _client_left(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Wait ``seconds``; ``True`` (at once) if the client closes the connection meanwhile.

    Polls every 5 ms rather than reading, so that no byte of a next request is consumed."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if reader.at_eof():
            return True
        await asyncio.sleep(min(left, 0.005))
    return reader.at_eof()


async def _misbehave(fault: Fault, writer: asyncio.StreamWriter) -> None:
    match fault:
        case Fault.RESET:
            _reset(writer)
        case Fault.CLOSE:
            writer.close()
        case Fault.HANG:
            await asyncio.sleep(_HANG_SECONDS)
        case Fault.GARBAGE:
            writer.write(b"\x00\xffTHIS IS NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            writer.close()
        case Fault.TRUNCATE:
            writer.write(_head(200, [("content-length", "100")]) + b"only part")
            await writer.drain()
            writer.close()
        case Fault.HANG_BODY:
            writer.write(_head(200, [("content-length", "100")]) + b"only part")
            await writer.drain()
            await asyncio.sleep(_HANG_SECONDS)
