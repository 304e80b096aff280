"""The terminals every conformance-style test plays its case against, by name."""

from __future__ import annotations

from typing import Any

from httprail import HttpSettings
from httprail._pipeline import TerminalPlugin
from httprail.terminals import AiohttpTerminal, CurlTerminal, HttpxTerminal, PyreqwestTerminal

TERMINALS: dict[str, type[AiohttpTerminal | HttpxTerminal | CurlTerminal | PyreqwestTerminal]] = {
    "httpx": HttpxTerminal,
    "aiohttp": AiohttpTerminal,
    "curl": CurlTerminal,
    "reqwest": PyreqwestTerminal,
}
KINDS = list(TERMINALS)


def build(kind: str, settings: HttpSettings | None = None, **options: Any) -> TerminalPlugin:
    """A terminal of ``kind`` (a key of ``TERMINALS``) with ``settings``."""
    terminal: TerminalPlugin = TERMINALS[kind](settings, **options)
    return terminal
