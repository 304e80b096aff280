"""Cancelling requests on the reqwest terminal: the caller sees the cancel, the slot and the
connection are given back (reqwest drops a request whose future is dropped)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from httprail import AsyncClient, HttpSettings, Success
from httprail.terminals import PyreqwestTerminal
from httprail.testing import ChaosServer, Reply

from ._terminals import cancelled_after

pytest.importorskip("pyreqwest")


async def wait_for(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:  # type: ignore[operator]  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def test_cancelling_1000_queued_and_in_flight_requests_frees_every_slot(
    chaos_server: ChaosServer,
) -> None:
    """100 requests waiting for a body in flight and 900 queued, all cancelled: the gate is
    empty at once, the next request is answered, and every connection the server saw is closed
    by reqwest's read timeout (2 + 0.5 s: pyreqwest abandons a request in its read-ahead; a
    shorter one let requests time out, be retried and open the breaker on a loaded machine
    before they were cancelled)."""
    chaos_server.script("/hang", Reply.sse(["one", "two"], event_delay=60.0))
    settings = HttpSettings(max_connections=100, timeout_read=2.0, timeout_connect=0.5)
    terminal = PyreqwestTerminal(settings)
    async with AsyncClient(chaos_server.url, settings=settings, terminal=terminal) as client:
        tasks = [asyncio.create_task(client.get("/hang")) for _ in range(1000)]
        await wait_for(lambda: chaos_server.count("/hang") == 100)
        assert chaos_server.count("/hang") == 100
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(result, asyncio.CancelledError) for result in results)
        assert terminal._gate.active == 0
        assert not terminal._gate.waiters
        assert isinstance(await client.get("/ok"), Success)
        ids = {seen.connection_id for seen in chaos_server.requests_for("/hang")}
        await wait_for(lambda: all(chaos_server.closed_at(i) is not None for i in ids), 10.0)
        assert all(chaos_server.closed_at(i) is not None for i in ids)


async def test_a_cancel_at_any_await_of_a_request_leaks_no_slot(chaos_server: ChaosServer) -> None:
    """Cancel a request after 0, 1, 2, … event-loop turns; with two slots, a leaked one would
    leave the next requests waiting for the pool timeout."""
    settings = HttpSettings(max_connections=2, max_keepalive=0, timeout_pool=1.0)
    terminal = PyreqwestTerminal(settings)
    landed = 0
    async with AsyncClient(chaos_server.url, settings=settings, terminal=terminal) as client:
        for turns in range(40):
            if not await cancelled_after(client, turns):
                continue
            landed += 1
            assert terminal._gate.active == 0, turns
            outcomes = await asyncio.gather(*(client.get("/ok") for _ in range(2)))
            assert all(isinstance(outcome, Success) for outcome in outcomes), (turns, outcomes)
    assert landed >= 3  # the loop reached the request's awaits, not just its end


async def test_a_request_cancelled_before_its_head_lets_go_of_its_connection_by_the_timeout() -> (
    None
):
    """pyreqwest abandons, not aborts, a request cancelled before its head: reqwest's read
    timeout (``timeout_read + timeout_connect``) ends it, and its connection closes then."""
    closed: list[float] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # never answers; b"" once the client closes
        closed.append(time.monotonic())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    terminal = PyreqwestTerminal(HttpSettings(timeout_read=0.3, timeout_connect=0.2))
    try:
        task = asyncio.create_task(terminal.send(httpx.Request("GET", url)))
        await asyncio.sleep(0.1)
        cancelled = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert terminal._gate.active == 0  # the slot is free at once
        await wait_for(lambda: closed)
        assert closed
        assert closed[0] - cancelled < 0.4 + 0.5  # the read timeout's end, give or take
    finally:
        await terminal.aclose()
        server.close()
        await server.wait_closed()
