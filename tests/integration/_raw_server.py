"""A raw HTTP server on 127.0.0.1 for tests: it records every byte and answers with given bytes.

ChaosServer speaks correct HTTP; the tests of hostile servers and of request smuggling need a
server that answers with whatever bytes they choose (a broken status line, a header without a
colon, a lying Content-Length) and that records exactly what reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Self

Answer = bytes | Callable[[bytes], bytes]


class RawServer:
    """Answer each connection's first request head with ``answer`` (bytes, or a function of the
    head), then close it. ``connections`` counts the connections accepted and ``received``
    holds every byte read, from all of them."""

    def __init__(self, answer: Answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") -> None:
        self.answer = answer
        self.connections = 0
        self.received = bytearray()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        head = b""
        try:
            with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
                async with asyncio.timeout(2):
                    while b"\r\n\r\n" not in head:
                        chunk = await reader.read(65536)
                        if not chunk:
                            break
                        head += chunk
                        self.received += chunk
            answer = self.answer(head) if callable(self.answer) else self.answer
            with contextlib.suppress(OSError):
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._handlers.discard(task)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
