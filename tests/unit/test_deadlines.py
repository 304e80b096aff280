"""The deadline queue behind ``Timeout`` and ``AiohttpTerminal``'s read timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

from httprail._deadlines import DeadlineQueue


async def _sleeper() -> None:
    await asyncio.sleep(10)


async def test_refuses_an_earlier_deadline_and_a_task_watched_already() -> None:
    queue = DeadlineQueue(asyncio.get_running_loop())
    first, second = asyncio.create_task(_sleeper()), asyncio.create_task(_sleeper())
    now = time.monotonic()
    assert queue.add(first, now + 5)
    assert not queue.add(first, now + 6)  # watched already
    assert not queue.add(second, now + 4)  # out of order
    assert queue.add(second, now + 5)  # equal is in order
    assert first in queue
    assert second in queue
    assert not queue.finish(first)
    assert not queue.finish(second)
    assert first not in queue
    assert not queue.finish(first)
    for task in (first, second):
        task.cancel()
    await asyncio.gather(first, second, return_exceptions=True)


async def test_expired_tasks_are_cancelled_oldest_first_and_later_ones_kept() -> None:
    queue = DeadlineQueue(asyncio.get_running_loop())
    order: list[str] = []

    async def watched(name: str) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            order.append(name)
            raise

    tasks = {name: asyncio.create_task(watched(name)) for name in ("a", "b", "late")}
    await asyncio.sleep(0)
    now = time.monotonic()
    queue.add(tasks["a"], now + 0.01)
    queue.add(tasks["b"], now + 0.01)
    queue.add(tasks["late"], now + 10)
    for name in ("a", "b"):
        with pytest.raises(asyncio.CancelledError):
            await tasks[name]
    assert order == ["a", "b"]
    assert queue.finish(tasks["a"])
    assert queue.finish(tasks["b"])
    assert not queue.finish(tasks["a"])  # and only once
    assert not tasks["late"].done()
    assert tasks["late"] in queue
    assert not queue.finish(tasks["late"])
    tasks["late"].cancel()
    await asyncio.gather(tasks["late"], return_exceptions=True)


async def test_the_timer_moves_on_to_the_next_live_deadline() -> None:
    queue = DeadlineQueue(asyncio.get_running_loop())
    early, later = asyncio.create_task(_sleeper()), asyncio.create_task(_sleeper())
    now = time.monotonic()
    queue.add(early, now + 0.01)
    queue.add(later, now + 0.03)
    queue.finish(early)  # done before its deadline: the timer still fires then, and re-arms
    with pytest.raises(asyncio.CancelledError):
        await later
    assert time.monotonic() - now >= 0.03
    assert queue.finish(later)
    early.cancel()
    await asyncio.gather(early, return_exceptions=True)
