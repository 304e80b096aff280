"""RedisStore against a real redis-server: atomic updates across stores, namespaced expiring
keys, cached reads, the purpose-built scripts, and what happens when Redis dies or freezes."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from httprail_redis import RedisStore, decode, encode

from httprail import ConfigError, HttpSettings
from httprail.middleware import BreakerRecord

from ._redis_server import RedisServer


def namespace() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client, to look at (and tamper with) what the stores wrote."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def bump(old: Any) -> tuple[int, int]:
    value = (old or 0) + 1
    return value, value


async def test_update_is_atomic_across_stores(redis_url: str, raw: aioredis.Redis) -> None:
    """Two stores (two processes) adding 1 concurrently 200 times each end at exactly 400."""
    ns = namespace()
    async with (
        RedisStore(redis_url, namespace=ns, timeout=10.0) as one,
        RedisStore(redis_url, namespace=ns, timeout=10.0) as two,
    ):
        await asyncio.gather(*(store.update("n", bump) for _ in range(200) for store in (one, two)))
        assert await raw.get(f"httprail:{ns}:state:n") == encode(400).encode()
        assert one.stats.conflicts + two.stats.conflicts > 0  # they did collide, and retried
        assert one.stats.fallbacks == two.stats.fallbacks == 0


async def test_keys_are_namespaced_and_expire_when_idle(
    redis_url: str, raw: aioredis.Redis
) -> None:
    """A write sets the key under httprail:<namespace>:state: with the idle expiry."""
    ns = namespace()
    async with RedisStore(redis_url, namespace=ns, idle_ttl=60, timeout=1.0) as store:
        assert await store.update("k", lambda old: (BreakerRecord(failures=2), "done")) == "done"
        ttl = await raw.pttl(f"httprail:{ns}:state:k")
        assert 55_000 < ttl <= 60_000
        assert await raw.keys(f"httprail:{ns}:*") == [f"httprail:{ns}:state:k".encode()]


async def test_reads_are_cached_for_read_ttl(redis_url: str, raw: aioredis.Redis) -> None:
    """A read within read_ttl of the last one does not ask Redis; a later one does."""
    ns = namespace()
    async with RedisStore(redis_url, namespace=ns, read_ttl=0.2, timeout=1.0) as store:
        await store.update("k", lambda old: (1, None))
        await raw.set(f"httprail:{ns}:state:k", encode(7))
        assert await store.get("k") == 1  # the value it wrote, reused
        await asyncio.sleep(0.25)
        assert await store.get("k") == 7


async def test_update_on_a_stale_copy_reads_again(redis_url: str, raw: aioredis.Redis) -> None:
    """An update computed on an outdated cached value is redone on the server's value."""
    ns = namespace()
    async with RedisStore(redis_url, namespace=ns, read_ttl=0, timeout=1.0) as store:
        await store.update("k", lambda old: (1, None))
        await raw.set(f"httprail:{ns}:state:k", encode(5))
        assert await store.update("k", bump) == 6
        # unchanged on a stale copy: read again, nothing written
        assert await store.update("k", lambda old: (old, old)) == 6


async def test_a_value_it_cannot_read_is_replaced(
    redis_url: str, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage under a key reads as absent (logged) and the next update overwrites it."""
    ns = namespace()
    await raw.set(f"httprail:{ns}:state:k", b"\x80not json")
    async with RedisStore(redis_url, namespace=ns, timeout=1.0) as store:
        with caplog.at_level(logging.WARNING, logger="httprail.redis"):
            assert await store.get("k") is None
        assert "httprail.redis_bad_value" in caplog.text
        assert await store.update("k", bump) == 1


async def test_too_much_contention_is_decided_locally(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An update that loses every compare-and-set gives up after max_attempts, locally."""
    ns = namespace()
    key = f"httprail:{ns}:state:k"
    other = redis.Redis.from_url(redis_url)  # another process, writing between read and write
    writes = iter(range(100, 200))

    def meddling(old: Any) -> tuple[int, str]:
        other.set(key, encode(next(writes)))
        return (old or 0) + 1, "changed"

    try:
        other.set(key, encode(1))
        async with RedisStore(redis_url, namespace=ns, max_attempts=2, timeout=1.0) as store:
            with caplog.at_level(logging.WARNING, logger="httprail.redis"):
                assert await store.update("k", meddling) == "changed"
            assert store.stats.conflicts == 2
            assert store.stats.fallbacks == 1
            assert "httprail.redis_contended" in caplog.text
            assert decode(other.get(key)) == 102  # type: ignore[arg-type]  # the third run: local
    finally:
        other.close()


async def test_rate_script_reserves_slots_in_turn(redis_url: str) -> None:
    """GCRA with reservation: slots an interval apart; past max_wait nothing is reserved."""
    async with RedisStore(redis_url, namespace=namespace(), timeout=1.0) as store:
        answers = [await store.rate_acquire("u", 0.1, 0.0, None) for _ in range(3)]
        assert [granted for granted, _ in answers] == [True, True, True]
        waits = [wait for _, wait in answers]  # type: ignore[misc]
        assert waits[0] == 0
        assert waits[1] == pytest.approx(0.1, abs=0.02)
        assert waits[2] == pytest.approx(0.2, abs=0.02)
        refused = await store.rate_acquire("u", 0.1, 0.0, 0.05)
        assert refused is not None
        assert refused[0] is False
        assert refused[1] == pytest.approx(0.3, abs=0.02)
        # unlimited: only a pause holds requests back
        assert await store.rate_acquire("free", 0.0, 0.0, None) == (True, 0.0)
        await store.rate_pause("free", 0.5)
        await store.rate_pause("free", 0.1)  # a shorter pause does not shorten it
        paused = await store.rate_acquire("free", 0.0, 0.0, None)
        assert paused is not None
        assert paused[1] == pytest.approx(0.5, abs=0.05)


async def test_budget_script_counts_across_stores(redis_url: str) -> None:
    """Deposits from one store fund withdrawals from another, up to ratio * requests."""
    ns = namespace()
    options: dict[str, Any] = {"ratio": 0.2, "reserve": 0.0, "window": 10.0, "buckets": 10}
    async with (
        RedisStore(redis_url, namespace=ns, timeout=1.0) as one,
        RedisStore(redis_url, namespace=ns, timeout=1.0) as two,
    ):
        assert await one.budget_spend("u", 10, withdraw=False, **options) == (False, 10)
        spent = [await two.budget_spend("u", 0, withdraw=True, **options) for _ in range(4)]
        assert spent == [(True, 10), (True, 10), (False, 10), (False, 10)]
        # Retries spent without the store are counted as they are: 10 more requests fund 2,
        # both already spent elsewhere.
        assert await one.budget_spend("u", 10, withdraw=False, spent=2, **options) == (False, 20)
        assert await two.budget_spend("u", 0, withdraw=True, **options) == (False, 20)


async def test_clock_follows_the_server(redis_url: str) -> None:
    """clock() is Unix time corrected by the server's offset (same host: within 50 ms)."""
    async with RedisStore(redis_url, namespace=namespace(), timeout=1.0) as store:
        await store.get("anything")
        await asyncio.sleep(0.05)
        assert abs(store.clock() - time.time()) < 0.05


def test_configuration_mistakes_are_config_errors() -> None:
    """A bad URL, namespace or number is a ConfigError naming it; the URL's password never
    shows in the repr."""
    with pytest.raises(ConfigError, match="url"):
        RedisStore("http://127.0.0.1:6379")
    with pytest.raises(ConfigError, match="namespace"):
        RedisStore(namespace="a:b")
    with pytest.raises(ConfigError, match="timeout"):
        RedisStore(timeout=0)
    with pytest.raises(ConfigError, match="max_attempts"):
        RedisStore(max_attempts=0)
    assert "secret" not in repr(RedisStore("redis://user:secret@127.0.0.1:1/0"))
    for url, said in (
        ("redis://user:secret@127.0.0.1:notaport/0", "Port could not be cast"),
        ("redis://user:secret@127.0.0.1:99999/0", "Port out of range"),
    ):  # refused when built (it raised from repr() and from every call)
        with pytest.raises(ConfigError, match=f"cannot be used: {said}") as raised:
            RedisStore(url)
        assert "secret" not in str(raised.value)
    with pytest.raises(ConfigError, match="HTTP_REDIS_URL"):
        RedisStore.from_settings(HttpSettings())
    built = RedisStore.from_settings(
        HttpSettings(redis_url="redis://127.0.0.1:1/0", redis_timeout=0.02)
    )
    assert built.timeout == 0.02


async def test_a_dead_server_costs_no_more_than_the_timeout_and_is_resynced(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed: every call is answered locally at once (logged once); the local record is
    seeded with the last value seen; restarted empty: the record is written back."""
    ns = namespace()
    caplog.set_level(logging.INFO, logger="httprail.redis")
    store = RedisStore(redis_server.url, namespace=ns, timeout=0.05, retry_interval=0.1)
    async with store:
        await store.update("k", lambda old: (BreakerRecord(failures=2), None))
        redis_server.kill()
        started = time.monotonic()
        failures = await store.update("k", lambda old: (old._replace(failures=3), old.failures))
        assert failures == 2  # the local copy started from the last value seen
        assert time.monotonic() - started < 1.0  # answered here, not after a hang
        assert (await store.get("k")).failures == 3  # type: ignore[union-attr]
        assert await store.rate_acquire("u", 0.1, 0.0, None) is None
        assert (
            await store.budget_spend(
                "u", 1, withdraw=True, ratio=0.2, reserve=1, window=1, buckets=1
            )
            is None
        )
        assert store.stats.available is False
        assert store.stats.outages == 1
        assert caplog.text.count("httprail.redis_unavailable") == 1
        redis_server.start()  # same port, empty (no persistence)
        await asyncio.sleep(0.15)
        assert await store.rate_acquire("u", 0.1, 0.0, None) == (True, 0.0)
        assert store.stats.available is True
        for _ in range(50):  # the re-sync runs beside the call that found Redis back
            if store.stats.resynced:
                break
            await asyncio.sleep(0.01)
        assert store.stats.resynced == 1
        assert "httprail.redis_recovered" in caplog.text
        assert (await store.get("k")).failures == 3  # type: ignore[union-attr]


async def test_a_frozen_server_delays_a_call_by_the_timeout_at_most(
    redis_server: RedisServer,
) -> None:
    """SIGSTOPped Redis: each call gives up after the timeout; once calls have gone
    unanswered for 0.1 s (three timeouts, at least 0.1 s) Redis is left alone and the next
    calls are decided at once."""
    async with RedisStore(
        redis_server.url, namespace=namespace(), timeout=0.02, retry_interval=5
    ) as store:
        assert await store.rate_acquire("u", 0.0, 0.0, None) == (True, 0.0)
        redis_server.pause()
        try:
            waits = []
            stalled = time.monotonic()
            while store.stats.available:
                started = time.monotonic()
                assert await store.rate_acquire("u", 0.0, 0.0, None) is None
                waits.append(time.monotonic() - started)
                assert len(waits) < 20
            gave_up = time.monotonic() - stalled
            started = time.monotonic()
            assert await store.get("k") is None
            after = time.monotonic() - started
        finally:
            redis_server.resume()
        # each call ends at its timeout, not when the paused server answers (a hang guard:
        # the pause lasts until resume); and once an outage is declared, calls do not wait on
        # Redis at all: no further timeout is counted (the stats below)
        assert all(wait < 0.02 + 0.5 for wait in waits)
        assert 0.1 <= gave_up < 0.1 + 1.0
        assert after < 1.0
        assert store.stats.timeouts == len(waits) >= 5
        assert store.stats.outages == 1
        assert store.stats.fallbacks == len(waits) + 1


async def test_late_answers_are_remembered(redis_server: RedisServer) -> None:
    """A read or a write answered after the timeout is decided without it, but what it brings
    back becomes the value the store knows (and the late write did land)."""
    ns = namespace()
    key = f"httprail:{ns}:state:"
    other = redis.Redis.from_url(redis_server.url)
    try:
        other.set(key + "read", encode(7))
        async with RedisStore(
            redis_server.url, namespace=ns, timeout=0.02, read_ttl=60, retry_interval=5
        ) as store:
            assert await store.update("write", bump) == 1  # connected, and the value known
            redis_server.pause()
            assert await store.get("read") is None  # late: nothing known yet
            assert await store.update("write", bump) == 2  # decided on the value known
            redis_server.resume()
            await asyncio.sleep(0.2)
            redis_server.pause()
            try:
                assert await store.get("read") == 7  # the late answer, remembered
                assert await store.get("write") == 2
            finally:
                redis_server.resume()
            assert store.stats.timeouts == 2
            assert store.stats.outages == 0
        assert decode(other.get(key + "write")) == 2  # type: ignore[arg-type]
    finally:
        other.close()


async def test_a_record_answered_late_still_lands(redis_server: RedisServer) -> None:
    """record() answered after the timeout: the caller gets the change decided on the last
    value seen at once, and the change itself lands in Redis when it answers (an update's
    would be decided locally and kept nowhere)."""
    ns = namespace()
    async with RedisStore(redis_server.url, namespace=ns, timeout=0.02, retry_interval=5) as store:
        assert await store.record("k", bump) == 1
        redis_server.pause()
        try:
            started = time.monotonic()
            assert await store.record("k", bump) == 2  # decided on the 1 seen last
            assert time.monotonic() - started < 1.0  # at its timeout, not at the resume
            await asyncio.sleep(0.1)  # longer than three timeouts: still no outage
        finally:
            redis_server.resume()
        for _ in range(100):
            if not store._tasks:
                break
            await asyncio.sleep(0.01)
        assert store.stats.outages == 0
        assert store.stats.timeouts == 1
    async with RedisStore(redis_server.url, namespace=ns, timeout=1.0) as reader:
        assert await reader.get("k") == 2  # the late record landed


async def test_late_answers_that_come_are_not_an_outage(redis_url: str) -> None:
    """A store whose every answer comes after its (tiny) timeout, as in a busy process: each
    call is decided locally, but the answers that do come keep Redis in use (no outage);
    records all land."""
    async with RedisStore(redis_url, namespace=namespace(), timeout=1e-6) as store:
        for _ in range(20):
            await store.get("k")
            await store.record("k", bump)
            await asyncio.sleep(0.005)  # the late answers come meanwhile
        for _ in range(100):
            if not store._tasks:
                break
            await asyncio.sleep(0.01)
        assert store.stats.timeouts >= 20
        assert store.stats.outages == 0
    async with RedisStore(redis_url, namespace=store.namespace, timeout=1.0) as reader:
        assert await reader.get("k") == 20


async def test_breaker_counts_are_one_script_that_agrees_with_the_breaker(
    redis_url: str, raw: aioredis.Redis
) -> None:
    """record_count() does in Redis what the breaker's own count does: failures add up across
    stores, the threshold opens the circuit at the given time (trips + 1), an outcome of an
    older generation changes nothing, a success clears; the caller gets the breaker's result."""
    from httprail import CircuitState
    from httprail.middleware import CircuitBreaker

    ns = namespace()
    breaker = CircuitBreaker(failure_threshold=3)
    async with (
        RedisStore(redis_url, namespace=ns, timeout=1.0) as one,
        RedisStore(redis_url, namespace=ns, timeout=1.0) as two,
    ):

        async def count(store: RedisStore[Any], failed: bool, trips: int, now: float) -> Any:
            change = partial(breaker._counted, failed, now, trips)
            return await store.record_count(
                "u", change, failed=failed, trips=trips, threshold=3, now=now
            )

        assert await count(one, True, 0, 10.0) is None
        assert await count(two, False, 0, 10.0) is None  # a success clears the count
        cleared = decode(await raw.get(f"httprail:{ns}:state:u"))  # type: ignore[arg-type]
        assert cleared.failures == 0
        assert await count(one, True, 0, 11.0) is None
        assert await count(two, True, 0, 11.5) is None
        event = await count(one, True, 0, 1_800_000_000.25)
        assert event is not None
        assert event.new is CircuitState.OPEN
        stored = decode(await raw.get(f"httprail:{ns}:state:u"))  # type: ignore[arg-type]
        assert stored.state is CircuitState.OPEN
        assert stored.trips == 1
        assert stored.opened_at == pytest.approx(1_800_000_000.25, abs=1e-3)
        assert await count(two, True, 0, 12.0) is None  # admitted before it opened: ignored
        assert decode(await raw.get(f"httprail:{ns}:state:u")) == stored  # type: ignore[arg-type]
        await raw.set(f"httprail:{ns}:state:v", b"not json")
        change = partial(breaker._counted, True, 1.0, 0)
        assert (
            await one.record_count("v", change, failed=True, trips=0, threshold=3, now=1.0) is None
        )
        assert (await one.get("v")).failures == 1  # type: ignore[union-attr]


def unbump(old: Any) -> tuple[int, None]:
    return (old or 0) - 1, None


async def test_try_update_decides_nothing_on_a_late_answer(redis_server: RedisServer) -> None:
    """try_update(): Redis's answer in time is the result; a late one is None (nothing
    decided), and should its write land all the same, the undo is recorded after it; in an
    outage (Redis killed) the change is decided locally."""
    async with RedisStore(
        redis_server.url, namespace=namespace(), timeout=0.02, retry_interval=5
    ) as store:
        await store.update("warm", bump)  # connected, the script loaded
        await asyncio.sleep(0.1)
        assert await store.try_update("k", bump, unbump) == (1,)
        redis_server.pause()
        try:
            assert await store.try_update("k", bump, unbump) is None
        finally:
            redis_server.resume()
        await asyncio.sleep(0.1)
        assert await store.try_update("k", bump, unbump) == (2,)  # the late one was undone
        redis_server.kill()
        assert await store.try_update("k", bump, unbump) == (3,)  # down: decided locally
        assert store.stats.available is False
