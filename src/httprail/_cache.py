"""One bounded memo for the per-request caches (merged URLs, aiohttp URLs and header sets)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

__all__ = ["CACHE_SIZE", "remember"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Entries a cache keeps; when full it is emptied, so unbounded distinct keys cannot grow it.
CACHE_SIZE = 1024


def remember(cache: dict[K, V], key: K, make: Callable[[K], V]) -> V:
    """``cache[key]``, made by ``make(key)`` the first time (values are never ``None``)."""
    value = cache.get(key)
    if value is None:
        value = make(key)
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[key] = value
    return value
