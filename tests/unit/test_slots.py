"""The FIFO slot gate in front of every terminal."""

from __future__ import annotations

import asyncio

import pytest

from httprail._slots import Slots


async def test_free_slots_are_taken_at_once_and_the_rest_wait_in_order() -> None:
    slots = Slots(2)
    assert slots.try_take()
    await slots.take()  # the second one, without waiting
    assert not slots.try_take()
    served: list[int] = []

    async def waiter(number: int) -> None:
        await slots.take()
        served.append(number)

    tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert len(slots.waiters) == 3
    slots.give()
    await asyncio.sleep(0)
    assert not slots.try_take()  # a newcomer does not overtake the queue
    slots.give()
    slots.give()
    await asyncio.gather(*tasks)
    assert served == [0, 1, 2]
    assert slots.active == 2
    for _ in range(2):
        slots.give()
    assert slots.active == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_loses_no_slot() -> None:
    slots = Slots(1)
    assert slots.try_take()
    first = asyncio.create_task(slots.take())
    second = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(slots.waiters) == 1
    slots.give()
    await second  # the slot went to the one still waiting
    slots.give()
    assert slots.active == 0


async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    slots = Slots(1)
    assert slots.try_take()
    first = asyncio.create_task(slots.take())
    second = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    slots.give()  # handed to ``first``, which has not run yet...
    first.cancel()  # ...and is cancelled before it does
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert slots.active == 1
    slots.give()
    assert slots.active == 0


async def test_a_waiter_dropped_by_give_before_it_runs_is_not_removed_twice() -> None:
    slots = Slots(1)
    assert slots.try_take()
    waiting = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    waiting.cancel()  # its future is cancelled at once...
    slots.give()  # ...so give() drops it and frees the slot
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots.active == 0
    assert not slots.waiters
