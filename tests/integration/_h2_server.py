"""A scripted HTTP/2 server on 127.0.0.1 (h2c, prior knowledge) for tests of what a client does
when a server rotates, refuses or drops its streams.

Each connection answers its requests in order; ``script[connection][n]`` says what happens to
the ``n``-th request (from 1) of connection ``connection`` (from 0), once its whole request has
arrived:

- ``"answer"`` (the default): 200 with ``ok``;
- ``"refuse"``: a GOAWAY naming the previous stream as the last processed, then the connection
  closes (RFC 9113 §6.8: this request was not processed);
- ``"rotate"``: a GOAWAY naming this stream, never answered, then the connection closes;
- ``"vanish"``: the connection closes with the request in flight, no GOAWAY;
- ``"head+vanish"``: the response head (2 bytes of body announced), then the connection
  closes; ``"part+vanish"``: the head and 80 KiB of a 160 KiB body, then it closes;
- ``"reset-refused"`` / ``"reset-error"``: RST_STREAM with ``REFUSED_STREAM`` /
  ``INTERNAL_ERROR``;
- ``"hold"``: processed, never answered (several streams can be in flight when a later
  request closes the connection).

``processed`` lists ``(connection, stream id)`` of each request that reached the "application"
(all but refused ones).
"""

from __future__ import annotations

import asyncio
from typing import Self

import h2.config
import h2.connection
import h2.errors
import h2.events

_CLOSING = ("refuse", "rotate", "vanish", "head+vanish", "part+vanish")
PART = 80 * 1024


class H2Server:
    """The scripted server (an async context manager); ``url`` once entered."""

    def __init__(self, script: dict[int, dict[int, str]]) -> None:
        self.script = script
        self.connections = 0
        self.processed: list[tuple[int, int]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def _act(self, conn: h2.connection.H2Connection, index: int, number: int, stream: int) -> str:
        action = self.script.get(index, {}).get(number, "answer")
        if action not in ("refuse", "reset-refused"):
            self.processed.append((index, stream))
        if action == "answer":
            conn.send_headers(stream, [(":status", "200"), ("content-length", "2")])
            conn.send_data(stream, b"ok", end_stream=True)
        elif action == "refuse":
            conn.close_connection(last_stream_id=stream - 2)
        elif action == "head+vanish":
            conn.send_headers(stream, [(":status", "200"), ("content-length", "2")])
        elif action == "part+vanish":
            conn.send_headers(stream, [(":status", "200"), ("content-length", str(2 * PART))])
            sent = 0
            while sent < PART:
                size = min(conn.max_outbound_frame_size, PART - sent)
                conn.send_data(stream, b"x" * size)
                sent += size
        elif action == "rotate":
            conn.close_connection(last_stream_id=stream)
        elif action == "reset-refused":
            conn.reset_stream(stream, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif action == "reset-error":
            conn.reset_stream(stream, h2.errors.ErrorCodes.INTERNAL_ERROR)
        return action

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        index = self.connections
        self.connections += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        number = 0
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if not isinstance(event, h2.events.StreamEnded):
                        continue
                    number += 1
                    if self.script.get(index, {}).get(number) == "hold":
                        self.processed.append((index, event.stream_id))
                        continue
                    if self._act(conn, index, number, event.stream_id) in _CLOSING:
                        writer.write(conn.data_to_send())
                        await writer.drain()
                        return
                writer.write(conn.data_to_send())
        except ConnectionError:
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
