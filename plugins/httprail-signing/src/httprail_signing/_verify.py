"""``verify``: check a request signed by :class:`HmacSigning`, on a server or in a test."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import httpx

from ._canonical import (
    CONTENT_SHA256_HEADER,
    TIMESTAMP_HEADER,
    Algorithm,
    body_sha256,
    combine,
    headers_param,
    hmac_digest,
    parse_signature,
    signing_string,
)
from ._options import (
    check_algorithm,
    check_clock,
    check_header,
    check_key_id,
    check_max_age,
    check_secret,
    check_signed_headers,
)

__all__ = ["RequestParts", "verify"]

_OWNER = "verify"
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


@runtime_checkable
class RequestParts(Protocol):
    """A received request as a server sees it.

    ``httprail.testing.RecordedRequest`` has this shape; so does any object (a dataclass, a
    ``SimpleNamespace``) with these attributes.

    Attributes:
        method: the HTTP method.
        path: the path as on the request line (still percent-encoded).
        query: the query string without ``?`` (empty if none).
        headers: ``(name, value)`` pairs in the order received, or a mapping.
        body: the raw body.
    """

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def query(self) -> str: ...

    @property
    def headers(self) -> Iterable[tuple[str, str]] | Mapping[str, str]: ...

    @property
    def body(self) -> bytes: ...


def verify(
    request: httpx.Request | RequestParts,
    secret: str | bytes,
    max_age: float,
    *,
    key_id: str | None = None,
    header: str = "Signature",
    algorithm: Algorithm = "sha256",
    signed_headers: Sequence[str] = ("host",),
    clock: Callable[[], float] = time.time,
) -> bool:
    """Whether ``request`` carries a valid, fresh signature made with ``secret``.

    Pass the options the signer used (``header``, ``algorithm``, ``signed_headers``): the
    signature must cover exactly those headers, with that algorithm. True only if the
    signature header parses, ``keyId`` equals ``key_id`` (when given), the timestamp is at
    most ``max_age`` seconds from ``clock()`` (either way), ``X-Content-SHA256`` is the body's
    hash, and the HMAC matches (compared in constant time). Anything malformed or missing
    gives ``False``, never an exception.

    Args:
        request: an ``httpx.Request`` (its body must be bytes, not a stream) or the parts of a
            received request (see :class:`RequestParts`).
        secret: the shared HMAC key.
        max_age: the largest accepted distance between the timestamp and now, in seconds.
        key_id: the key id the signature must name, if it matters.
        header: the header carrying the signature.
        algorithm: the HMAC hash the signature must use.
        signed_headers: the extra headers the signature must cover, in order.
        clock: returns Unix time in seconds.

    Raises:
        ConfigError: an option is invalid (never because of the request).

    Example:
        >>> verify(server.requests[0], secret, max_age=300)  # doctest: +SKIP
        True
    """
    key = check_secret(_OWNER, secret)
    age = check_max_age(_OWNER, max_age)
    wanted_key_id = None if key_id is None else check_key_id(_OWNER, key_id)
    header = check_header(_OWNER, header)
    algorithm = check_algorithm(_OWNER, algorithm)
    names = check_signed_headers(_OWNER, signed_headers, header)
    now = check_clock(_OWNER, clock)()

    parts = _parts_of(request)
    if parts is None:
        return False
    method, target, headers, body = parts
    params = parse_signature(_value(headers, header) or "")
    if (
        params is None
        or params["algorithm"] != f"hmac-{algorithm}"
        or params["headers"] != headers_param(names)
        or (wanted_key_id is not None and params["keyId"] != wanted_key_id)
    ):
        return False
    timestamp = _value(headers, TIMESTAMP_HEADER)
    if timestamp is None or not _TIMESTAMP.fullmatch(timestamp):
        return False
    if abs(now - int(timestamp)) > age:
        return False
    digest = _value(headers, CONTENT_SHA256_HEADER)
    if digest is None or not hmac.compare_digest(digest.encode(), body_sha256(body).encode()):
        return False
    covered = [(TIMESTAMP_HEADER, timestamp), (CONTENT_SHA256_HEADER, digest)]
    for name in names:
        value = _value(headers, name)
        if value is None:
            return False
        covered.append((name, value))
    try:
        received = base64.b64decode(params["signature"], validate=True)
    except binascii.Error:
        return False
    expected = hmac_digest(key, algorithm, signing_string(method, target, covered))
    return hmac.compare_digest(expected, received)


def _parts_of(
    request: httpx.Request | RequestParts,
) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    """Method, request target, header pairs and body; ``None`` if the body is a stream."""
    if isinstance(request, httpx.Request):
        if not isinstance(request.stream, httpx.ByteStream):
            return None
        target = request.url.raw_path.decode("latin-1")
        return request.method, target, request.headers.multi_items(), request.read()
    target = f"{request.path}?{request.query}" if request.query else request.path
    raw = request.headers
    pairs = list(raw.items() if isinstance(raw, Mapping) else raw)
    return request.method, target, pairs, request.body


def _value(headers: list[tuple[str, str]], name: str) -> str | None:
    """A header's value as signed (all its values combined), or ``None`` if it is absent."""
    wanted = name.lower()
    values = [value for key, value in headers if key.lower() == wanted]
    return combine(values) if values else None
