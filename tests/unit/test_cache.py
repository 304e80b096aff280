"""The per-request memo: a value is kept from the second time its key is asked for, and the
memo never holds more than CACHE_SIZE entries."""

from __future__ import annotations

from httprail import _cache
from httprail._cache import remember


def test_a_value_is_kept_from_the_second_time_its_key_comes() -> None:
    """First sight: made, not kept; second: made again and kept; third: found."""
    made: list[str] = []

    def make(key: str) -> list[str]:
        made.append(key)
        return [key]

    cache: dict[str, list[str] | None] = {}
    first = remember(cache, "a", make)
    second = remember(cache, "a", make)
    third = remember(cache, "a", make)
    assert first == second == ["a"]
    assert third is second
    assert made == ["a", "a"]


def test_distinct_keys_keep_no_value_and_the_memo_stays_bounded() -> None:
    """A stream of distinct keys keeps none of the values made for them, and the memo is
    emptied when it reaches CACHE_SIZE."""
    values = []
    cache: dict[int, object | None] = {}
    for key in range(3 * _cache.CACHE_SIZE + 5):
        values.append(remember(cache, key, lambda k: object()))
        assert len(cache) <= _cache.CACHE_SIZE
    assert not any(kept in values for kept in cache.values())
