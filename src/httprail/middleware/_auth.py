"""Authentication stages: bearer token (static or provided), API key (header or query), basic."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Literal

import httpx
from returns.result import Failure, Result, Success

from .._errors import AuthError, ConfigError, RequestError
from .._pipeline import RequestResponsePlugin
from .._redact import register_secret, register_sensitive_param

__all__ = ["ApiKeyAuth", "BasicAuth", "BearerAuth", "TokenProvider", "auth"]

TokenProvider = Callable[[], Awaitable[str]]
"""An async callable returning a current token (it may cache and refresh on its own)."""


def _require_text(owner: str, label: str, value: object) -> str:
    if not isinstance(value, str) or not value or value != value.strip():
        raise ConfigError(
            f"{owner}({label}=...) must be a non-empty string without surrounding whitespace"
        )
    if any(ch in value for ch in "\r\n\x00"):
        raise ConfigError(f"{owner}({label}=...) must not contain CR, LF or NUL")
    return value


class BearerAuth(RequestResponsePlugin):
    """Send ``Authorization: Bearer <token>``.

    The token is either a fixed string or an async ``token_provider`` called for every attempt
    (place auth inside ``Retry`` so a refreshed token is used on the next attempt). A provider
    that raises, or returns something that is not a usable token, gives ``Failure(AuthError)``.
    A provider must not send requests through the chain it authenticates.

    Args:
        token: a fixed token.
        token_provider: an async callable returning the current token.
    """

    name = "auth"

    def __init__(
        self, token: str | None = None, *, token_provider: TokenProvider | None = None
    ) -> None:
        if (token is None) == (token_provider is None):
            raise ConfigError("BearerAuth needs exactly one of token=... or token_provider=...")
        if token is not None:
            self._header: str | None = f"Bearer {_require_text('BearerAuth', 'token', token)}"
            register_secret(token, owner=self)
        else:
            self._header = None
            if not callable(token_provider):
                raise ConfigError("BearerAuth(token_provider=...) must be an async callable")
        self._provider = token_provider
        self._last_token: str | None = None

    def __repr__(self) -> str:
        return "BearerAuth(token=[REDACTED])" if self._header else "BearerAuth(token_provider=...)"

    async def process_request(self, request: httpx.Request) -> Result[httpx.Request, RequestError]:
        header = self._header
        if header is None:
            fetched = await self._fetch(request)
            if isinstance(fetched, RequestError):
                return Failure(fetched)
            header = f"Bearer {fetched}"
        request.headers["Authorization"] = header
        return Success(request)

    async def _fetch(self, request: httpx.Request) -> str | RequestError:
        assert self._provider is not None
        try:
            token = await self._provider()
        except Exception as exc:  # noqa: BLE001 - user code: its failure becomes a value
            error = AuthError(f"token provider failed: {type(exc).__name__}", request=request)
            error.__cause__ = exc
            return error
        if not isinstance(token, str) or not token.strip() or any(c in token for c in "\r\n\x00"):
            return AuthError("token provider returned an unusable token", request=request)
        token = token.strip()
        if token != self._last_token:  # a new token: known to the redactor from now on
            self._last_token = token
            register_secret(token, owner=self)
        return token


class ApiKeyAuth(RequestResponsePlugin):
    """Send an API key in a header (default ``X-API-Key``) or a query parameter.

    Args:
        key: the API key.
        name: the header or query parameter name.
        location: ``"header"`` or ``"query"``.
        prefix: text put before the key in a header (e.g. ``"Token "``).
    """

    name = "auth"

    def __init__(
        self,
        key: str,
        *,
        name: str = "X-API-Key",
        location: Literal["header", "query"] = "header",
        prefix: str = "",
    ) -> None:
        self._key = _require_text("ApiKeyAuth", "key", key)
        self._param = _require_text("ApiKeyAuth", "name", name)
        if location not in ("header", "query"):
            raise ConfigError(
                f"ApiKeyAuth(location=...) must be 'header' or 'query', got {location!r}"
            )
        self._location = location
        self._value = f"{prefix}{self._key}"
        register_secret(self._key, owner=self)
        register_secret(self._value, owner=self)
        if location == "query":
            register_sensitive_param(self._param)

    def __repr__(self) -> str:
        return f"ApiKeyAuth(name={self._param!r}, location={self._location!r}, key=[REDACTED])"

    async def process_request(self, request: httpx.Request) -> Result[httpx.Request, RequestError]:
        if self._location == "header":
            request.headers[self._param] = self._value
            return Success(request)
        request.url = request.url.copy_set_param(self._param, self._value)
        return Success(request)


class BasicAuth(RequestResponsePlugin):
    """Send HTTP Basic credentials."""

    name = "auth"

    def __init__(self, username: str, password: str) -> None:
        if not isinstance(username, str) or ":" in username:
            raise ConfigError("BasicAuth(username=...) must be a string without ':'")
        if not isinstance(password, str):
            raise ConfigError("BasicAuth(password=...) must be a string")
        raw = f"{username}:{password}".encode()
        self._header = f"Basic {base64.b64encode(raw).decode('ascii')}"
        self._username = username
        register_secret(password, owner=self)
        register_secret(self._header.partition(" ")[2], owner=self)

    def __repr__(self) -> str:
        return f"BasicAuth(username={self._username!r}, password=[REDACTED])"

    async def process_request(self, request: httpx.Request) -> Result[httpx.Request, RequestError]:
        request.headers["Authorization"] = self._header
        return Success(request)


def auth(
    api_key: str,
    *,
    scheme: Literal["bearer", "header", "query"] = "bearer",
    name: str | None = None,
    prefix: str = "",
) -> BearerAuth | ApiKeyAuth:
    """The ``auth`` stage of a declared stack: sends the provider's key the way it wants it.

    In a stack file the key comes from the provider's ``api_key_env``; ``scheme`` picks
    ``Authorization: Bearer <key>`` (default), a header (``name``, default ``X-API-Key``, with an
    optional ``prefix``) or a query parameter (``name``, default ``api_key``).

    Raises:
        ConfigError: an unknown scheme, or an option that does not fit it.
    """
    if scheme == "bearer":
        if name is not None or prefix:
            raise ConfigError("auth(scheme='bearer') takes no name=... or prefix=...")
        return BearerAuth(api_key)
    if scheme == "header":
        return ApiKeyAuth(api_key, name=name or "X-API-Key", location="header", prefix=prefix)
    if scheme == "query":
        if prefix:
            raise ConfigError("auth(scheme='query') takes no prefix=...")
        return ApiKeyAuth(api_key, name=name or "api_key", location="query")
    raise ConfigError(f"auth(scheme=...) must be 'bearer', 'header' or 'query', got {scheme!r}")
