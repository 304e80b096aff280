"""A template httprail middleware plugin: copy this package to start your own.

:class:`HeaderInjector` adds fixed headers to every request that passes through it. It is a
plain class with a ``name`` and ``async __call__(request, call_next)``, which is all a stage
needs to be a :class:`httprail.MiddlewarePlugin`.

Example:
    >>> stack = [HeaderInjector({"X-Team": "search"})]
    >>> client = httprail.AsyncClient("https://api.example.com", plugins=stack)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import httpx
from httprail import ConfigError, Next, Outcome

__all__ = ["HeaderInjector"]

# RFC 9110 field-name: one or more "tchar".
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class HeaderInjector:
    """Add fixed headers to every request.

    A header the request already carries is left alone unless ``overwrite=True``. Note that
    ``httprail.AsyncClient`` always sets ``Accept``, ``Accept-Encoding``, ``Connection`` and
    ``User-Agent``, so those count as already present.

    The headers are set on every attempt (the request object is shared between attempts, so
    setting them again is harmless). Place the stage inside ``Retry`` if it must see each
    attempt, anywhere if it does not matter.

    Args:
        headers: header names and values to add.
        overwrite: replace a value the request already has.

    Raises:
        ConfigError: a name is not a valid header name, or a value contains CR, LF or NUL.
    """

    name = "template-header"

    def __init__(self, headers: Mapping[str, str], *, overwrite: bool = False) -> None:
        pairs: list[tuple[str, str]] = []
        for key, value in headers.items():
            if not isinstance(key, str) or not _TOKEN.fullmatch(key):
                raise ConfigError(f"HeaderInjector(headers=...): invalid header name {key!r}")
            if not isinstance(value, str) or any(ch in value for ch in "\r\n\x00"):
                raise ConfigError(
                    f"HeaderInjector(headers=...): the value of {key!r} must be a string "
                    "without CR, LF or NUL"
                )
            pairs.append((key, value))
        self._headers = tuple(pairs)
        self._overwrite = overwrite

    def __repr__(self) -> str:
        # Names only: header values may be credentials and reprs end up in logs.
        names = ", ".join(key for key, _ in self._headers)
        return f"HeaderInjector([{names}], overwrite={self._overwrite})"

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        for key, value in self._headers:
            if self._overwrite or key not in request.headers:
                request.headers[key] = value
        return await call_next(request)
