"""httpx objects for the default path, built without httpx's argument normalisation.

Every request and response the pipeline handles is an ``httpx.Request`` / ``httpx.Response``.
Their constructors parse and normalise every argument (each header name and value is
type-checked, encoded and lowered one by one; a request runs its body encoder and rebuilds its
headers twice): on a small request that is a third of what a raw aiohttp call costs. Where
the inputs are already in httpx's own form (an ``httpx.URL``, ``httpx.Headers``, aiohttp's raw
byte-pair headers), the functions here set the same attributes directly.

At import, each fast constructor is checked once against httpx's own for the attributes it
sets; should a future httpx keep different ones, the module quietly uses httpx's constructors
(``FAST`` says which). ``tests/unit/test_fast.py`` compares both on many inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

__all__ = ["FAST", "bodiless_request", "response"]

_NO_BODY = httpx.ByteStream(b"")


def _slow_request(method: str, url: httpx.URL, headers: httpx.Headers) -> httpx.Request:
    raw = headers.raw
    if "host" not in headers:
        raw = [(b"Host", url.netloc), *raw]
    request = httpx.Request(method, url, headers=raw, stream=_NO_BODY)
    request.read()
    return request


def _fast_request(method: str, url: httpx.URL, headers: httpx.Headers) -> httpx.Request:
    items = headers._list
    if "host" not in headers:
        netloc = url.netloc
        items = [(b"Host", b"host", netloc), *items]
    copied = object.__new__(httpx.Headers)
    copied._list = list(items)
    copied._encoding = None
    request = object.__new__(httpx.Request)
    request.method = method.upper()
    request.url = url
    request.headers = copied
    request.extensions = {}
    request.stream = _NO_BODY
    request._content = b""
    return request


def _slow_response(
    status: int,
    raw: Sequence[tuple[bytes, bytes]],
    stream: httpx.AsyncByteStream,
    request: httpx.Request,
    extensions: dict[str, Any],
) -> httpx.Response:
    return httpx.Response(
        status, headers=raw, stream=stream, request=request, extensions=extensions
    )


def _fast_response(
    status: int,
    raw: Sequence[tuple[bytes, bytes]],
    stream: httpx.AsyncByteStream,
    request: httpx.Request,
    extensions: dict[str, Any],
) -> httpx.Response:
    headers = object.__new__(httpx.Headers)
    headers._list = [(name, name.lower(), value) for name, value in raw]
    headers._encoding = None
    response = object.__new__(httpx.Response)
    response.status_code = status
    response.headers = headers
    response._request = request
    response.next_request = None
    response.extensions = extensions
    response.history = []
    response.is_closed = False
    response.is_stream_consumed = False
    response.default_encoding = "utf-8"
    response.stream = stream
    response._num_bytes_downloaded = 0
    return response


def _state(value: Any) -> Mapping[str, Any]:
    """What a request or response holds, with headers as their raw triples."""
    fields = dict(vars(value))
    for name, item in fields.items():
        if isinstance(item, httpx.Headers):
            fields[name] = (tuple(item._list), item._encoding)
    return fields


def _agrees() -> bool:
    """Do the fast constructors set exactly what httpx's set, on a sample?"""
    try:
        url = httpx.URL("http://example.test:8080/p?q=1")
        headers = httpx.Headers([("X-A", "1"), ("x-a", "2"), ("Accept", "*/*")])
        slow_req = _slow_request("get", url, headers)
        fast_req = _fast_request("get", url, headers)
        if _state(slow_req) != _state(fast_req):
            return False
        raw = [(b"Content-Type", b"application/json"), (b"X-B", b"\xe9")]
        stream = httpx.ByteStream(b"{}")
        slow = _slow_response(200, raw, stream, slow_req, {"k": 1})
        fast = _fast_response(200, raw, stream, slow_req, {"k": 1})
        return _state(slow) == _state(fast)
    except Exception:  # noqa: BLE001 - any difference in httpx's internals: use its constructors
        return False


FAST = _agrees()

bodiless_request = _fast_request if FAST else _slow_request
"""``httpx.Request(method, url, headers=...)`` for a request without a body (``url`` and
``headers`` already httpx's; the ``Host`` header first, as httpx adds it)."""

response = _fast_response if FAST else _slow_response
"""``httpx.Response(status, headers=raw, stream=..., request=..., extensions=...)``, with
``raw`` as byte pairs; ``extensions`` is kept, not copied."""
