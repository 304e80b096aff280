"""Type-checked only (mypy, never run): pins the public types of httprail_signing."""

from __future__ import annotations

from typing import assert_type

import httpx
from httprail import InvalidRequestError, MiddlewarePlugin, RequestResponsePlugin
from httprail.testing import RecordedRequest

from httprail_signing import (
    CONTENT_SHA256_HEADER,
    TIMESTAMP_HEADER,
    Algorithm,
    HmacSigning,
    RequestParts,
    SigningError,
    signing_string,
    verify,
)


def pinned(recorded: RecordedRequest, request: httpx.Request) -> None:
    stage = HmacSigning("k1", b"secret", algorithm="sha512", signed_headers=["host"])
    plugin: MiddlewarePlugin = stage
    base: RequestResponsePlugin = stage
    assert_type(stage.name, str)
    assert_type(stage.key_id, str)
    assert_type(stage.algorithm, Algorithm)
    assert_type(stage.header, str)
    assert_type(stage.signed_headers, tuple[str, ...])
    error: InvalidRequestError = SigningError("x", request=request)
    parts: RequestParts = recorded
    assert_type(verify(recorded, "secret", 300), bool)
    assert_type(verify(request, b"secret", 1.5, algorithm="sha256", key_id="k1"), bool)
    assert_type(signing_string("GET", "/", [(TIMESTAMP_HEADER, "1")]), str)
    assert_type(CONTENT_SHA256_HEADER, str)
    HmacSigning("k1", "secret", algorithm="md5")  # type: ignore[arg-type]
    HmacSigning("k1", 123)  # type: ignore[arg-type]
    del plugin, base, error, parts
