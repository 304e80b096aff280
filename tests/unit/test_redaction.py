"""No secrets leak: URLs, headers and error reprs are redacted."""

from __future__ import annotations

import httpx
import pytest

from httprail import (
    ClientStatusError,
    MaxRetriesExceededError,
    ReadError,
    redact_headers,
    redact_url,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.test/x?api_key=s3cret&q=1", "https://api.test/x?api_key=REDACTED&q=1"),
        ("https://api.test/x?token=s3cret", "https://api.test/x?token=REDACTED"),
        (
            "https://api.test/x?X-Amz-Signature=s3cret",
            "https://api.test/x?X-Amz-Signature=REDACTED",
        ),
        ("https://user:s3cret@api.test/x", "https://api.test/x"),
        ("https://api.test/x?page=2", "https://api.test/x?page=2"),
        ("https://api.test/x", "https://api.test/x"),
    ],
)
def test_urls_lose_credentials(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "s3cret" not in redact_url(httpx.URL(url))


def test_invalid_url_is_not_echoed() -> None:
    assert redact_url("http://[::1") == "<invalid url>"


def test_sensitive_headers_are_redacted() -> None:
    headers = {
        "Authorization": "Bearer s3cret",
        "Cookie": "session=s3cret",
        "X-API-Key": "s3cret",
        "X-Custom-Token": "s3cret",
        "Accept": "application/json",
    }
    redacted = redact_headers(headers)
    assert "s3cret" not in repr(redacted)
    assert redacted["Accept"] == "application/json"
    assert redact_headers(list(headers.items())) == redacted


def test_error_str_and_repr_do_not_contain_secrets() -> None:
    request = httpx.Request(
        "GET",
        "https://user:pw-s3cret@api.test/x?api_key=s3cret",
        headers={"Authorization": "Bearer s3cret"},
    )
    errors = [
        ReadError("connection reset", request=request),
        ClientStatusError(httpx.Response(401, request=request)),
    ]
    errors.append(MaxRetriesExceededError(errors[:1], request=request))
    for error in errors:
        assert "s3cret" not in str(error)
        assert "s3cret" not in repr(error)
        assert "api.test" in str(error)
