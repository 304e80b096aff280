"""Deadlines that arrive in increasing order, watched by one loop timer for all of them.

Arming an ``asyncio.timeout`` per request costs a timer handle pushed on the loop's heap and
cancelled again (~10 µs here, more while the heap holds many cancelled handles). When every
deadline is "now + the same budget" they arrive in order: a dict of task → deadline keeps that
order (insertion order), and one loop timer, armed for the oldest live deadline, watches them
all. Adding and finishing cost a dict insert and a dict pop; at expiry the task is cancelled, as
``asyncio.timeout`` does, and its owner turns that into its own error.

Used by the ``Timeout`` stage and by ``AiohttpTerminal``'s read timeout. Deadlines are
``time.monotonic()`` values; the timer is armed with a relative delay, so any event loop works.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

__all__ = ["DeadlineQueue", "current_task_of"]

_clock = time.monotonic

try:  # Python 3.11's ``asyncio.current_task`` is Python code around this dict (~1k instructions)
    from _asyncio import _current_tasks as _CURRENT_TASKS  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - another Python or a pure-Python asyncio
    _CURRENT_TASKS = None


def _current_task_of(loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
    return asyncio.current_task(loop)  # pragma: no cover - see _CURRENT_TASKS


current_task_of: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = (
    _current_task_of if _CURRENT_TASKS is None else _CURRENT_TASKS.get
)
"""``asyncio.current_task(loop)`` for the running ``loop``, without its Python frame."""


class DeadlineQueue:
    """Tasks watched until their deadlines, which must not decrease, by one timer on ``loop``.

    A task is in the queue at most once: :meth:`add` refuses a task already watched, and a
    deadline earlier than the newest one (the caller then uses a timer of its own).
    """

    __slots__ = ("_deadlines", "_expired", "_handle", "_newest", "loop", "watched")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._deadlines: dict[asyncio.Task[Any], float] = {}  # oldest deadline first
        self.watched = self._deadlines
        """Each watched task and its deadline (read only: a hot path may test or pop a task
        there first, and call :meth:`finish` only when it was not found)."""
        self._expired: set[asyncio.Task[Any]] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._newest = -math.inf

    def __contains__(self, task: object) -> bool:
        return task in self._deadlines

    def add(self, task: asyncio.Task[Any], deadline: float) -> bool:
        """Watch ``task`` until ``deadline`` (a ``time.monotonic()`` value); ``False`` (and not
        watched) if the deadline is earlier than the newest one or the task is watched already."""
        deadlines = self._deadlines
        if deadline < self._newest or task in deadlines:
            return False
        self._newest = deadline
        deadlines[task] = deadline
        if self._handle is None:
            self._handle = self.loop.call_later(deadline - _clock(), self._fire)
        return True

    def finish(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching ``task``; whether its deadline passed (it was cancelled for it)."""
        if self._deadlines.pop(task, None) is not None:
            return False
        expired = self._expired
        if task in expired:
            expired.discard(task)
            return True
        return False

    def _fire(self) -> None:
        self._handle = None
        now = _clock()
        deadlines = self._deadlines
        due = []
        for task, deadline in deadlines.items():
            if deadline > now:
                self._handle = self.loop.call_later(deadline - now, self._fire)
                break
            due.append(task)
        for task in due:
            del deadlines[task]
            self._expired.add(task)
            task.cancel()
