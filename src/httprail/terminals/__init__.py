"""Terminals: what finally sends a request. ``HttpxTerminal`` is the default."""

from ._aiohttp import AiohttpTerminal
from ._curl import CurlTerminal
from ._httpx import HttpxTerminal, read_capped
from ._mapping import map_exception
from ._multi import Backend, BackendHealth, BackendSpec, BackendState, MultiTerminal, Strategy
from ._transport import (
    IDEMPOTENCY_HEADER,
    PipelineTransport,
    StreamPolicy,
    response_of,
    to_httpx_exception,
)

__all__ = [
    "IDEMPOTENCY_HEADER",
    "AiohttpTerminal",
    "Backend",
    "BackendHealth",
    "BackendSpec",
    "BackendState",
    "CurlTerminal",
    "HttpxTerminal",
    "MultiTerminal",
    "PipelineTransport",
    "Strategy",
    "StreamPolicy",
    "map_exception",
    "read_capped",
    "response_of",
    "to_httpx_exception",
]
