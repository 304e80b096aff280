"""The body bytes aiohttp holds when its connection broke (``_aiohttp._arrived``)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from httprail.terminals._aiohttp import _arrived


def _reader() -> aiohttp.StreamReader:
    protocol: Any = SimpleNamespace(_reading_paused=False, resume_reading=lambda: None)
    return aiohttp.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())


async def test_bytes_fed_before_the_error_are_handed_out_once() -> None:
    reader = _reader()
    reader.feed_data(b"data: a\n")
    reader.feed_data(b"data: b\n")
    reader.set_exception(aiohttp.ClientPayloadError("cut"))
    with pytest.raises(aiohttp.ClientPayloadError):
        await reader.readany()  # aiohttp's own read raises first, the bytes still held
    assert _arrived(reader) == b"data: a\ndata: b\n"
    assert _arrived(reader) == b""


async def test_nothing_held_is_nothing_handed_out() -> None:
    reader = _reader()
    reader.set_exception(aiohttp.ClientPayloadError("cut"))
    assert _arrived(reader) == b""


def test_a_reader_kept_differently_gives_nothing_and_the_error_stands() -> None:
    def broken(_n: int) -> bytes:
        raise RuntimeError("not aiohttp's reader")

    assert _arrived(SimpleNamespace(_buffer=[b"x"], _read_nowait=broken)) == b""  # type: ignore[arg-type]
    assert _arrived(SimpleNamespace(_buffer=[b"x"], _read_nowait=lambda _n: "x")) == b""  # type: ignore[arg-type]
    assert _arrived(SimpleNamespace()) == b""  # type: ignore[arg-type]
