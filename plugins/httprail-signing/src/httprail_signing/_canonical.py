"""The wire format, in one place for the signer and the verifier.

The signing string is one line per covered item, joined by ``"\\n"`` (no trailing newline)::

    (request-target): <lower-case method> <path>[?<query>]
    x-signature-timestamp: <Unix seconds>
    x-content-sha256: <lower-case hex SHA-256 of the body>
    <each signed header, lower-case name>: <value>

A header's value has its surrounding whitespace removed; several values of one header are
joined with ``", "`` in the order they are sent. The signature is
``base64(HMAC-<algorithm>(secret, UTF-8 signing string))``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from typing import Literal

__all__ = [
    "CONTENT_SHA256_HEADER",
    "REQUEST_TARGET",
    "TIMESTAMP_HEADER",
    "Algorithm",
    "body_sha256",
    "combine",
    "covered_headers",
    "format_signature",
    "headers_param",
    "hmac_digest",
    "parse_signature",
    "signing_string",
]

TIMESTAMP_HEADER = "X-Signature-Timestamp"
"""The header carrying the Unix time (whole seconds) at which the attempt was signed."""

CONTENT_SHA256_HEADER = "X-Content-SHA256"
"""The header carrying the lower-case hex SHA-256 of the request body."""

REQUEST_TARGET = "(request-target)"

Algorithm = Literal["sha256", "sha512"]
"""The HMAC hash; the ``algorithm`` parameter of the signature header is ``hmac-<this>``."""

# key="value" where the value has no quote or backslash (nothing we emit needs escaping).
_PARAM = re.compile(r'\s*([A-Za-z]+)="([^"\\]*)"\s*')
_REQUIRED_PARAMS = frozenset({"keyId", "algorithm", "headers", "signature"})


def covered_headers(signed_headers: Sequence[str]) -> tuple[str, ...]:
    """Every header the signature covers, lower-case, in signing-string order."""
    return (TIMESTAMP_HEADER.lower(), CONTENT_SHA256_HEADER.lower(), *signed_headers)


def headers_param(signed_headers: Sequence[str]) -> str:
    """The ``headers="..."`` parameter: ``(request-target)`` then the covered headers."""
    return " ".join((REQUEST_TARGET, *covered_headers(signed_headers)))


def combine(values: Iterable[str]) -> str:
    """One header's values as they are signed: each stripped, joined with ``", "``."""
    return ", ".join(value.strip() for value in values)


def signing_string(method: str, target: str, headers: Iterable[tuple[str, str]]) -> str:
    """The text that is signed, exactly as documented in the README.

    Args:
        method: the HTTP method (any case; it is lower-cased).
        target: the path and query as they appear on the request line, e.g. ``/v1/items?a=1``.
        headers: ``(name, value)`` for each covered header, in order (names are lower-cased,
            values stripped).

    Example:
        >>> signing_string("GET", "/a?b=1", [("host", "api.test")])
        '(request-target): get /a?b=1\\nhost: api.test'
    """
    lines = [f"{REQUEST_TARGET}: {method.lower()} {target}"]
    lines.extend(f"{name.lower()}: {value.strip()}" for name, value in headers)
    return "\n".join(lines)


def body_sha256(body: bytes) -> str:
    """The ``X-Content-SHA256`` value for ``body``."""
    return hashlib.sha256(body).hexdigest()


def hmac_digest(secret: bytes, algorithm: Algorithm, text: str) -> bytes:
    """The raw HMAC of the UTF-8 signing string."""
    return hmac.new(secret, text.encode("utf-8"), algorithm).digest()


def format_signature(
    key_id: str, algorithm: Algorithm, signed_headers: Sequence[str], digest: bytes
) -> str:
    """The signature header's value."""
    signature = base64.b64encode(digest).decode("ascii")
    return (
        f'keyId="{key_id}",algorithm="hmac-{algorithm}",'
        f'headers="{headers_param(signed_headers)}",signature="{signature}"'
    )


def parse_signature(value: str) -> dict[str, str] | None:
    """The parameters of a signature header, or ``None`` if it is malformed.

    Malformed: not a comma-separated list of ``key="value"``, a repeated key, or one of
    ``keyId``, ``algorithm``, ``headers``, ``signature`` missing. Unknown keys are ignored.
    """
    params: dict[str, str] = {}
    position = 0
    while True:
        match = _PARAM.match(value, position)
        if match is None:
            return None
        key, param = match.groups()
        if key in params:
            return None
        params[key] = param
        position = match.end()
        if position == len(value):
            break
        if value[position] != ",":
            return None
        position += 1
    if not params.keys() >= _REQUIRED_PARAMS:
        return None
    return params
