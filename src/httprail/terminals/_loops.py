"""Terminals that follow their callers from one event loop to another.

A backend's pool (an aiohttp session, an httpx client, a libcurl multi handle) and a terminal's
gate belong to the event loop they were made on: their sockets, timers and futures are that
loop's. A module-level client outlives loops all the time (``asyncio.run`` per job, one loop
per test, Flask's and Django's ``async_to_sync``, one Starlette ``TestClient`` per test), and a
pool of a closed loop answers ``RuntimeError: Event loop is closed``, which is no fault of the
upstream.

So a terminal is bound to one loop at a time, the one it first sends on, and:

- when that loop shuts down (``asyncio.run``, ``asyncio.Runner``, anyio, asgiref and
  pytest-asyncio all call ``loop.shutdown_asyncgens()``), a sentinel async generator registered
  with it closes the backend there, gracefully, and the terminal is free for the next loop;
- a loop closed without that shutdown is found closed at the next request from another loop:
  the backend's sockets are released without it (:meth:`GatedTerminal._discard_backend`);
- while its loop is alive (running in another thread, or idle), a request from a second loop
  goes to a copy of the terminal bound to that loop (same settings and options, own backend
  and own gate: ``max_connections`` is per loop then).

The hot path pays one identity check (``_get_running_loop() is terminal._loop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import sys
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from .._log import get_logger
from .._slots import Slots

if TYPE_CHECKING:
    import httpx

    from .._result import Outcome
    from ._gated import GatedTerminal

__all__ = ["bind", "close_everywhere", "release_socket", "send_elsewhere"]

_log = get_logger("httprail.terminals")

# How long ``aclose`` waits for a loop running in another thread to close its copy's backend.
_CLOSE_ELSEWHERE_TIMEOUT = 5.0


async def send_elsewhere(terminal: GatedTerminal, request: httpx.Request) -> Outcome:
    """Send ``request`` from a loop ``terminal`` is not bound to (the slow path of ``send``)."""
    target = bind(terminal, asyncio.get_running_loop())
    return await target.send(request)


def bind(terminal: GatedTerminal, loop: asyncio.AbstractEventLoop) -> GatedTerminal:
    """The terminal to send with on ``loop``: ``terminal`` itself, bound to ``loop`` if it is
    free, or its copy for ``loop``."""
    with terminal._binding_lock:
        bound = terminal._loop
        if bound is loop:  # pragma: no cover - another thread bound it meanwhile
            return terminal
        copies = terminal._copies
        found = copies.get(loop)
        if found is not None:
            return found
        _prune(terminal)
        if bound is not None and bound.is_closed():
            _discard(terminal)
            bound = None
        if bound is None:
            _attach(terminal, loop)
            return terminal
        clone = copy.copy(terminal)
        clone._copies = {}
        clone._parent = terminal
        clone._forget_backend()
        clone.__dict__.pop("_mock_detour", None)
        _attach(clone, loop)
        copies[loop] = clone
        return clone


async def close_everywhere(terminal: GatedTerminal) -> None:
    """Close ``terminal``'s backend and its copies' on every loop (``aclose``)."""
    here = asyncio.get_running_loop()
    with terminal._binding_lock:
        everyone = [terminal, *terminal._copies.values()]
        terminal._copies.clear()
    for each in everyone:
        each._closed = True
        bound = each._loop
        if bound is None or bound is here:
            _unbind(each)
            await each._close_backend()
            await _close_detour(each)
        elif bound.is_running():  # in another thread: that loop closes it
            _unbind(each)
            future = asyncio.run_coroutine_threadsafe(each._close_backend(), bound)
            try:
                await asyncio.wait_for(asyncio.wrap_future(future), _CLOSE_ELSEWHERE_TIMEOUT)
            except (TimeoutError, RuntimeError):  # pragma: no cover - that loop stopped
                each._discard_backend()
        elif bound.is_closed():
            _discard(each)
        else:  # idle: closed there when it runs again
            _unbind(each)
            closing = copy.copy(each)
            each._forget_backend()
            bound.call_soon_threadsafe(_close_later, closing)


def release_socket(transport: object) -> None:
    """Close the socket of an asyncio transport whose loop is closed.

    ``transport.close()`` needs the loop (it schedules the socket's close there), so the socket
    is closed here and the transport marked closed, as its own close would leave it: no fd is
    kept and no ``ResourceWarning`` is given when it is collected. An SSL transport closes the
    transport under it. Anything else is left alone.
    """
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    if inner is not None:
        release_socket(inner)
        if getattr(transport, "_closed", None) is False:
            transport._closed = True  # type: ignore[attr-defined]
    sock = getattr(transport, "_sock", None)
    if isinstance(sock, socket.socket):
        sock.close()
        transport._sock = None  # type: ignore[attr-defined]


def _close_later(terminal: GatedTerminal) -> None:
    task = asyncio.ensure_future(terminal._close_backend())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_closing: set[asyncio.Future[None]] = set()


async def _close_detour(terminal: GatedTerminal) -> None:
    """Close the httpx clients a lean terminal sent through while a test mocked httpx."""
    detour = terminal.__dict__.pop("_mock_detour", None)
    if detour is not None:
        await detour.aclose()


def _attach(terminal: GatedTerminal, loop: asyncio.AbstractEventLoop) -> None:
    terminal._gate = Slots(terminal._gate.limit)
    terminal._loop = loop
    if sys.get_asyncgen_hooks().firstiter is None:  # pragma: no cover - a loop without hooks
        return  # nothing would close the sentinel: the pool is released at the next bind
    terminal._sentinel = sentinel = _until_shutdown(terminal, loop)
    with contextlib.suppress(StopIteration):  # runs it to its yield: registered with ``loop``
        sentinel.asend(None).send(None)


def _unbind(terminal: GatedTerminal) -> None:
    """Forget the terminal's loop and end its sentinel (whose clean-up then does nothing)."""
    terminal._loop = None
    sentinel, terminal._sentinel = terminal._sentinel, None
    if sentinel is not None:
        with contextlib.suppress(StopIteration, RuntimeError):
            sentinel.aclose().send(None)


def _discard(terminal: GatedTerminal) -> None:
    """Release the backend of a loop that will not run it again (closed), without that loop."""
    _unbind(terminal)
    terminal._discard_backend()


def _prune(terminal: GatedTerminal) -> None:
    """Drop the copies whose loops are closed (called with the binding lock held)."""
    copies = terminal._copies
    for loop in [loop for loop in copies if loop.is_closed()]:
        _discard(copies.pop(loop))


async def _until_shutdown(
    terminal: GatedTerminal, loop: asyncio.AbstractEventLoop
) -> AsyncGenerator[None, None]:
    """Suspended until ``loop.shutdown_asyncgens()`` closes it; then closes the backend."""
    try:
        yield
    finally:
        if terminal._loop is loop:
            await _loop_ended(terminal, loop)


async def _loop_ended(terminal: GatedTerminal, loop: asyncio.AbstractEventLoop) -> None:
    terminal._sentinel = None  # being closed: nothing to end
    try:
        await terminal._close_backend()
        await _close_detour(terminal)
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - a loop's shutdown must not fail
        _log.warning("httprail.terminal_close_failed", exc_info=exc)
    finally:
        parent = terminal._parent
        with terminal._binding_lock:  # a copy shares its parent's (``copy.copy`` in bind)
            if terminal._loop is loop:
                terminal._loop = None
            if parent is not None and parent._copies.get(loop) is terminal:
                del parent._copies[loop]
