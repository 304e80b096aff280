"""httpx objects for the default path, built without httpx's argument normalisation.

Every request and response the pipeline handles is an ``httpx.Request`` / ``httpx.Response``.
Their constructors parse and normalise every argument (each header name and value is
type-checked, encoded and lowered one by one; a request runs its body encoder and rebuilds its
headers twice; reading a body runs a chain of decoding generators): on a small request that
is a third of what a raw aiohttp call costs. Where the inputs are already in httpx's own form
(an ``httpx.URL``, ``httpx.Headers``, aiohttp's raw byte-pair headers, a body with nothing to
decode), the functions here set the same attributes directly.

At import, each fast constructor is checked once against httpx's own for the attributes it
sets; should a future httpx keep different ones, the module quietly uses httpx's constructors
(``FAST`` says which). ``tests/unit/test_fast.py`` compares both on many inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from httpx import _decoders  # httpx's table of the content encodings it decodes

__all__ = [
    "FAST",
    "bodiless_request",
    "header_items",
    "httpx_decoder",
    "keep_decoded",
    "read_plain",
    "request_again",
    "response",
    "response_of",
    "use_decoder",
]

_NO_BODY = httpx.ByteStream(b"")


def _slow_request(method: str, url: httpx.URL, headers: httpx.Headers) -> httpx.Request:
    raw = headers.raw
    if "host" not in headers:
        raw = [(b"Host", url.netloc), *raw]
    request = httpx.Request(method, url, headers=raw, stream=_NO_BODY)
    request.read()
    return request


def _headers(items: list[tuple[bytes, bytes, bytes]]) -> httpx.Headers:
    """``httpx.Headers`` holding ``items`` (raw name, lowered name, value) as they are."""
    headers = object.__new__(httpx.Headers)
    headers._list = items
    headers._encoding = None
    return headers


# The last URL whose ``netloc`` was computed, and that netloc: most calls go to one URL object
# (the client hands out one ``httpx.URL`` per distinct URL string).
_last_netloc: list[tuple[httpx.URL | None, bytes]] = [(None, b"")]


def _fast_request(method: str, url: httpx.URL, headers: httpx.Headers) -> httpx.Request:
    items = headers._list
    for _, lowered, _ in items:  # ``"host" in headers`` re-encodes every name to compare
        if lowered == b"host":
            break
    else:
        last = _last_netloc[0]
        if last[0] is url:
            netloc = last[1]
        else:
            netloc = url.netloc
            _last_netloc[0] = (url, netloc)
        items = [(b"Host", b"host", netloc), *items]
    request = object.__new__(httpx.Request)
    request.method = method.upper()
    request.url = url
    request.headers = _headers(list(items))
    request.extensions = {}
    request.stream = _NO_BODY
    request._content = b""
    return request


def _slow_again(
    method: str, url: httpx.URL, items: list[tuple[bytes, bytes, bytes]], extensions: dict[str, Any]
) -> httpx.Request:
    request = httpx.Request(
        method, url, headers=[(name, value) for name, _, value in items], stream=_NO_BODY
    )
    request.read()
    request.extensions = extensions
    return request


def _fast_again(
    method: str, url: httpx.URL, items: list[tuple[bytes, bytes, bytes]], extensions: dict[str, Any]
) -> httpx.Request:
    request = object.__new__(httpx.Request)
    request.method = method
    request.url = url
    headers = object.__new__(httpx.Headers)
    headers._list = items.copy()
    headers._encoding = None
    request.headers = headers
    request.extensions = extensions
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
    items = [(name, name.lower(), value) for name, value in raw]
    return _fast_response_of(status, items, stream, request, extensions, copy=False)


def _slow_response_of(
    status: int,
    items: list[tuple[bytes, bytes, bytes]],
    stream: httpx.AsyncByteStream,
    request: httpx.Request,
    extensions: dict[str, Any],
) -> httpx.Response:
    raw = [(name, value) for name, _, value in items]
    return _slow_response(status, raw, stream, request, extensions)


def _fast_response_of(
    status: int,
    items: list[tuple[bytes, bytes, bytes]],
    stream: httpx.AsyncByteStream,
    request: httpx.Request,
    extensions: dict[str, Any],
    *,
    copy: bool = True,
) -> httpx.Response:
    """The response httpx would build, set up field by field (``copy``: ``items`` is the
    caller's to keep, so the headers get a copy)."""
    response = object.__new__(httpx.Response)
    response.status_code = status
    response.headers = _headers(items.copy() if copy else items)
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


def _slow_header_items(headers: httpx.Headers) -> list[tuple[bytes, bytes, bytes]]:
    return [(name, name.lower(), value) for name, value in headers.raw]


def _fast_header_items(headers: httpx.Headers) -> list[tuple[bytes, bytes, bytes]]:
    items: list[tuple[bytes, bytes, bytes]] = headers._list
    return items


def _slow_read_plain(
    response: httpx.Response, body: bytes, kind: type[httpx.ByteStream] = httpx.ByteStream
) -> None:
    response.stream = kind(body)
    response.read()


def _fast_read_plain(
    response: httpx.Response, body: bytes, kind: type[httpx.ByteStream] = httpx.ByteStream
) -> None:
    # What ``read()`` leaves behind, without its chain of decoding generators (20 of the
    # ~25 µs it costs for a small body). ``kind``: the stream class the body is kept in.
    response.stream = kind(body)
    response._content = body
    response._num_bytes_downloaded = len(body)
    response.is_stream_consumed = True
    response.is_closed = True


def _state(value: Any) -> Mapping[str, Any]:
    """What a request or response holds, less what httpx computes lazily from the rest.

    Headers count by their items (their encoding is worked out from them when first asked
    for), byte streams by their bytes, and a response's content decoder, made when a body is
    first decoded, not at all.
    """
    fields = dict(vars(value))
    fields.pop("_decoder", None)
    for name, item in fields.items():
        if isinstance(item, httpx.Headers):
            fields[name] = tuple(item._list)
        elif isinstance(item, httpx.ByteStream):
            fields[name] = (httpx.ByteStream, b"".join(item))
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
        items = _fast_header_items(fast_req.headers)
        if _state(_slow_again("GET", url, items, {})) != _state(_fast_again("GET", url, items, {})):
            return False
        if _slow_header_items(headers) != _fast_header_items(headers):
            return False
        raw = [(b"Content-Type", b"application/json"), (b"X-B", b"\xe9")]
        stream = httpx.ByteStream(b"{}")
        slow = _slow_response(200, raw, stream, slow_req, {"k": 1})
        fast = _fast_response(200, raw, stream, slow_req, {"k": 1})
        if _state(slow) != _state(fast):
            return False
        items = _fast_header_items(fast.headers)
        if _state(_slow_response_of(200, items, stream, slow_req, {})) != _state(
            _fast_response_of(200, items, stream, slow_req, {})
        ):
            return False
        _slow_read_plain(slow, b"{}")
        _fast_read_plain(fast, b"{}")
        return _state(slow) == _state(fast)
    except Exception:  # noqa: BLE001 - any difference in httpx's internals: use its constructors
        return False


FAST = _agrees()

bodiless_request = _fast_request if FAST else _slow_request
"""``httpx.Request(method, url, headers=...)`` for a request without a body (``url`` and
``headers`` already httpx's; the ``Host`` header first, as httpx adds it)."""

request_again = _fast_again if FAST else _slow_again
"""The bodiless request whose header items (``header_items`` of a request ``bodiless_request``
built, ``Host`` included) are ``items``, again: ``items`` is copied, ``extensions`` kept, and
``method`` taken as it is (upper case)."""

response = _fast_response if FAST else _slow_response
"""``httpx.Response(status, headers=raw, stream=..., request=..., extensions=...)``, with
``raw`` as byte pairs; ``extensions`` is kept, not copied."""

response_of = _fast_response_of if FAST else _slow_response_of
""":data:`response` from the headers as (raw name, lowered name, value) byte triples (the
list is copied), e.g. a head converted once and kept for the responses that repeat it."""

header_items = _fast_header_items if FAST else _slow_header_items
"""The headers as (raw name, lowered name, value) byte triples, in order: the list the headers
hold (not a copy: read it, do not change it)."""

read_plain = _fast_read_plain if FAST else _slow_read_plain
"""Leave ``response`` as ``response.read()`` leaves it after its stream gave ``body``; for a
response without ``Content-Encoding`` only (nothing to decode)."""


# Capped reading (``terminals/_limits.py``) decodes bodies itself, so that a compressed body
# stops at the size limit instead of being inflated whole. httpx has no public way to hand a
# response its decoded body or a decoder; these two set what ``aread()`` sets and what
# ``aiter_bytes()`` reads (httpx 0.28.1 is its last release; ``tests/unit/test_fast.py`` checks
# both against httpx's own reading).


def keep_decoded(response: httpx.Response, body: bytes) -> None:
    """Give ``response``, whose raw stream was read to its end, its decoded ``body``."""
    response._content = body


def use_decoder(response: httpx.Response, decoder: Any) -> None:
    """Make ``response.aiter_bytes()`` (and text, lines) decode through ``decoder``.

    ``decoder`` has httpx's ``ContentDecoder`` methods: ``decode(bytes)`` and ``flush()``.
    """
    response._decoder = decoder


def httpx_decoder(encoding: str) -> Any | None:
    """A new httpx decoder for ``encoding`` (``br``, ``zstd`` when their packages are installed)."""
    kind = _decoders.SUPPORTED_DECODERS.get(encoding)
    return None if kind is None else kind()
