"""What may go on the wire: no control character in a method, a header or a URL (request
smuggling).

A CR or LF inside a header value ends the header line early: ``"v\\r\\nContent-Length: 0"``
adds a header, and a blank line ends the head and starts a second request on the same
connection. A header value holds no other control character either but HTAB (RFC 9110 5.5):
backends differ on them (libcurl and httpx send them, aiohttp and reqwest refuse them, reqwest
quoting the value in its error). Every terminal asks :class:`SendCheck` before it hands a
request to its backend, and :class:`~httprail.AsyncClient` and the stack files check their
fixed headers when they are built.

The helpers return ``None`` for a value that can go on the wire, else a short sentence saying
which header (or the method, or the URL) and which character is wrong, and where. A header
value is never quoted: it may be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import httpx

from ._cache import keep, url_text
from ._fast import header_items

__all__ = [
    "SendCheck",
    "as_origin",
    "has_forbidden_character",
    "header_problem",
    "headers_problem",
    "method_problem",
    "url_problem",
]

# RFC 9110 5.6.2: a header name and a method are tokens.
_TOKEN = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
_NOT_TOKEN = re.compile(f"[^{_TOKEN}]")
_NOT_TOKEN_BYTES = re.compile(f"[^{_TOKEN}]".encode())
# What never goes in a header value (RFC 9110 5.5): a control character other than HTAB. CR
# and LF end the line, NUL ends a C string; the others some backends send and some refuse.
_NOT_IN_VALUE = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_NOT_IN_VALUE_BYTES = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
# A URL holds no control characters at all (httpx refuses them too, when it parses one).
_URL_CONTROL = re.compile("[\x00-\x1f\x7f]")

_NAMES = {"\r": "CR", "\n": "LF", "\x00": "NUL", "\t": "TAB", " ": "a space", ":": "a colon"}

# Methods that need no check (the ones almost every request uses).
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)


def _describe(char: str) -> str:
    named = _NAMES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"U+{code:04X}" if code > 0x7F else f"0x{code:02X}"


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _head(text: str, end: int) -> str:
    """The part of a name before its first bad character, shortened, for the message."""
    shown = text[: min(end, 40)]
    return repr(shown + "...") if end > 40 or end < len(text) else repr(shown)


def _token_problem(kind: str, value: str | bytes) -> str | None:
    if not value:
        return f"the {kind} is empty"
    found = _NOT_TOKEN_BYTES.search(value) if isinstance(value, bytes) else _NOT_TOKEN.search(value)
    if found is None:
        return None
    text = _text(value)
    at = found.start()
    return f"the {kind} {_head(text, at)} contains {_describe(text[at])} at position {at}"


def method_problem(method: str | bytes) -> str | None:
    """Why ``method`` cannot be sent (``None``: it can): it must be an HTTP token."""
    if method in _KNOWN_METHODS:
        return None
    return _token_problem("method", method)


def header_problem(name: str | bytes, value: str | bytes) -> str | None:
    """Why the header ``name: value`` cannot be sent (``None``: it can).

    The name must be an HTTP token; the value must hold no control character but HTAB (no CR,
    LF, NUL, ...). The message names the header and the character, never the value.
    """
    problem = _token_problem("header name", name)
    if problem is not None:
        return problem
    found = _forbidden(value)
    if found is None:
        return None
    at = found.start()
    return (
        f"the value of header {_text(name)!r} contains {_describe(_text(value)[at])} "
        f"at position {at}"
    )


def has_forbidden_character(value: str | bytes) -> bool:
    """Whether ``value`` holds what no header value may (a control character but HTAB)."""
    return _forbidden(value) is not None


def _forbidden(value: str | bytes) -> re.Match[str] | re.Match[bytes] | None:
    """The first character of ``value`` no header value may hold, if any."""
    return (
        _NOT_IN_VALUE_BYTES.search(value)
        if isinstance(value, bytes)
        else _NOT_IN_VALUE.search(value)
    )


def headers_problem(headers: Iterable[tuple[str | bytes, str | bytes]]) -> str | None:
    """The first problem among ``(name, value)`` pairs (``None``: all can be sent)."""
    for name, value in headers:
        problem = header_problem(name, value)
        if problem is not None:
            return problem
    return None


def url_problem(url: str | httpx.URL) -> str | None:
    """Why ``url`` cannot be sent as it is (``None``: it can): it holds a control character."""
    text = url if isinstance(url, str) else url_text(url)
    found = _URL_CONTROL.search(text)
    if found is None:
        return None
    at = found.start()
    return f"the URL contains {_describe(text[at])} at position {at}"


class SendCheck:
    """Why a request cannot be sent (method, URL, then headers), cheap for the requests that
    repeat themselves.

    Most requests of a client share their URL object and their header items with the previous
    one: the last URL and the last header list that passed are kept, and a request that repeats
    them costs an identity test and a list compare (the tuples in it are the same objects).
    Requests that take turns between hosts (each with its own URL object and ``Host`` header)
    find the header items that passed in a bounded cache (the rule of
    :func:`~._cache.remember`), and their URLs' text in :func:`~._cache.url_text`'s: checking
    them again cost ~4 µs per request.
    """

    __slots__ = ("_headers", "_items", "_url", "userinfo")

    def __init__(self) -> None:
        self._url: httpx.URL | None = None
        self._headers: list[tuple[bytes, bytes, bytes]] = []
        self._items: dict[tuple[bytes, bytes, bytes], bool | None] = {}  # items that passed
        self.userinfo = False
        """Whether the URL of the last request that passed carries credentials (userinfo)."""

    def problem(self, request: httpx.Request) -> str | None:
        """Why ``request`` cannot be sent (``None``: it can)."""
        method = request.method
        if method not in _KNOWN_METHODS:
            problem = method_problem(method)
            if problem is not None:
                return problem
        url = request.url
        if url is not self._url:
            problem = url_problem(url)
            if problem is not None:
                return problem
            self._url = url
            self.userinfo = bool(url.userinfo)
        items = header_items(request.headers)
        if items != self._headers:
            passed = self._items
            for item in items:
                if passed.get(item) is None:
                    problem = header_problem(item[0], item[2])
                    if problem is not None:
                        return problem
                    keep(passed, item, True)
            self._headers = list(items)
        return None


def as_origin(value: object) -> httpx.URL | None:
    """``value`` (text or an ``httpx.URL``) as an origin, ``http(s)://host[:port]`` with no
    path, query, fragment or credentials; ``None`` when it is not one."""
    try:
        url = httpx.URL(value) if isinstance(value, str | httpx.URL) else None
    except httpx.InvalidURL:
        return None
    if (
        url is None
        or url.scheme not in ("http", "https")
        or not url.host
        or url.path not in ("", "/")
        or url.query
        or url.fragment
        or url.userinfo
    ):
        return None
    return url
