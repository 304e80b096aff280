"""Redaction of secrets in URLs and headers, used by logs, error reprs and metric labels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import httpx

REDACTED = "[REDACTED]"
# In URLs the marker must survive percent-encoding unchanged.
REDACTED_QUERY = "REDACTED"

SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "x-auth-token",
        "x-access-token",
        "x-amz-security-token",
        "x-csrf-token",
    }
)

SENSITIVE_QUERY_PARAMS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "api-key",
        "auth",
        "client_secret",
        "code",
        "id_token",
        "key",
        "password",
        "refresh_token",
        "secret",
        "sig",
        "signature",
        "token",
        "x-amz-credential",
        "x-amz-security-token",
        "x-amz-signature",
        "x-goog-signature",
    }
)


def is_sensitive_header(name: str) -> bool:
    """True for header names that carry credentials."""
    lowered = name.lower()
    return lowered in SENSITIVE_HEADERS or lowered.endswith(("-token", "-secret", "-api-key"))


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a dict with credential values replaced by ``[REDACTED]``."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: (REDACTED if is_sensitive_header(k) else v) for k, v in items}


def redact_url(url: httpx.URL | str) -> str:
    """The URL as text without userinfo and with credential query values replaced."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<invalid url>"
    if parsed.userinfo:
        parsed = parsed.copy_with(username=None, password=None)
    if not parsed.query:
        return str(parsed)
    params = [
        (k, REDACTED_QUERY if k.lower() in SENSITIVE_QUERY_PARAMS else v)
        for k, v in parsed.params.multi_items()
    ]
    return str(parsed.copy_with(params=params))
