"""Parsing of the server's requested delay: ``retry-after-ms`` and ``Retry-After``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

__all__ = ["ServerDelay", "parse_server_delay"]


@dataclass(frozen=True, slots=True)
class ServerDelay:
    """What the response asked for: a delay in seconds (``None`` if nothing usable)."""

    seconds: float | None
    source: str  # "retry-after-ms" | "retry-after" | "" when absent
    malformed: str | None = None  # the raw value that could not be parsed


def parse_server_delay(headers: httpx.Headers, now: float) -> ServerDelay:
    """The delay the server asked for, in seconds; ``now`` is the wall clock (Unix time).

    ``retry-after-ms`` (milliseconds, fractional allowed) wins over ``Retry-After`` (delta
    seconds or an HTTP-date). A date in the past means "now" (0 s). A value that is not one of
    these forms is reported as malformed and not used.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms.strip())
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ServerDelay(ms / 1000.0, "retry-after-ms")
        bad_ms: str | None = raw_ms
    else:
        bad_ms = None
    raw = headers.get("retry-after")
    if raw is None:
        return ServerDelay(None, "", bad_ms)
    value = raw.strip()
    if value.isdigit():
        return ServerDelay(float(int(value)), "retry-after", bad_ms)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return ServerDelay(None, "", raw if bad_ms is None else f"{bad_ms!r}, {raw!r}")
    if when.tzinfo is None:
        return ServerDelay(None, "", raw)
    return ServerDelay(max(0.0, when.timestamp() - now), "retry-after", bad_ms)
