"""Parsing of the server's requested delay: ``retry-after-ms`` and ``Retry-After``.

The values come from the server, so from anyone: whatever they hold, parsing gives a
:class:`ServerDelay` and never raises. Only ASCII forms are read (``str.isdigit`` and
``float`` accept other scripts' digits and words such as ``"inf"``); a delay is finite, at least
0 and at most :data:`MAX_SERVER_DELAY` (longer asks are read as that much).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

__all__ = ["MAX_SERVER_DELAY", "ServerDelay", "parse_server_delay"]

MAX_SERVER_DELAY = 1e9
"""The longest delay reported, in seconds (~31 years): "never" for every caller, yet finite."""

_SECONDS = re.compile(r"[0-9]+", re.ASCII)
_MILLISECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", re.ASCII)
_SHOWN = 64  # how much of a malformed value is kept (for the log line)


@dataclass(frozen=True, slots=True)
class ServerDelay:
    """What the response asked for: a delay in seconds (``None`` if nothing usable)."""

    seconds: float | None
    source: str  # "retry-after-ms" | "retry-after" | "" when absent
    malformed: str | None = None  # the raw value that could not be parsed (its start, if long)


def _shown(raw: str) -> str:
    return raw if len(raw) <= _SHOWN else raw[:_SHOWN] + "..."


def _capped(seconds: float) -> float:
    return min(max(0.0, seconds), MAX_SERVER_DELAY)


def _date_delay(value: str, now: float) -> float | None:
    """Seconds from ``now`` to the HTTP-date ``value`` (``None``: not a date with a zone)."""
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            return None
        return _capped(when.timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        # email.utils on hostile text: fields out of range, numbers too big for C, garbage
        return None


def parse_server_delay(headers: httpx.Headers, now: float) -> ServerDelay:
    """The delay the server asked for, in seconds; ``now`` is the wall clock (Unix time).

    ``retry-after-ms`` (milliseconds, fractional allowed) wins over ``Retry-After`` (delta
    seconds or an HTTP-date). A date in the past means "now" (0 s). A value that is not one of
    these forms is reported as malformed (its first 64 characters) and not used.
    """
    raw_ms = headers.get("retry-after-ms")
    bad_ms: str | None = None
    if raw_ms is not None:
        text = raw_ms.strip()
        if _MILLISECONDS.fullmatch(text):
            return ServerDelay(_capped(float(text) / 1000.0), "retry-after-ms")
        bad_ms = _shown(raw_ms)
    raw = headers.get("retry-after")
    if raw is None:
        return ServerDelay(None, "", bad_ms)
    value = raw.strip()
    if _SECONDS.fullmatch(value):
        return ServerDelay(_capped(float(value)), "retry-after", bad_ms)
    seconds = _date_delay(value, now)
    if seconds is None:
        bad = _shown(raw)
        return ServerDelay(None, "", bad if bad_ms is None else f"{bad_ms!r}, {bad!r}")
    return ServerDelay(seconds, "retry-after", bad_ms)
