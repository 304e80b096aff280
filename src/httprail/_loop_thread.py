"""The event loop a :class:`~httprail.Client` runs its requests on, in a daemon thread, and
the bridges that let sync code read async bodies and use async transports through it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import httpx

from ._errors import ConfigError

__all__ = ["CLOSE_WAIT", "LoopThread", "SyncBody", "SyncTransport"]

T = TypeVar("T")

# How long closing waits for the loop to close the pool and stop.
CLOSE_WAIT = 5.0


class LoopThread:
    """An event loop running in a daemon thread, started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self.closed = False

    def start(self) -> asyncio.AbstractEventLoop:
        loop = self.loop
        if loop is not None and not self.closed:
            return loop
        with self._lock:
            if self.closed:
                raise ConfigError("this httprail.Client is closed")
            if self.loop is None:
                ready = threading.Event()
                self.thread = threading.Thread(
                    target=self._serve, args=(ready,), name=self._name, daemon=True
                )
                self.thread.start()
                ready.wait()
            assert self.loop is not None
            return self.loop

    def _serve(self, ready: threading.Event) -> None:
        with asyncio.Runner() as runner:  # its close() shuts async generators down: pools close

            async def serve() -> None:
                self._stop = asyncio.Event()
                self.loop = asyncio.get_running_loop()
                ready.set()
                await self._stop.wait()

            runner.run(serve())

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        try:
            loop = self.start()
        except ConfigError:
            coroutine.close()
            raise
        if threading.current_thread() is self.thread:
            coroutine.close()
            raise ConfigError(
                "httprail.Client was called from its own event loop (a callback or stage running "
                "in it): await the AsyncClient there instead"
            )
        return asyncio.run_coroutine_threadsafe(coroutine, loop)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result; if the wait ends otherwise
        (``TimeoutError`` after ``timeout`` seconds, ``KeyboardInterrupt``), it is cancelled
        there too."""
        future = self.submit(coroutine)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def stop(self, closing: Coroutine[Any, Any, None]) -> None:
        """Run ``closing`` on the loop, then stop it; wait for the thread (unless this is the
        loop's own thread)."""
        with self._lock:
            self.closed = True
            loop, stop = self.loop, self._stop
        if loop is None or stop is None or loop.is_closed():
            closing.close()
            return

        async def finish() -> None:
            try:
                await closing
            finally:
                stop.set()

        try:
            done = asyncio.run_coroutine_threadsafe(finish(), loop)
        except RuntimeError:  # pragma: no cover - the loop closed meanwhile
            return
        thread = self.thread
        if thread is not None and threading.current_thread() is not thread:
            try:
                done.result(CLOSE_WAIT)
            except BaseException:  # noqa: BLE001 - closing never raises; the thread ends anyway
                done.cancel()
            thread.join(CLOSE_WAIT)


async def _next(iterator: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


class SyncBody(httpx.SyncByteStream):
    """An async response body read from another thread, chunk by chunk, on the client's loop."""

    def __init__(self, inner: httpx.AsyncByteStream, runner: LoopThread) -> None:
        self._inner = inner
        self._runner = runner
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        chunks = self._inner.__aiter__()
        while True:
            chunk = self._runner.call(_next(chunks))
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._runner.closed:
            self._runner.call(self._inner.aclose(), CLOSE_WAIT)


class SyncTransport(httpx.BaseTransport):
    """An ``httpx.BaseTransport`` over an async one, run on a client's loop."""

    def __init__(self, inner: httpx.AsyncBaseTransport, runner: LoopThread) -> None:
        self._inner = inner
        self._runner = runner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # a sync body (an iterator, say) is read here, in the caller's thread
        response = self._runner.call(self._inner.handle_async_request(request))
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = SyncBody(response.stream, self._runner)
        return response

    def close(self) -> None:
        if not self._runner.closed:
            self._runner.call(self._inner.aclose(), CLOSE_WAIT)
