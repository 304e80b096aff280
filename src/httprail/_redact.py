"""Redaction: one rule for every text httprail builds from a URL, a header or a backend error.

:func:`redact_text` is that rule. It

- rewrites every URL it finds: userinfo removed, the values of sensitive query parameters
  (:data:`SENSITIVE_QUERY_PARAMS`, the names auth stages registered and every name ending in
  ``token``, ``secret``, ``key``, ...: :func:`is_sensitive_param`) replaced;
- replaces the value of a sensitive header wherever it is quoted as a pair
  (``(b'authorization', b'...')``) or a line (``Cookie: ...``), the value of a header a backend
  refused (``Illegal header value b'...'``) and ``Bearer`` credentials;
- replaces every secret value httprail knows about (:func:`register_secret`: the auth stages'
  tokens, keys and passwords) and, given the request, its sensitive header and query values.

It runs when text is built (an error's message, a log event, a CLI line), never on the path of
a successful request. The backends' own loggers get it through :class:`RedactingFilter`, which
every terminal installs when it is built (:func:`install_backend_log_filters`); the filter sees
only records a logger lets through, so a success pays for it only where the application turned
a backend's logging up (httpx's ``HTTP Request:`` line is at INFO).

The registry of secrets is process-wide and bounded: a secret registered with an ``owner``
(an auth stage) is held as long as the owner lives (the owner is held weakly) and each owner
keeps its :data:`MAX_SECRETS_PER_OWNER` most recent values (a token provider's rotations); a
secret without an owner joins the :data:`MAX_UNOWNED_SECRETS` most recent ones. Values shorter
than :data:`MIN_SECRET_LENGTH` are not registered (masking every ``"ab"`` would garble text).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

import httpx

__all__ = [
    "BACKEND_LOGGERS",
    "MAX_SECRETS_PER_OWNER",
    "MAX_UNOWNED_SECRETS",
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "REDACTED_QUERY",
    "SENSITIVE_HEADERS",
    "SENSITIVE_QUERY_PARAMS",
    "RedactingFilter",
    "install_backend_log_filters",
    "is_sensitive_header",
    "is_sensitive_param",
    "redact_headers",
    "redact_text",
    "redact_url",
    "register_secret",
    "register_sensitive_param",
]

REDACTED = "[REDACTED]"
# In URLs the marker must survive percent-encoding unchanged.
REDACTED_QUERY = "REDACTED"

MIN_SECRET_LENGTH = 6
MAX_SECRETS_PER_OWNER = 8
MAX_UNOWNED_SECRETS = 256
MAX_EXTRA_PARAMS = 1024

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

BACKEND_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "hpack.hpack",
    "hpack.table",
    "aiohttp.client",
    "aiohttp.internal",
    "curl_cffi",
)
"""The loggers the backends write to (each module's own: a filter on a parent logger does not
see its children's records)."""


class _Registry:
    """The secrets and the extra sensitive query parameter names httprail knows about."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owned: dict[int, tuple[weakref.ref[Any], list[str]]] = {}
        self._unowned: dict[str, None] = {}
        self._params: dict[str, None] = {}
        self._dirty = False
        self.secrets: tuple[str, ...] = ()
        self.params: frozenset[str] = SENSITIVE_QUERY_PARAMS

    def add_secret(self, values: Iterable[str], owner: object | None) -> None:
        with self._lock:
            if owner is None:
                for value in values:
                    self._unowned.pop(value, None)
                    self._unowned[value] = None
                while len(self._unowned) > MAX_UNOWNED_SECRETS:
                    del self._unowned[next(iter(self._unowned))]
            else:
                key = id(owner)
                entry = self._owned.get(key)
                if entry is None or entry[0]() is not owner:
                    ref = weakref.ref(owner, self._forget(key))
                    entry = (ref, [])
                    self._owned[key] = entry
                kept = entry[1]
                for value in values:
                    if value in kept:
                        kept.remove(value)
                    kept.append(value)
                del kept[:-MAX_SECRETS_PER_OWNER]
            self._rebuild()

    def _forget(self, key: int) -> Any:
        def forget(ref: weakref.ref[Any]) -> None:
            # Runs from the garbage collector, maybe while the lock is held: only mark.
            entry = self._owned.get(key)
            if entry is not None and entry[0] is ref:
                self._dirty = True

        return forget

    def add_param(self, name: str) -> None:
        lowered = name.lower()
        if lowered in self.params:
            return
        with self._lock:
            self._params[lowered] = None
            while len(self._params) > MAX_EXTRA_PARAMS:
                del self._params[next(iter(self._params))]
            self.params = SENSITIVE_QUERY_PARAMS | frozenset(self._params)

    def current(self) -> tuple[str, ...]:
        """The known secrets, longest first (a dead owner's are dropped here)."""
        if self._dirty:
            with self._lock:
                self._rebuild()
        return self.secrets

    def _rebuild(self) -> None:
        self._dirty = False
        for key in [k for k, (ref, _) in self._owned.items() if ref() is None]:
            del self._owned[key]
        known = set(self._unowned)
        for _, values in self._owned.values():
            known.update(values)
        self.secrets = tuple(sorted(known, key=len, reverse=True))


_registry = _Registry()


def _variants(value: str) -> list[str]:
    """``value`` as text and as it appears percent-encoded in a URL."""
    forms = {value, quote(value, safe=""), quote_plus(value, safe="")}
    return [form for form in forms if len(form) >= MIN_SECRET_LENGTH]


def register_secret(value: str, *, owner: object | None = None) -> None:
    """Make ``value`` a secret: :func:`redact_text` replaces it wherever it appears.

    Auth stages register their tokens, keys and passwords themselves; register a credential
    that reaches httprail another way (a header you set on every request, a custom plugin's
    key). ``owner`` (held weakly) ties the value to an object: it is forgotten with the owner,
    and an owner keeps only its :data:`MAX_SECRETS_PER_OWNER` most recent values. Values
    shorter than :data:`MIN_SECRET_LENGTH` are ignored.
    """
    if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
        _registry.add_secret(_variants(value), owner)


def register_sensitive_param(name: str) -> None:
    """Treat the query parameter ``name`` (any case) as sensitive, as ``api_key`` is."""
    if isinstance(name, str) and name:
        _registry.add_param(name)


def is_sensitive_header(name: str) -> bool:
    """True for header names that carry credentials."""
    lowered = name.lower()
    return lowered in SENSITIVE_HEADERS or lowered.endswith(("-token", "-secret", "-api-key"))


# A query parameter name that ends in one of these, once lowered and without ``-``, ``_`` and
# ``.`` (``auth_token``, ``accessToken``, ``x-api-key``, ``private.key``, ``session_secret``),
# names a credential, as a header name ending in ``-token`` does.
_CREDENTIAL_ENDINGS = (
    "token",
    "secret",
    "password",
    "passwd",
    "key",
    "signature",
    "credential",
    "credentials",
    "jwt",
    "sessionid",
)
_SEPARATORS = str.maketrans("", "", "-_.")


@functools.lru_cache(maxsize=1024)
def _credential_name(lowered: str) -> bool:
    return lowered.translate(_SEPARATORS).endswith(_CREDENTIAL_ENDINGS)


def is_sensitive_param(name: str) -> bool:
    """True for query parameter names whose values are credentials: the built-in names and
    the registered ones (any case), and every name ending in ``token``, ``secret``,
    ``password``, ``key``, ``signature``, ``credential`` or ``jwt`` (``-``, ``_`` and ``.``
    aside: ``auth_token``, ``accessToken``, ``private-key``)."""
    lowered = name.lower()
    return lowered in _registry.params or _credential_name(lowered)


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a dict with credential values replaced by ``[REDACTED]``."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: (REDACTED if is_sensitive_header(k) else redact_text(v)) for k, v in items}


def redact_url(url: httpx.URL | str) -> str:
    """The URL as text without userinfo and with credential query values replaced.

    The URL is shown as httpx encodes it; one that cannot be parsed is scrubbed as text
    (:func:`redact_text`).
    """
    if isinstance(url, httpx.URL):
        text = str(url)
    else:
        try:
            text = str(httpx.URL(url))
        except (httpx.InvalidURL, TypeError, ValueError):
            return redact_text(url) if isinstance(url, str) else "<invalid url>"
    return _mask_secrets(_scrub_url(text), _registry.current())


# -- text ------------------------------------------------------------------------------------

# A scheme of at most 32 characters: unbounded, every letter of a long run of them (a hostile
# header echoed in an error) would start a scan to the run's end, quadratic in its length.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s'\"<>`]+")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]*@")
_PARAM = re.compile(r"([?&;])([^=&;#?]+)=([^&;#\])>]*)")  # a URL in brackets keeps its ']'
_LITERAL = r"""b?'(?:[^'\\]|\\.)*'|b?"(?:[^"\\]|\\.)*\""""
_REFUSED_VALUE = re.compile(rf"(?i)(header value:?\s*)({_LITERAL})")
# ... and unquoted, to the end of the line (pyreqwest: ``Invalid header value: <the value>``).
_REFUSED_BARE = re.compile(
    rf"(?i)(header value:[ \t]*)(?![ \t]|{re.escape(REDACTED)}|b?['\"])([^\r\n]+)"
)
# A quoted header name and its quoted value: a tuple ``(b'cookie', b'...')`` (httpcore's trace),
# ``b'cookie'=b'...'`` and ``b'cookie': b'...'`` (hpack's header table lines).
_PAIR = re.compile(rf"""(b?(['"])([!#$%&*+.^_`|~0-9A-Za-z-]+)\2(?:,\s*|=|:\s*))({_LITERAL})""")
_LINE = re.compile(r"(?m)^([ \t]*)([!#$%&*+.^_`|~0-9A-Za-z-]+)([ \t]*:[ \t]*)([^\r\n]+)")
_BEARER = re.compile(r"\bBearer +[A-Za-z0-9\-._~+/]+=*")


def _url_span(match: re.Match[str]) -> str:
    return _scrub_url(match.group(0))


def _scrub_url(url: str) -> str:
    """``url`` without userinfo and with the values of sensitive query parameters replaced."""
    if "@" in url:
        url = _USERINFO.sub(r"\1", url)
    if "=" not in url:
        return url

    def value(part: re.Match[str]) -> str:
        if is_sensitive_param(unquote_plus(part.group(2))):
            return f"{part.group(1)}{part.group(2)}={REDACTED_QUERY}"
        return part.group(0)

    return _PARAM.sub(value, url)


def _pair(match: re.Match[str]) -> str:
    if is_sensitive_header(match.group(3)):
        return f"{match.group(1)}{REDACTED}"
    return match.group(0)


def _line(match: re.Match[str]) -> str:
    if is_sensitive_header(match.group(2)):
        return f"{match.group(1)}{match.group(2)}{match.group(3)}{REDACTED}"
    return match.group(0)


def _mask_secrets(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _request_secrets(request: httpx.Request) -> list[str]:
    """The credential values ``request`` carries: sensitive headers, query values, password."""
    found: list[str] = []
    for name, value in request.headers.items():
        if is_sensitive_header(name):
            found.append(value)
            scheme, _, credential = value.partition(" ")
            if credential and scheme.isalpha():
                found.append(credential)
            if name.lower() in ("cookie", "set-cookie"):
                found.extend(
                    part.partition("=")[2].strip() for part in value.split(";") if "=" in part
                )
    url = request.url
    if url.password:
        found.append(url.password)
    if url.query:
        found.extend(v for k, v in url.params.multi_items() if is_sensitive_param(k))
    variants: set[str] = set()
    for value in found:
        if len(value) >= MIN_SECRET_LENGTH:
            variants.update(_variants(value))
    return sorted(variants, key=len, reverse=True)


def redact_text(text: str, request: httpx.Request | None = None) -> str:
    """``text`` with every credential httprail can recognise in it replaced.

    URLs lose their userinfo and the values of sensitive query parameters; sensitive header
    values quoted as pairs or lines, refused header values and ``Bearer`` tokens are replaced;
    so is every registered secret (:func:`register_secret`) and, given ``request``, the values
    of its sensitive headers, its sensitive query values and its URL's password. Idempotent.
    """
    if not text:
        return text
    if request is not None:
        text = _mask_secrets(text, _request_secrets(request))
    if "://" in text:
        text = _URL.sub(_url_span, text)
    if "'" in text or '"' in text:
        text = _REFUSED_VALUE.sub(rf"\1{REDACTED}", text)
        text = _PAIR.sub(_pair, text)
    if ":" in text:
        if "alue:" in text or "ALUE:" in text:
            text = _REFUSED_BARE.sub(rf"\1{REDACTED}", text)
        text = _LINE.sub(_line, text)
    if "Bearer " in text:
        text = _BEARER.sub(f"Bearer {REDACTED}", text)
    return _mask_secrets(text, _registry.current())


# -- the backends' loggers -------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record's message through :func:`redact_text`.

    A record whose text changes gets the redacted text as its message (and no arguments); the
    others are left as they are. It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is not ours to fix
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg = clean
            record.args = None
        return True


_FILTER = RedactingFilter()
_installed = False


def install_backend_log_filters() -> None:
    """Put :class:`RedactingFilter` on every backend logger (:data:`BACKEND_LOGGERS`); idempotent.

    Every terminal calls it when it is built, so httpx's ``HTTP Request:`` line never carries
    a userinfo or a secret httprail knows about.
    """
    global _installed
    if _installed:
        return
    for name in BACKEND_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    _installed = True
