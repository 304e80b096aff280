"""Authentication stages: bearer token (static or provided), API key (header or query), basic."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Collection
from typing import Literal
from urllib.parse import urlencode

import httpx
from returns.result import Failure, Result, Success

from .._args import need
from .._errors import AuthError, ConfigError, RequestError
from .._log import get_logger
from .._pipeline import RequestResponsePlugin
from .._redact import register_secret, register_sensitive_param
from .._validate import as_origin, has_forbidden_character
from ._redirects import CREDENTIALS_EXTENSION, origin_of

__all__ = ["ApiKeyAuth", "BasicAuth", "BearerAuth", "TokenProvider", "auth"]

TokenProvider = Callable[[], Awaitable[str]]
"""An async callable returning a current token (it may cache and refresh on its own)."""


_log = get_logger("httprail.auth")

Origin = tuple[str, str, int | None]
Origins = str | Collection[str] | None
"""Where an auth stage sends its credentials: origins (``"https://api.example.com"``,
``"http://10.0.0.5:8080"``), ``"*"`` for any origin, or ``None``: the base URL of the client it
is given to, else the origin of the first request it sees (see ``docs/plugins/auth.md``)."""


class _OriginBound(RequestResponsePlugin):
    """The part every auth stage shares: which origins its credentials may go to.

    A request to any other origin (a redirect to another host, an absolute URL elsewhere) is
    sent without this stage's credentials; if it already carries them (an SDK's own redirect
    copies the headers), they are removed. The first such request is logged once.
    """

    _origins: set[Origin]
    _any_origin: bool
    _auto: bool
    _warned: bool

    def _bind(self, owner: str, origins: Origins) -> None:
        self._warned = False
        self._any_origin = origins == "*"
        self._auto = origins is None
        self._origins = set()
        if origins is None or self._any_origin:
            return
        listed = [origins] if isinstance(origins, str) else origins
        if not isinstance(listed, Collection) or not listed:
            raise ConfigError(f"{owner}(origins=...) must be '*', an origin or a list of origins")
        for text in listed:
            url = as_origin(text) if isinstance(text, str) else None
            if url is None:
                raise ConfigError(
                    f"{owner}(origins=...) must hold origins like 'https://api.example.com' "
                    f"(scheme, host, optional port), got {text!r}"
                )
            self._origins.add(origin_of(url))

    def bind_origin(self, url: httpx.URL | str) -> None:
        """Allow ``url``'s origin, unless ``origins`` was given explicitly.

        ``AsyncClient(base_url=...)`` (and so every stack built from a stack file) calls this
        with its base URL for every auth stage in its chain.
        """
        if self._auto:
            self._origins.add(origin_of(httpx.URL(url)))

    @property
    def origins(self) -> frozenset[str] | None:
        """The origins credentials go to (``None``: any origin, or not bound yet)."""
        if self._any_origin or (self._auto and not self._origins):
            return None
        return frozenset(_origin_text(o) for o in self._origins)

    def _allowed(self, request: httpx.Request) -> bool:
        """Whether ``request`` goes to one of this stage's origins (binding the first one)."""
        if self._any_origin:
            return True
        origin = origin_of(request.url)
        origins = self._origins
        if origin in origins:
            return True
        if self._auto and not origins:
            origins.add(origin)  # trust on first use: the caller's own first request
            return True
        scheme, host, port = origin
        if scheme == "https" and port == 443 and ("http", host, 80) in origins:
            return True  # the same site upgraded to https, as httpx allows
        if not self._warned:
            self._warned = True
            _log.warning(
                "httprail.auth_foreign_origin",
                stage=type(self).__name__,
                origin=_origin_text(origin),
                allowed=sorted(_origin_text(o) for o in origins),
                action="sent without credentials (logged once per stage)",
            )
        return False


def _origin_text(origin: Origin) -> str:
    scheme, host, port = origin
    return f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"


def _mark(request: httpx.Request, name: str) -> None:
    """Name ``name`` as a credential header, for the Redirects stage to strip."""
    extensions = request.extensions
    marked = extensions.get(CREDENTIALS_EXTENSION, ())
    if name not in marked:
        extensions[CREDENTIALS_EXTENSION] = (*marked, name)


def _require_text(owner: str, label: str, value: object) -> str:
    if not isinstance(value, str) or not value or value != value.strip():
        raise ConfigError(
            f"{owner}({label}=...) must be a non-empty string without surrounding whitespace"
        )
    if has_forbidden_character(value):  # what no header value may hold
        raise ConfigError(
            f"{owner}({label}=...) must not contain a control character (CR, LF, NUL, ...)"
        )
    return value


class BearerAuth(_OriginBound):
    """Send ``Authorization: Bearer <token>``.

    The token is either a fixed string or an async ``token_provider`` called for every attempt
    (place auth inside ``Retry`` so a refreshed token is used on the next attempt). A provider
    that raises, or returns something that is not a usable token, gives ``Failure(AuthError)``.
    A provider must not send requests through the chain it authenticates.

    Args:
        token: a fixed token.
        token_provider: an async callable returning the current token.
        origins: where the token may go (see :data:`Origins`); elsewhere it is not sent.
    """

    name = "auth"

    def __init__(
        self,
        token: str | None = None,
        *,
        token_provider: TokenProvider | None = None,
        origins: Origins = None,
    ) -> None:
        self._bind("BearerAuth", origins)
        self._sent: str | None = None  # the last header a provider's token made
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
        if not self._allowed(request):
            _drop_header(request, "Authorization", (self._header, self._sent))
            return Success(request)
        header = self._header
        if header is None:
            fetched = await self._fetch(request)
            if isinstance(fetched, RequestError):
                return Failure(fetched)
            header = self._sent = f"Bearer {fetched}"
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


class ApiKeyAuth(_OriginBound):
    """Send an API key in a header (default ``X-API-Key``) or a query parameter.

    Args:
        key: the API key.
        name: the header or query parameter name.
        location: ``"header"`` or ``"query"``.
        prefix: text put before the key in a header (e.g. ``"Token "``).
        origins: where the key may go (see :data:`Origins`); elsewhere it is not sent.
    """

    name = "auth"

    def __init__(
        self,
        key: str,
        *,
        name: str = "X-API-Key",
        location: Literal["header", "query"] = "header",
        prefix: str = "",
        origins: Origins = None,
    ) -> None:
        self._bind("ApiKeyAuth", origins)
        self._key = _require_text("ApiKeyAuth", "key", key)
        self._param = _require_text("ApiKeyAuth", "name", name)
        if location not in ("header", "query"):
            raise ConfigError(
                f"ApiKeyAuth(location=...) must be 'header' or 'query', got {location!r}"
            )
        self._location = location
        need(isinstance(prefix, str), "ApiKeyAuth", "prefix", "a string", prefix)
        self._value = f"{prefix}{self._key}"
        register_secret(self._key, owner=self)
        register_secret(self._value, owner=self)
        if location == "query":
            register_sensitive_param(self._param)

    def __repr__(self) -> str:
        return f"ApiKeyAuth(name={self._param!r}, location={self._location!r}, key=[REDACTED])"

    async def process_request(self, request: httpx.Request) -> Result[httpx.Request, RequestError]:
        if not self._allowed(request):
            if self._location == "header":
                _drop_header(request, self._param, (self._value,))
            elif request.url.params.get(self._param) == self._value:
                request.url = request.url.copy_remove_param(self._param)
            return Success(request)
        if self._location == "header":
            request.headers[self._param] = self._value
            _mark(request, self._param.lower())
            return Success(request)
        url = request.url
        given = url.params.get_list(self._param)
        if not given:
            # appended to the query as the caller wrote it: re-encoding it all (what
            # copy_set_param does) turned "flag" into "flag=" and "%7E" into "~", breaking
            # signed URLs
            added = urlencode({self._param: self._value}).encode("ascii")
            request.url = url.copy_with(query=url.query + b"&" + added if url.query else added)
        elif given != [self._value]:  # the URL names the parameter itself: the key wins
            request.url = url.copy_set_param(self._param, self._value)
        return Success(request)


def basic_credentials(username: str | bytes, password: str | bytes, *, owner: object) -> str:
    """The ``Authorization`` value of Basic credentials, as httpx makes it (text as UTF-8);
    the password and the encoded pair are known to the redactor while ``owner`` lives."""
    raw = b":".join(
        part.encode() if isinstance(part, str) else part for part in (username, password)
    )
    header = f"Basic {base64.b64encode(raw).decode('ascii')}"
    register_secret(
        password if isinstance(password, str) else password.decode("latin-1"), owner=owner
    )
    register_secret(header.partition(" ")[2], owner=owner)
    return header


class BasicAuth(_OriginBound):
    """Send HTTP Basic credentials (to ``origins`` only: see :data:`Origins`)."""

    name = "auth"

    def __init__(self, username: str, password: str, *, origins: Origins = None) -> None:
        self._bind("BasicAuth", origins)
        if not isinstance(username, str) or ":" in username:
            raise ConfigError("BasicAuth(username=...) must be a string without ':'")
        if not isinstance(password, str):
            raise ConfigError("BasicAuth(password=...) must be a string")
        self._header = basic_credentials(username, password, owner=self)
        self._username = username

    def __repr__(self) -> str:
        return f"BasicAuth(username={self._username!r}, password=[REDACTED])"

    async def process_request(self, request: httpx.Request) -> Result[httpx.Request, RequestError]:
        if not self._allowed(request):
            _drop_header(request, "Authorization", (self._header,))
            return Success(request)
        request.headers["Authorization"] = self._header
        return Success(request)


def auth(
    api_key: str,
    *,
    scheme: Literal["bearer", "header", "query"] = "bearer",
    name: str | None = None,
    prefix: str = "",
    origins: Origins = None,
) -> BearerAuth | ApiKeyAuth:
    """The ``auth`` stage of a declared stack: sends the provider's key the way it wants it.

    In a stack file the key comes from the provider's ``api_key_env``; ``scheme`` picks
    ``Authorization: Bearer <key>`` (default), a header (``name``, default ``X-API-Key``, with an
    optional ``prefix``) or a query parameter (``name``, default ``api_key``). The key goes to
    the provider's ``base_url`` only (or to ``origins``, when given).

    Raises:
        ConfigError: an unknown scheme, or an option that does not fit it.
    """
    if scheme == "bearer":
        if name is not None or prefix:
            raise ConfigError("auth(scheme='bearer') takes no name=... or prefix=...")
        return BearerAuth(api_key, origins=origins)
    if scheme == "header":
        return ApiKeyAuth(
            api_key, name=name or "X-API-Key", location="header", prefix=prefix, origins=origins
        )
    if scheme == "query":
        if prefix:
            raise ConfigError("auth(scheme='query') takes no prefix=...")
        return ApiKeyAuth(api_key, name=name or "api_key", location="query", origins=origins)
    raise ConfigError(f"auth(scheme=...) must be 'bearer', 'header' or 'query', got {scheme!r}")


def _drop_header(request: httpx.Request, name: str, ours: tuple[str | None, ...]) -> None:
    """Remove ``name`` if it holds one of this stage's own values (an SDK's redirect copied it)."""
    if request.headers.get(name) in {value for value in ours if value is not None}:
        del request.headers[name]
