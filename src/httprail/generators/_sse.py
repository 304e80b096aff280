"""Server-Sent Events: an incremental parser that follows the WHATWG rules, and ``iter_sse``.

The parser works on bytes: lines are split on CR, LF or CRLF (also when a CR ends one chunk and
its LF starts the next), then decoded as UTF-8 (invalid bytes become U+FFFD), so a character
split across chunks is never broken. Per the HTML standard's "event stream interpretation":

- a leading byte order mark is skipped; a line starting with ``:`` is a comment;
- ``field: value`` loses one space after the colon; a line without a colon is a field with an
  empty value; unknown fields are ignored;
- ``data`` lines are joined with ``"\\n"``; an empty line dispatches the event, unless it has no
  data (then nothing is dispatched and the event name is forgotten);
- ``event`` names the event (``"message"`` when unnamed); ``id`` sets the last event id (an id
  containing NUL is ignored) and every later event carries it; ``retry`` counts only if it is
  all ASCII digits;
- an event left unterminated when the stream ends is discarded.

Beyond the standard, one line, and the lines of one event together, may hold at most
``max_event_bytes`` bytes (line ends not counted); more is a ``DecodeError``, so a peer cannot
make us buffer without bound.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

import httpx
from returns.result import Failure, Result, Success

from .._args import is_number, need, need_callable
from .._decode import request_of
from .._errors import ConfigError, DecodeError, RequestError, RequestTimeoutError
from ..terminals._mapping import map_exception

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEEvent", "SSEParser", "iter_sse"]

DEFAULT_MAX_EVENT_BYTES = 1_048_576
"""The default cap on one event (and on one line): 1 MiB."""

_BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event.

    Attributes:
        event: the event's name (``"message"`` unless an ``event:`` field named it).
        data: the ``data:`` lines, joined with ``"\\n"``.
        id: the last event id seen so far in the stream (``None`` until an ``id:`` field).
        retry: the reconnection delay in milliseconds, if this event's lines set one.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Incremental ``text/event-stream`` parser: feed it chunks as they arrive.

    Args:
        max_event_bytes: the most bytes one event's lines (or a single line) may hold.

    Raises:
        ConfigError: ``max_event_bytes`` is not a positive int.

    Example:
        >>> parser = SSEParser()
        >>> parser.feed(b"data: hel").unwrap()
        []
        >>> parser.feed(b"lo\\n\\n").unwrap()
        [SSEEvent(event='message', data='hello', id=None, retry=None)]
    """

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if (
            not isinstance(max_event_bytes, int)
            or isinstance(max_event_bytes, bool)
            or max_event_bytes < 1
        ):
            raise ConfigError(
                f"SSEParser(max_event_bytes=...) must be an int >= 1, got {max_event_bytes!r}"
            )
        self.max_event_bytes = max_event_bytes
        self.last_event_id: str | None = None
        """The stream's last event id (kept across events, as the standard says)."""
        self.retry: int | None = None
        """The latest valid ``retry:`` value in the stream, in milliseconds."""
        self._pending: list[bytes] = []  # the start of a line whose end has not arrived
        self._pending_bytes = 0
        self._started = False  # a line was seen, so a BOM is no longer expected
        self._skip_lf = False  # the last chunk ended with CR: an LF starting the next is its end
        self._error: DecodeError | None = None
        self._reset_event()

    def _reset_event(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._event_retry: int | None = None
        self._event_bytes = 0

    @property
    def mid_event(self) -> bool:
        """Whether an event (or a line) has begun and not ended."""
        return bool(self._pending_bytes or self._event_bytes)

    def feed(self, chunk: bytes) -> Result[list[SSEEvent], DecodeError]:
        """The events that ``chunk`` completes, in order.

        Returns:
            The events (often none), or ``Failure(DecodeError)`` once a line or an event is
            over the cap; then every later call fails the same way (events completed earlier
            in the same chunk are dropped: :meth:`feed_events` returns those too).
        """
        events, error = self.feed_events(chunk)
        return Success(events) if error is None else Failure(error)

    def feed_events(self, chunk: bytes) -> tuple[list[SSEEvent], DecodeError | None]:
        """Like :meth:`feed`, but also the events completed before a failure in ``chunk``."""
        if self._error is not None:
            return [], self._error
        if not isinstance(chunk, bytes):
            if not isinstance(chunk, bytearray | memoryview):
                return [], DecodeError(
                    f"server-sent events: feed() takes bytes, got {type(chunk).__name__}"
                )
            chunk = bytes(chunk)
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        events: list[SSEEvent] = []
        if b"\n" not in chunk and b"\r" not in chunk:  # the line goes on: no copying
            self._pending.append(chunk)
            self._pending_bytes += len(chunk)
        else:
            buffer = b"".join((*self._pending, chunk))
            start = 0
            for match in _LINE_END.finditer(buffer):
                error = self._line(buffer[start : match.start()], events)
                start = match.end()
                if error is not None:
                    return events, self._fail(error)
            self._skip_lf = buffer.endswith(b"\r")
            rest = buffer[start:]
            self._pending = [rest] if rest else []
            self._pending_bytes = len(rest)
        if self._pending_bytes > self.max_event_bytes + self._bom_allowance():
            return events, self._fail("a line")
        return events, None

    def _bom_allowance(self) -> int:
        """How many pending bytes are a BOM that will be skipped (only before the first line)."""
        if self._started or not self._pending:
            return 0
        return len(_BOM) if b"".join(self._pending[:3]).startswith(_BOM) else 0

    def close(self) -> list[SSEEvent]:
        """End of stream: drop an unterminated line or event (per the standard) and reset.

        Returns:
            The events the end of the stream completes, which is always none: an event counts
            only once an empty line ends it. The parser may then read a new stream (the last
            event id and retry value are kept, as a reconnecting client keeps them).
        """
        self._pending = []
        self._pending_bytes = 0
        self._started = False
        self._skip_lf = False
        self._error = None
        self._reset_event()
        return []

    def _fail(self, what: str) -> DecodeError:
        self._error = DecodeError(
            f"server-sent events: {what} is over the {self.max_event_bytes}-byte cap "
            "(max_event_bytes)"
        )
        self._pending = []
        self._pending_bytes = 0
        return self._error

    def _line(self, raw: bytes, events: list[SSEEvent]) -> str | None:
        """Interpret one line; what broke the size cap (a line, an event), if anything."""
        if not self._started:
            self._started = True
            if raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
        if not raw:
            self._dispatch(events)
            return None
        if len(raw) > self.max_event_bytes:
            return "a line"
        if raw[:1] == b":":
            return None
        self._event_bytes += len(raw)
        if self._event_bytes > self.max_event_bytes:
            return "an event"
        name, colon, value = raw.decode("utf-8", "replace").partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = self._event_retry = int(value)
        return None

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._data:
            events.append(
                SSEEvent(
                    event=self._event or "message",
                    data="\n".join(self._data),
                    id=self.last_event_id,
                    retry=self._event_retry,
                )
            )
        self._reset_event()


def iter_sse(
    response: httpx.Response,
    *,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    max_event_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncGenerator[Result[SSEEvent, RequestError], None]:
    """The events of a streamed ``text/event-stream`` response, as Results.

    Reads ``response.aiter_bytes()`` (so content encodings are undone) and yields
    ``Success(event)`` per event. If reading fails (the connection broke, a read timed out),
    the last item is one ``Failure`` of the matching error (``ReadError``, ``ProtocolError``,
    ``RequestTimeoutError``, ...); if an event is over ``max_event_bytes``, one
    ``Failure(DecodeError)``; if an event begun is still unfinished ``max_event_seconds``
    later while its bytes trickle in (each one resets the read timeout), one
    ``Failure(RequestTimeoutError)`` with ``phase="read"``. Comment lines between events
    (keep-alives) finish at once and never count. Nothing is retried: a broken stream is
    reported, not replayed.
    The response is closed when iteration ends, fails, or is stopped early (``aclose()``).

    Args:
        response: a response whose body has not been read (``AsyncClient.stream``).
        max_event_bytes: the most bytes one event (or line) may hold.
        max_event_seconds: the longest an event may take to arrive once begun (``None``: no
            bound but the read timeout's, between two reads).
        clock: the clock that time is read on (inject a fake one in tests).

    Raises:
        ConfigError: ``max_event_bytes`` is not a positive int, or ``max_event_seconds`` not
            a positive number or ``None`` (when called, before reading).

    Example:
        >>> async with client.stream("POST", "/chat", json=body) as outcome:  # doctest: +SKIP
        ...     async for item in iter_sse(outcome.unwrap()):
        ...         match item:
        ...             case Success(event): print(event.data)
        ...             case Failure(error): print("stream broke:", error)
    """
    parser = SSEParser(max_event_bytes)
    need(max_event_seconds is None or (is_number(max_event_seconds) and max_event_seconds > 0),
         "iter_sse", "max_event_seconds", "a number of seconds > 0 or None",
         max_event_seconds)  # fmt: skip
    need_callable("iter_sse", "clock", clock)
    return _events(response, parser, max_event_seconds, clock)


async def _events(
    response: httpx.Response,
    parser: SSEParser,
    max_event_seconds: float | None,
    clock: Callable[[], float],
) -> AsyncGenerator[Result[SSEEvent, RequestError], None]:
    request = request_of(response)
    chunks = response.aiter_bytes()
    begun: float | None = None  # when the event now unfinished began (a chunk's arrival)
    try:
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except Exception as exc:  # noqa: BLE001 - the decoding seam: the error becomes a value
                yield Failure(map_exception(exc, request))
                return
            events, error = parser.feed_events(chunk)
            for event in events:
                yield Success(event)
            if error is not None:
                yield Failure(DecodeError(error.message, request=request))
                return
            if max_event_seconds is not None:
                if not parser.mid_event:
                    begun = None
                elif begun is None or events:  # a new event began in this chunk
                    begun = clock()
                elif clock() - begun > max_event_seconds:
                    yield Failure(
                        RequestTimeoutError(
                            f"server-sent events: an event still unfinished after "
                            f"{max_event_seconds:g} s while its bytes trickle in "
                            "(max_event_seconds)",
                            phase="read",
                            request=request,
                        )
                    )
                    return
        parser.close()  # an unterminated event at the end is discarded
    finally:
        await _close_quietly(chunks, response)


async def _close_quietly(chunks: AsyncIterator[bytes], response: httpx.Response) -> None:
    """Close the byte iterator and the response; what is wrong with the stream was reported."""
    steps = [getattr(chunks, "aclose", None), response.aclose]
    for step in [step for step in steps if step is not None]:
        with contextlib.suppress(Exception):  # a failure to close changes nothing for the caller
            await step()
