"""One bounded memo for the per-request caches (merged URLs, aiohttp URLs and header sets).

A value is kept only when its key comes back: the first time a key is seen, only the key is
noted. So a stream of distinct keys (a URL per record id) costs each request its own parsing
and keeps nothing alive, and the objects made for it die young instead of filling the cache
and being promoted through the garbage collector's generations until the cache is emptied
(which made every full collection longer: with 10,000 hosts in turn and room for 1,024, the
collector took a third of the time). Keys that come back within the cache's room (hosts,
endpoints) are made twice, then found.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

import httpx

__all__ = ["CACHE_SIZE", "keep", "remember", "url_text"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Entries a cache holds (keys seen once and kept values alike); when full it is emptied, so
# unbounded distinct keys cannot grow it. Sized to the per-upstream tables' bound (10,000).
CACHE_SIZE = 16_384


def remember(cache: dict[K, V | None], key: K, make: Callable[[K], V]) -> V:
    """``cache[key]``, made by ``make(key)`` (values are never ``None``); kept from the second
    time ``key`` is asked for. A key seen once maps to ``None``, so a reader that only wants
    kept values can use ``cache.get(key)`` as it is."""
    value = cache.get(key)
    if value is not None:
        return value
    made = make(key)
    keep(cache, key, made)
    return made


def keep(cache: dict[K, V | None], key: K, value: V) -> None:
    """Note ``key`` in ``cache``: with ``value`` when it was noted before, else with ``None``
    (the rule of :func:`remember`, for a value made by the caller)."""
    seen = key in cache
    if len(cache) >= CACHE_SIZE:
        cache.clear()
    cache[key] = value if seen else None


# URL objects whose text was asked for, by identity, with that text: an entry keeps its object
# alive, so an id is not reused while it is there.
_texts: dict[int, tuple[httpx.URL, str] | None] = {}


def url_text(url: httpx.URL) -> str:
    """``str(url)``, worked out once per URL object seen twice (~1 µs each time otherwise).

    The client hands out one URL object per distinct URL, so requests taking turns between
    hosts find theirs here.
    """
    known = _texts.get(id(url))
    if known is not None and known[0] is url:
        return known[1]
    text = str(url)
    keep(_texts, id(url), (url, text))
    return text
