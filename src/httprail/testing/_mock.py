"""``MockTerminal`` and ``FakeClock``: unit-test helpers that need no network and no waiting."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
from returns.result import Failure, Success

from .._context import get_context
from .._decode import request_of
from .._errors import RequestError, StatusError
from .._result import Outcome

__all__ = ["FakeClock", "Handler", "MockTerminal"]

Reply = httpx.Response | RequestError | Outcome
Handler = Callable[[httpx.Request], Reply | Awaitable[Reply]]


class MockTerminal:
    """A terminal that answers from a function instead of the network.

    The handler receives the request and returns an ``httpx.Response``, a ``RequestError`` (sent
    back as ``Failure``) or a ready ``Result``; it may be async. Responses with status >= 400
    become ``Failure(StatusError)`` as the real terminal does. Every request is recorded in
    :attr:`requests`.

    Args:
        handler: the function answering requests.

    Example:
        >>> terminal = MockTerminal(lambda request: httpx.Response(200, json={"ok": True}))
    """

    name = "mock"

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[httpx.Request] = []
        self.closed = False

    @classmethod
    def sequence(cls, replies: Iterable[Reply]) -> MockTerminal:
        """A terminal answering with ``replies`` in order, then repeating the last one."""
        items = list(replies)
        if not items:
            raise ValueError("MockTerminal.sequence needs at least one reply")
        position = 0

        def next_reply(request: httpx.Request) -> Reply:
            nonlocal position
            reply = items[min(position, len(items) - 1)]
            position += 1
            return reply

        return cls(next_reply)

    async def send(self, request: httpx.Request) -> Outcome:
        """Answer ``request`` with the handler's reply."""
        self.requests.append(request)
        reply = self._handler(request)
        if inspect.isawaitable(reply):
            reply = await reply
        if isinstance(reply, RequestError):
            return Failure(reply)
        if isinstance(reply, httpx.Response):
            if request_of(reply) is None:
                reply.request = request
            if not reply.is_stream_consumed and not get_context(request).stream:
                await reply.aread()
            if reply.status_code >= 400 and not get_context(request).raw_status:
                return Failure(StatusError.from_response(reply))
            return Success(reply)
        return reply

    async def aclose(self) -> None:
        """Mark the terminal closed."""
        self.closed = True


class FakeClock:
    """A monotonic clock whose ``sleep`` advances time instantly, for retry/backoff tests.

    Pass ``clock=fake`` and ``sleep=fake.sleep`` to stages that take them; ``fake.sleeps``
    lists every requested delay.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        self.now += seconds

    async def sleep(self, seconds: float, *_: Any) -> None:
        """Record the delay and advance the clock without waiting."""
        self.sleeps.append(seconds)
        self.now += seconds
