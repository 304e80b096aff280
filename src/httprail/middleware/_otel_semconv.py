"""The stable HTTP client semantic conventions, as attribute dicts built from httprail's values.

No OpenTelemetry import: these are plain dicts of ``str``/``int`` that the ``OpenTelemetry``
stage hands to spans and instruments. No URL is among them: the stage adds ``url.full`` itself,
redacted by the project's one rule (:func:`httprail._redact.redact_url`).
"""

from __future__ import annotations

from typing import Any

import httpx
from returns.result import Success

from .._errors import MaxRetriesExceededError, RequestError, StatusError
from .._redact import redact_text
from .._result import Outcome

__all__ = [
    "DURATION_BUCKETS",
    "client_attributes",
    "error_type",
    "outcome_attributes",
    "peer_attributes",
    "span_name",
    "status_description",
]

# The advisory bucket boundaries of ``http.client.request.duration`` (semconv, seconds).
DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip

_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PROTOCOLS = {"HTTP/1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/2": "2", "HTTP/3": "3"}


def span_name(method: str) -> str:
    """The span's name: the method, or ``HTTP`` for one the conventions do not know."""
    return method if method in _KNOWN_METHODS else "HTTP"


def client_attributes(request: httpx.Request) -> dict[str, Any]:
    """``http.request.method``, ``server.address``, ``server.port`` and ``url.scheme``: what a
    span and the ``http.client.*`` instruments share (low cardinality, no URL)."""
    method = request.method
    url = request.url
    scheme = url.scheme
    port = url.port or _DEFAULT_PORTS.get(scheme)
    attributes: dict[str, Any] = {
        "http.request.method": method if method in _KNOWN_METHODS else "_OTHER",
        "server.address": url.host,
        "url.scheme": scheme,
    }
    if port is not None:
        attributes["server.port"] = port
    if method not in _KNOWN_METHODS:
        attributes["http.request.method_original"] = method
    return attributes


def error_type(error: RequestError) -> str:
    """``error.type``: the status code of an error status (as the conventions say), else the
    error's class name."""
    if isinstance(error, StatusError):
        return str(error.status_code)
    return type(error).__name__


def outcome_attributes(outcome: Outcome) -> dict[str, Any]:
    """``http.response.status_code``, ``error.type`` and ``network.protocol.version`` of an
    outcome (the last attempt's status for ``MaxRetriesExceededError``)."""
    attributes: dict[str, Any] = {}
    response: httpx.Response | None
    if type(outcome) is Success:
        response = outcome.unwrap()
        if response.status_code >= 400:
            attributes["error.type"] = str(response.status_code)
    else:
        error = outcome.failure()
        attributes["error.type"] = error_type(error)
        if isinstance(error, MaxRetriesExceededError):
            error = error.attempts[-1]
        response = error.response if isinstance(error, StatusError) else None
    if response is not None:
        attributes["http.response.status_code"] = response.status_code
        version = response.extensions.get("http_version")
        if version is not None:
            text = version.decode("ascii", "replace") if isinstance(version, bytes) else version
            protocol = _PROTOCOLS.get(text)
            if protocol is not None:
                attributes["network.protocol.version"] = protocol
    return attributes


def peer_attributes(outcome: Outcome) -> dict[str, Any]:
    """``network.peer.address`` and ``network.peer.port`` of the connection that answered,
    when the terminal exposes it (httpx's ``network_stream``; aiohttp and curl do not)."""
    if type(outcome) is Success:
        response: httpx.Response | None = outcome.unwrap()
    else:
        error = outcome.failure()
        response = error.response if isinstance(error, StatusError) else None
    stream = None if response is None else response.extensions.get("network_stream")
    if stream is None:
        return {}
    try:
        address = stream.get_extra_info("server_addr")
    except Exception:  # noqa: BLE001 - a stream that cannot say is the same as none
        return {}
    if not isinstance(address, tuple) or len(address) < 2:
        return {}
    return {"network.peer.address": str(address[0]), "network.peer.port": int(address[1])}


def status_description(outcome: Outcome, request: httpx.Request) -> str | None:
    """The span status' description for a failed outcome (redacted), else ``None``."""
    if type(outcome) is Success:
        return None
    return redact_text(str(outcome.failure()), request)
