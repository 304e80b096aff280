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


def test_url_text_is_the_text_of_that_very_url_object() -> None:
    """``url_text`` answers ``str(url)`` for each URL object, found again from its second
    sighting, and never another object's text (entries are checked by identity)."""
    import httpx

    from httprail._cache import _texts, url_text

    urls = [httpx.URL(f"http://h{i}.test/p?q={i}") for i in range(3)]
    for _ in range(3):
        assert [url_text(url) for url in urls] == [str(url) for url in urls]
    assert all(_texts[id(url)] == (url, str(url)) for url in urls)
    twin = httpx.URL("http://other.test/")
    _texts[id(twin)] = (urls[0], "http://h0.test/p?q=0")  # an entry left by another object
    assert url_text(twin) == "http://other.test/"
