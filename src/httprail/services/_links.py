"""``Link`` headers (RFC 8288): the links, and the ``rel="next"`` one resolved safely."""

from __future__ import annotations

import httpx
from returns.result import Failure, Result, Success

from .._errors import PaginationError

__all__ = ["next_link", "parse_links"]

_SPACE = " \t"


def parse_links(value: str) -> list[tuple[str, dict[str, str]]]:
    """Each link of a ``Link`` header value as ``(target, params)``; never raises.

    Params are lower-cased by name, quoted strings unescaped, and only the first occurrence of
    a param counts (RFC 8288, section 3.3). A link-value that does not start with ``<`` is
    skipped up to the next comma outside quotes and angle brackets.
    """
    links: list[tuple[str, dict[str, str]]] = []
    size = len(value)
    at = 0
    while at < size:
        while at < size and value[at] in _SPACE + ",":
            at += 1
        if at >= size:
            break
        if value[at] != "<":
            at = _skip_to_comma(value, at)
            continue
        end = value.find(">", at + 1)
        if end < 0:
            break
        target, params = value[at + 1 : end].strip(), {}
        at = end + 1
        while True:
            while at < size and value[at] in _SPACE:
                at += 1
            if at >= size or value[at] == ",":
                break
            if value[at] != ";":
                at = _skip_to_comma(value, at)
                break
            name, param, at = _param(value, at + 1)
            if name and name not in params:
                params[name] = param
        links.append((target, params))
    return links


def _skip_to_comma(value: str, at: int) -> int:
    """The index just past the next comma outside quotes and ``<...>`` (or the end)."""
    quoted = bracketed = False
    while at < len(value):
        char = value[at]
        if quoted:
            if char == "\\":
                at += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "<":
            bracketed = True
        elif char == ">":
            bracketed = False
        elif char == "," and not bracketed:
            return at + 1
        at += 1
    return at


def _param(value: str, at: int) -> tuple[str, str, int]:
    """One ``name[=value]`` after a ``;``: (lower-cased name, value, index after it)."""
    size = len(value)
    while at < size and value[at] in _SPACE:
        at += 1
    start = at
    while at < size and value[at] not in _SPACE + "=;,":
        at += 1
    name = value[start:at].lower()
    while at < size and value[at] in _SPACE:
        at += 1
    if at >= size or value[at] != "=":
        return name, "", at
    at += 1
    while at < size and value[at] in _SPACE:
        at += 1
    if at < size and value[at] == '"':
        chars: list[str] = []
        at += 1
        while at < size and value[at] != '"':
            if value[at] == "\\" and at + 1 < size:
                at += 1
            chars.append(value[at])
            at += 1
        return name, "".join(chars), min(at + 1, size)
    start = at
    while at < size and value[at] not in _SPACE + ";,":
        at += 1
    return name, value[start:at], at


def next_link(
    headers: list[str], base: httpx.URL, request: httpx.Request | None = None
) -> Result[httpx.URL, PaginationError] | None:
    """The ``rel="next"`` target of the ``Link`` header values, resolved against ``base``.

    ``None`` when there is no next link. ``Failure(PaginationError)`` when it is not a URL,
    when it leads to another origin (scheme, host, port) than ``base`` (the request would carry
    the service's credentials elsewhere), or when it carries user information ``base`` does not
    (the upstream would choose the ``Authorization`` sent).
    """
    for target, params in parse_links(",".join(headers)):
        if "next" not in params.get("rel", "").lower().split():
            continue
        try:
            url = base.join(target)
        except (httpx.InvalidURL, ValueError, TypeError):
            return Failure(PaginationError("the next page's link is not a URL", request=request))
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            return Failure(
                PaginationError(
                    f"the next page's link leads to another origin ({_origin(url)}), "
                    "not followed: the request would carry this service's credentials there",
                    request=request,
                )
            )
        if url.userinfo != base.userinfo:  # credentials chosen by the upstream: not sent
            return Failure(
                PaginationError(
                    "the next page's link carries credentials of its own (user information in "
                    "the URL), not followed: the upstream would choose what is sent as "
                    "Authorization",
                    request=request,
                )
            )
        return Success(url)
    return None


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}" + ("" if url.port is None else f":{url.port}")
