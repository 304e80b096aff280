"""The terminals every conformance-style test plays its case against, by name."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from httprail import AsyncClient, HttpSettings, Success
from httprail._pipeline import TerminalPlugin
from httprail.terminals import AiohttpTerminal, CurlTerminal, HttpxTerminal, PyreqwestTerminal


class AiohttpSessionRoad(AiohttpTerminal):
    """``AiohttpTerminal`` kept on aiohttp's session road (``ClientSession.request``), the
    road its requests take where the short one (``DirectRoad``) would not do the same: every
    case must hold on both."""

    name = "aiohttp-session"
    _short_road = False


TERMINALS: dict[str, type[AiohttpTerminal | HttpxTerminal | CurlTerminal | PyreqwestTerminal]] = {
    "httpx": HttpxTerminal,
    "aiohttp": AiohttpTerminal,
    "aiohttp-session": AiohttpSessionRoad,
    "curl": CurlTerminal,
    "reqwest": PyreqwestTerminal,
}
KINDS = list(TERMINALS)


def build(kind: str, settings: HttpSettings | None = None, **options: Any) -> TerminalPlugin:
    """A terminal of ``kind`` (a key of ``TERMINALS``) with ``settings``."""
    terminal: TerminalPlugin = TERMINALS[kind](settings, **options)
    return terminal


async def cancelled_after(client: AsyncClient, turns: int) -> bool:
    """Start ``client.get("/ok")``, let it run ``turns`` event-loop turns, then cancel it.

    ``True`` when the cancel landed (and propagated as ``CancelledError``); ``False`` when the
    request had already finished (successfully: anything else fails the test)."""
    task = asyncio.create_task(client.get("/ok", params={"turns": turns}))
    for _ in range(turns):
        await asyncio.sleep(0)
    if task.done():
        assert isinstance(task.result(), Success), task.result()
        return False
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return True
