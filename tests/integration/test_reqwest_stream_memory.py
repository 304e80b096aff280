"""Streamed bodies free their backend's buffers when closed, not at the cyclic GC's next pass.

A streamed ``httpx.Response`` held its gated stream, which pointed back at it: each closed
response was cyclic garbage, and with the reqwest terminal it kept pyreqwest's response and
its read buffers (~0.4 MiB per 1 MB body) until the GC came by: 28 MiB of peak RSS over 100
streamed 1 MB bodies in ``benchmarks/scaling.py``. The cyclic GC is off while these tests
stream, so anything a cycle keeps is still there when they count.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from httprail import AsyncClient, HttpSettings
from httprail.terminals import AiohttpTerminal, PyreqwestTerminal
from httprail.testing import ChaosServer, Reply

pytest.importorskip("pyreqwest")

BODY = b"x" * 1_000_000
STREAMS = 40
TERMINALS = {"reqwest": PyreqwestTerminal, "aiohttp": AiohttpTerminal}


def live(kind: type) -> int:
    """How many objects of exactly ``kind`` the GC tracks now (alive or cyclic garbage)."""
    return sum(1 for item in gc.get_objects() if type(item) is kind)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")  # pragma: no cover - Linux has one


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


async def stream_once(client: AsyncClient, url: str) -> int:
    size = 0
    async with client.stream("GET", url) as outcome:
        async for chunk in outcome.unwrap().aiter_bytes():
            size += len(chunk)
    return size


@pytest.mark.parametrize("name", sorted(TERMINALS))
async def test_closed_streamed_responses_are_freed_without_the_cyclic_gc(
    chaos_server: ChaosServer, no_cyclic_gc: None, name: str
) -> None:
    """40 streamed 1 MB responses, read and closed with the cyclic GC off, leave none alive."""
    from pyreqwest.response import Response as ReqwestResponse

    chaos_server.script("/big", Reply(body=BODY))
    url = chaos_server.url_for("/big")
    settings = HttpSettings()
    async with AsyncClient(terminal=TERMINALS[name](settings), settings=settings) as client:
        assert await stream_once(client, url) == len(BODY)  # the connection is made
        before = {kind: live(kind) for kind in (httpx.Response, ReqwestResponse)}
        for _ in range(STREAMS):
            assert await stream_once(client, url) == len(BODY)
        left = {kind.__module__: live(kind) - count for kind, count in before.items()}
    assert left == {"httpx": 0, "pyreqwest.response": 0}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS (Linux)")
async def test_streaming_many_bodies_through_reqwest_keeps_rss_flat(
    chaos_server: ChaosServer, no_cyclic_gc: None
) -> None:
    """40 streamed 1 MB bodies grow RSS by under 8 MiB (each kept ~0.4 MiB before: 16 MiB)."""
    chaos_server.script("/big", Reply(body=BODY))
    url = chaos_server.url_for("/big")
    settings = HttpSettings()
    async with AsyncClient(terminal=PyreqwestTerminal(settings), settings=settings) as client:
        for _ in range(3):  # the connection, pyreqwest's runtime and its allocator warmed up
            await stream_once(client, url)
        start = rss_mib()
        for _ in range(STREAMS):
            await stream_once(client, url)
        grown = rss_mib() - start
    assert grown < 8.0, f"RSS grew {grown:.1f} MiB over {STREAMS} streamed 1 MB bodies"


@pytest.mark.parametrize("cap", [None, 1_000_000])
async def test_a_closed_reqwest_body_lets_its_response_go_and_refuses_reads(
    chaos_server: ChaosServer, cap: int | None
) -> None:
    """Once closed (twice is fine), a body capped or not refuses to be read: ``StreamClosed``."""
    chaos_server.script("/small", Reply(body=b"abc"))
    settings = HttpSettings(max_body_bytes=cap)
    async with AsyncClient(terminal=PyreqwestTerminal(settings), settings=settings) as client:
        async with client.stream("GET", chaos_server.url_for("/small")) as outcome:
            response = outcome.unwrap()
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        await stream.aclose()  # a second close does nothing
        with pytest.raises(httpx.StreamClosed):
            async for _ in stream:
                pass  # pragma: no cover - never reached
