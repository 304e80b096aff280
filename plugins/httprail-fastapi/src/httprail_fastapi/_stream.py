"""Streaming proxy: hand an upstream stream to the downstream client and own its lifetime.

``async with client.stream(...) as outcome: return StreamingResponse(...)`` cannot work: the
``async with`` closes the upstream response when the route returns, before the server sends
a byte (``httpx.StreamClosed``). The response object here takes the stream over instead: it
closes it when the body has been sent, when the upstream breaks, and as soon as the downstream
client disconnects (it listens for ``http.disconnect`` while it sends, whatever ASGI version
the server speaks), so an abandoned download never keeps an upstream connection busy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Any

import httpx
from httprail import AsyncClient, RequestError, redact_text
from returns.result import Failure, Result, Success
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ._responses import DEFAULT_PASSTHROUGH, failure_response

__all__ = [
    "FORWARDED_HEADERS",
    "OwnedStreamResponse",
    "proxy_stream",
    "sse_response",
    "stream_response",
]

FORWARDED_HEADERS: tuple[str, ...] = (
    "content-type",
    "cache-control",
    "content-disposition",
    "content-language",
    "etag",
    "last-modified",
)
"""Upstream headers :func:`stream_response` hands on by default (never cookies or auth)."""

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class OwnedStreamResponse(StreamingResponse):
    """A streaming response that closes its source when done, failed or abandoned.

    Args:
        chunks: the body.
        close: what releases the source (the upstream response's ``aclose``); awaited once,
            however the response ends.
        status_code, headers, media_type: as ``StreamingResponse``.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        close: Callable[[], Awaitable[None]],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        super().__init__(chunks, status_code=status_code, headers=headers, media_type=media_type)
        self._chunks = chunks
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sending = asyncio.ensure_future(self._send_body(send, scope.get("method") == "HEAD"))
        watching = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((sending, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sending.cancel()
            watching.cancel()
            await asyncio.wait((sending, watching))
            await _aclose(self._chunks)  # stopped at a yield when the client left mid-send
            await self._close()
        failed = None if sending.cancelled() else sending.exception()
        if failed is not None:
            raise failed  # the upstream broke mid-body: the server aborts the response

    async def _send_body(self, send: Send, head_only: bool) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        try:
            if not head_only:
                async for chunk in self._chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # ASGI 2.4 servers report a gone client this way
            return


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def stream_response(
    outcome: Result[httpx.Response, RequestError],
    *,
    forward_headers: Collection[str] = FORWARDED_HEADERS,
    passthrough: Collection[int] = DEFAULT_PASSTHROUGH,
) -> Response:
    """The response for a streamed upstream answer (``await client.get(url, stream=True)``).

    ``Success``: the upstream's status, its ``forward_headers`` and its body as it arrives
    (content encodings undone); the upstream response is closed when the body is sent or the
    downstream client disconnects. If the upstream breaks mid-body, an event stream ends with
    an ``event: error`` event, any other body is cut (the server aborts the response, so the
    client cannot take it for complete). ``Failure``: :func:`failure_response`, nothing sent
    upstream is left open.
    """
    match outcome:
        case Success(upstream):
            wanted = {name.lower() for name in forward_headers}
            headers = {k: v for k, v in upstream.headers.items() if k.lower() in wanted}
            sse = upstream.headers.get("content-type", "").startswith("text/event-stream")
            if sse:
                headers = {**_SSE_HEADERS, **headers}
            return OwnedStreamResponse(
                _relay(upstream, sse=sse),
                close=upstream.aclose,
                status_code=upstream.status_code,
                headers=headers,
            )
        case Failure(error):
            return failure_response(error, passthrough=passthrough)
    raise TypeError(f"stream_response() takes a Result, got {type(outcome).__name__}")


async def proxy_stream(
    client: AsyncClient, method: str, url: httpx.URL | str, **kwargs: Any
) -> Response:
    """Send ``method url`` through ``client`` as a stream and answer with it
    (:func:`stream_response`): the one-line streaming proxy.

    Example:
        >>> @app.get("/events")  # doctest: +SKIP
        ... async def events(client: Annotated[AsyncClient, Depends(client_dep("feed"))]):
        ...     return await proxy_stream(client, "GET", "/events")
    """
    return stream_response(await client.request(method, url, stream=True, **kwargs))


async def _relay(upstream: httpx.Response, *, sse: bool) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.aiter_bytes():
            yield chunk
    except Exception as exc:  # a broken upstream ends the body (below)
        if not sse:
            raise
        yield _error_event(type(exc).__name__, "the upstream stream broke")


def sse_response(
    source: AsyncIterator[Result[str, RequestError]], *, error_event: str = "error"
) -> OwnedStreamResponse:
    """An event stream of ``source``'s pieces (a ``GenerationStream``, or any async iterator
    of ``Result[str, RequestError]``): one ``data:`` event per ``Success``; a ``Failure``
    becomes a last ``event: error`` event with the error's type and redacted message. The
    source is closed (``aclose()``) when it ends or the downstream client disconnects.
    """
    return OwnedStreamResponse(
        _events(source, error_event),
        close=lambda: _aclose(source),
        headers=_SSE_HEADERS,
        media_type="text/event-stream",
    )


async def _events(
    source: AsyncIterator[Result[str, RequestError]], error_event: str
) -> AsyncIterator[bytes]:
    async for item in source:
        match item:
            case Success(text):
                yield "".join(f"data: {line}\n" for line in text.split("\n")).encode() + b"\n"
            case Failure(error):
                message = error.message if isinstance(error, RequestError) else str(error)
                yield _error_event(type(error).__name__, message, event=error_event)
                return


def _error_event(kind: str, message: str, *, event: str = "error") -> bytes:
    payload = json.dumps({"error": kind, "message": redact_text(message)})
    return f"event: {event}\ndata: {payload}\n\n".encode()


async def _aclose(source: object) -> None:
    close = getattr(source, "aclose", None)
    if close is not None:
        await close()
