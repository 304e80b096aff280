"""Terminals: what finally sends a request.

``AiohttpTerminal`` (HTTP/1.1) is the default; ``HttpxTerminal`` speaks HTTP/2 (what
``HttpSettings(http2=True)`` picks) and copes with servers that rotate connections;
``CurlTerminal`` is libcurl's; ``PyreqwestTerminal`` is Rust's reqwest (HTTP/1.1, HTTP/2).
See ``docs/terminals.md``.
"""

from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from ._aiohttp import AiohttpTerminal
from ._curl import CurlTerminal
from ._httpx import HttpxTerminal, read_capped
from ._mapping import map_exception
from ._multi import Backend, BackendHealth, BackendSpec, BackendState, MultiTerminal, Strategy
from ._reqwest import PyreqwestTerminal
from ._transport import (
    IDEMPOTENCY_HEADER,
    SDK_RETRY_STATUSES,
    PipelineTransport,
    StreamPolicy,
    TransportOptions,
    response_of,
    to_httpx_exception,
)

if TYPE_CHECKING:
    from ._httpx2 import Httpx2PipelineTransport, to_httpx2_exception

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SDK_RETRY_STATUSES",
    "AiohttpTerminal",
    "Backend",
    "BackendHealth",
    "BackendSpec",
    "BackendState",
    "CurlTerminal",
    "Httpx2PipelineTransport",
    "HttpxTerminal",
    "MultiTerminal",
    "PipelineTransport",
    "PyreqwestTerminal",
    "Strategy",
    "StreamPolicy",
    "TransportOptions",
    "map_exception",
    "read_capped",
    "response_of",
    "to_httpx2_exception",
    "to_httpx_exception",
]

# httpx2 is optional: its names are imported on first use (see _httpx2.py).
_HTTPX2_NAMES = ("Httpx2PipelineTransport", "to_httpx2_exception")
if find_spec("httpx2") is None:  # pragma: no cover - httpx2 is installed for the tests
    __all__ = [name for name in __all__ if name not in _HTTPX2_NAMES]


def __getattr__(name: str) -> Any:
    if name in _HTTPX2_NAMES:
        from . import _httpx2

        return getattr(_httpx2, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
