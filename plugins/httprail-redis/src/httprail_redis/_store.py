"""``RedisStore``: breaker records, rate-limit schedules and retry budgets shared through Redis.

Every read-modify-write is one atomic server-side operation: a compare-and-set script for
:meth:`RedisStore.update` (retried, up to ``max_attempts``, when another process wrote first),
and one purpose-built script each for the rate limit (GCRA), the shared pause and the retry
budget. Keys are ``httprail:<namespace>:<kind>:<key>`` and expire when idle.

Redis failing never fails a request: an operation that errs, or has not answered within
``timeout`` seconds, is decided with local state instead (a private in-memory store for
records, seeded with the last value read from Redis; the stage's own state for rate limits and
budgets). After an error, or when calls have gone unanswered for three timeouts (at least 0.1
s) with no answer at all in between (a frozen server; late answers that do come mean a busy
process, not an outage), Redis is left alone for ``retry_interval`` seconds before one call
tries it again. Outcomes a breaker records (:meth:`RedisStore.record`) are never lost to a late
answer: they land in Redis when it answers. A half-open probe slot
(:meth:`RedisStore.try_update`) is only ever granted by Redis itself. When it answers, the
store goes back to it, writes the records it kept locally into Redis where Redis has none (a
restarted server), and logs ``httprail.redis_recovered``. A late operation is never cancelled
(its answer is simply not used), so its connection stays usable.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Self, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from httprail import ConfigError, HttpSettings
from httprail.middleware import BreakerRecord
from httprail.state import MemoryStore
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from . import _scripts
from ._codec import decode, encode

__all__ = ["RedisStore", "RedisStoreStats"]

V = TypeVar("V")
R = TypeVar("R")
T = TypeVar("T")

_log = logging.getLogger("httprail.redis")
_UNREACHABLE: Any = object()  # an operation Redis did not answer in time
_UNKNOWN: Any = object()  # a key's raw value not read yet
_CACHE_MAX = 10_000
_CLOSED_RECORD = BreakerRecord()
# How long calls may stay unanswered, with nothing answered in between, before Redis counts as
# away (errors: one is enough): three timeouts, and never less than 0.1 s. A late answer that
# does come means Redis is there and this process is slow (a busy event loop lags by tens of
# milliseconds): that is not an outage.
_STALL = 3
_STALL_MIN = 0.1
_JITTER = 0.0005  # seconds: about one round trip to a Redis on the same network
_SCHEMES = ("redis", "rediss", "unix", "valkey", "valkeys")


class _Turn:
    """Updates of one key in this process, one at a time."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


@dataclass(frozen=True, slots=True)
class RedisStoreStats:
    """What the store went through (counts since it was built).

    Attributes:
        available: whether the last operation reached Redis.
        errors: operations that failed with an error (connection refused, reset, ...).
        timeouts: operations not answered within ``timeout``.
        fallbacks: operations decided with local state (errors, timeouts, and calls made
            while Redis was left alone).
        conflicts: compare-and-set attempts lost to another writer (then retried).
        outages: times Redis became unreachable.
        resynced: records written back into Redis after an outage.
    """

    available: bool
    errors: int
    timeouts: int
    fallbacks: int
    conflicts: int
    outages: int
    resynced: int


class RedisStore(Generic[V]):
    """A :class:`httprail.state.StateStore` (and shared rate and budget store) on Redis.

    Give one store to the stages of every process that must share their view of upstreams:
    ``CircuitBreaker(store=s)``, ``RateLimiter(rate=200, store=s)``,
    ``Retry(budget=RetryBudget(store=s))``; in a stack file, ``store = "redis"`` in the
    stage's options with the URL from ``HTTP_REDIS_URL`` (or ``settings.redis_url``).

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS) or
            ``unix:///path/to/socket``; Valkey servers work the same.
        namespace: keys are ``httprail:<namespace>:...``: stores with different namespaces on
            one server share nothing.
        timeout: seconds an operation may take before the stage decides locally (default
            5 ms: Redis on the same network answers in well under 1 ms).
        read_ttl: seconds a value read (or written) is reused for reads without asking Redis
            again (the breaker reads its record before every call).
        idle_ttl: seconds a key lives after its last write.
        retry_interval: seconds Redis is left alone after it failed (an error, or calls
            unanswered for three timeouts, at least 0.1 s); then one call tries it.
        max_attempts: compare-and-set attempts per update before it is decided locally.
        client: a ``redis.asyncio.Redis`` to use instead of one built from ``url`` (it is not
            closed by :meth:`aclose`).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "default",
        timeout: float = 0.005,
        read_ttl: float = 0.02,
        idle_ttl: float = 3600.0,
        retry_interval: float = 0.5,
        max_attempts: int = 64,
        client: aioredis.Redis | None = None,
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
            raise ConfigError(
                f"RedisStore(url=...) must be a redis://, rediss:// or unix:// URL, "
                f"got a {type(url).__name__} with scheme {_scheme(url)!r}"
            )
        try:  # what redis-py reads from the URL when it connects (port, database, options)
            parse_url(url)
        except ValueError as exc:  # its words name the part (a ConfigError is redacted too)
            raise ConfigError(f"RedisStore(url=...) cannot be used: {exc}") from None
        if not isinstance(namespace, str) or not namespace or any(c in namespace for c in ": "):
            raise ConfigError(
                f"RedisStore(namespace=...) must be a non-empty string without ':' or spaces, "
                f"got {namespace!r}"
            )
        for label, value in (
            ("timeout", timeout),
            ("read_ttl", read_ttl),
            ("idle_ttl", idle_ttl),
            ("retry_interval", retry_interval),
        ):
            low_ok = label == "read_ttl"
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
                or (value == 0 and not low_ok)
            ):
                rule = ">= 0" if low_ok else "> 0"
                raise ConfigError(f"RedisStore({label}=...) must be a finite number {rule}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError(
                f"RedisStore(max_attempts=...) must be an int >= 1, got {max_attempts!r}"
            )
        self.url = url
        self.namespace = namespace
        self.timeout = float(timeout)
        self.read_ttl = float(read_ttl)
        self.idle_ttl = float(idle_ttl)
        self.retry_interval = float(retry_interval)
        self.max_attempts = max_attempts
        self._prefix = f"httprail:{namespace}:"
        self._given = client
        self._client: aioredis.Redis | None = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._local: MemoryStore[V] = MemoryStore()
        self._cache: dict[str, tuple[Any, V | None, float]] = {}
        self._down = False
        self._down_until = 0.0
        self._offset = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._turns: dict[str, _Turn] = {}
        self._landing: dict[str, set[asyncio.Task[Any]]] = {}  # late records, per key
        self._stalled_since: float | None = None  # start of the oldest unanswered late call
        self._counts = dict.fromkeys(
            ("errors", "timeouts", "fallbacks", "conflicts", "outages", "resynced"), 0
        )

    @classmethod
    def from_settings(cls, settings: HttpSettings, **overrides: Any) -> RedisStore[Any]:
        """A store on ``settings.redis_url`` (``HTTP_REDIS_URL``), timeout ``redis_timeout``.

        Raises:
            ConfigError: no URL is set.
        """
        url = overrides.pop("url", None) or getattr(settings, "redis_url", None)
        if not url:
            raise ConfigError(
                "the 'redis' store needs a URL: set HTTP_REDIS_URL, or redis_url in the "
                "stack file's settings"
            )
        timeout = getattr(settings, "redis_timeout", None)
        if timeout is not None:
            overrides.setdefault("timeout", timeout)
        return cls(url, **overrides)

    def __repr__(self) -> str:
        return f"RedisStore({_safe(self.url)!r}, namespace={self.namespace!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this store opened (not a ``client`` it was given)."""
        for task in list(self._tasks):
            task.cancel()
        client, self._client, self._loop = self._client, self._given, None
        if client is not None and client is not self._given:
            await client.aclose()

    # -- what the stages call --------------------------------------------------------------

    def clock(self) -> float:
        """Seconds of the server's clock (Unix time), read locally: ``time.time()`` plus the
        offset measured when the store connected. Breakers on this store use it, so records
        written by processes on different hosts agree on when a circuit opened."""
        return time.time() + self._offset

    @property
    def stats(self) -> RedisStoreStats:
        """Counts of errors, timeouts, local decisions and outages so far."""
        return RedisStoreStats(available=not self._down, **self._counts)

    async def get(self, key: str) -> V | None:
        """The value under ``key`` (reused for ``read_ttl`` seconds after a read or write).

        Reads this process's own records: a :meth:`record` of ``key`` still on its way to
        Redis is waited for first (at most ``timeout``), so a breaker whose last failure was
        answered late sees what Redis made of it (the circuit another process opened) before
        it lets the next call through."""
        landing = self._landing.get(key)
        if landing:
            await asyncio.wait(landing, timeout=self.timeout)
        if self._down:  # in an outage, what this process decided locally comes first
            kept = self._local.peek(key)
            if kept is not None:
                return kept
        entry = self._cache.get(key)
        if entry is not None and time.monotonic() - entry[2] < self.read_ttl:
            return entry[1]
        full = self._prefix + "state:" + key
        raw = await self._call(_get, full, late=partial(self._read_late, key))
        if raw is _UNREACHABLE:
            return self._last_known(key)
        value = self._decode(raw)
        self._remember(key, raw, value)
        return value

    async def update(self, key: str, change: Callable[[V | None], tuple[V, R]]) -> R:
        """Replace the value under ``key`` by ``change(old)[0]`` atomically; ``[1]`` back.

        ``change`` may run more than once (another process wrote first: it runs again on the
        newer value). Updates of one key take turns within the process (so processes, not
        tasks, contend), all within ``timeout``: an update not done by then, or on a key too
        contended (``max_attempts`` lost compare-and-sets), is decided locally.
        """
        done = await self._bounded_update(key, change)
        if done is _UNREACHABLE:
            return await self._decide_locally(key, change)
        result: R = done[0]
        return result

    async def try_update(
        self,
        key: str,
        change: Callable[[V | None], tuple[V, R]],
        undo: Callable[[V | None], tuple[V, Any]],
    ) -> tuple[R] | None:
        """:meth:`update`, for a decision that only the shared state may take (a half-open
        breaker's probe slot): ``None`` when Redis answers later than ``timeout`` (nothing
        is decided: the caller refuses, as if another process held the slot). Should the late
        write land all the same, ``undo`` is recorded after it (the slot given back). In an
        outage it is decided locally, as :meth:`update` is."""
        done = await self._bounded_update(key, change, undo)
        if done is not _UNREACHABLE:
            return (done[0],)
        if self._down:
            return (await self._decide_locally(key, change),)
        return None

    async def _bounded_update(
        self,
        key: str,
        change: Callable[[V | None], tuple[V, R]],
        undo: Callable[[V | None], tuple[V, Any]] | None = None,
    ) -> Any:
        """``(result,)`` of the update in Redis within ``timeout``, or ``_UNREACHABLE``
        (``undo``: recorded should a write answered late have landed)."""
        if self._down and time.monotonic() < self._down_until:  # Redis is left alone now
            self._counts["fallbacks"] += 1
            return _UNREACHABLE
        turns = self._turns
        turn = turns.get(key)
        if turn is None:
            turn = turns[key] = _Turn()
        turn.users += 1
        holding = False
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                async with turn.lock:
                    holding = True
                    done = await self._update(key, change, undo=undo)
        except TimeoutError:
            if holding:  # Redis itself was slow
                self._late(started)
            else:  # waited too long for its turn: this one is decided locally
                self._counts["fallbacks"] += 1
            done = _UNREACHABLE
        finally:
            turn.users -= 1
            if not turn.users:
                del turns[key]
        return done

    async def record(self, key: str, change: Callable[[V | None], tuple[V, R]]) -> R:
        """:meth:`update`, for a change that must not be lost (an outcome a breaker counts).

        The caller waits at most ``timeout``, as for :meth:`update`; when Redis is later, the
        caller gets ``change``'s result on the last value seen (which this process then reads
        until Redis answers), and the change goes on in the background until it lands in Redis
        (or, should Redis fail meanwhile, in the local state of the outage). So a busy process
        never drops the failures it saw: were they dropped, a dead upstream would take more
        calls to trip a shared breaker than a local one.
        """
        return await self._record_with(key, change, None)

    async def record_count(
        self,
        key: str,
        change: Callable[[V | None], tuple[V, R]],
        *,
        failed: bool,
        trips: int,
        threshold: int,
        now: float,
    ) -> R:
        """:meth:`record` of a consecutive-mode breaker's count, done by one script in Redis.

        ``change`` must be the breaker's own count of that outcome (it decides locally, and
        gives the result from the record the script found): a failure of a call admitted
        under ``trips`` adds one while the circuit is closed, and opens it at ``now`` once
        ``threshold`` are counted; a success clears the count. One round trip however many
        processes count at once, where compare-and-set would make the losers try again.
        """
        args = ("1" if failed else "0", str(int(trips)), str(int(threshold)), repr(float(now)))
        return await self._record_with(key, change, args)

    async def _record_with(
        self, key: str, change: Callable[[V | None], tuple[V, R]], count: tuple[str, ...] | None
    ) -> R:
        if self._down and time.monotonic() < self._down_until:
            self._counts["fallbacks"] += 1
            return await self._decide_locally(key, change)
        started = time.monotonic()
        task = asyncio.ensure_future(self._record(key, change, count))
        try:
            done, _ = await asyncio.wait((task,), timeout=self.timeout)
        except asyncio.CancelledError:  # the caller goes; what it saw is still recorded
            self._keep(task)
            raise
        if done:
            result: R = task.result()
            return result
        self._keep(task)
        landing = self._landing.setdefault(key, set())
        landing.add(task)
        task.add_done_callback(partial(self._landed, key))
        self._late(started)
        # Until Redis answers, this process sees its own change on the last value seen (so
        # its next decisions count it); the record read from Redis replaces it when it lands.
        new, result = change(self._last_known(key))
        self._cache[key] = (_UNKNOWN, new, time.monotonic())
        return result

    async def _record(
        self, key: str, change: Callable[[V | None], tuple[V, R]], count: tuple[str, ...] | None
    ) -> R:
        turns = self._turns
        turn = turns.get(key)
        if turn is None:
            turn = turns[key] = _Turn()
        turn.users += 1
        try:
            async with turn.lock:
                if count is None:
                    done = await self._update(key, change, patient=True)
                else:
                    done = await self._count(key, change, count)
        finally:
            turn.users -= 1
            if not turn.users:
                del turns[key]
        if done is _UNREACHABLE:  # Redis failed meanwhile: kept with the outage's records
            return await self._decide_locally(key, change)
        result: R = done[0]
        return result

    async def _count(
        self, key: str, change: Callable[[V | None], tuple[V, R]], count: tuple[str, ...]
    ) -> Any:
        """``(result,)`` of a breaker count done by the ``COUNT`` script, or ``_UNREACHABLE``."""
        failed, trips, threshold, now = count
        ttl = str(math.ceil(self.idle_ttl * 1000))
        buckets = str(len(_CLOSED_RECORD.calls))
        script = self._script("count", _scripts.COUNT)
        keys = [self._prefix + "state:" + key]
        args = [trips, threshold, now, failed, ttl, buckets]
        answer = await self._call(script, keys=keys, args=args, patient=True)
        if answer is _UNREACHABLE:
            return answer
        if answer[0] == -1:  # a value the script cannot read: compare-and-set replaces it
            return await self._update(key, change, patient=True)
        old = self._decode(answer[1]) if answer[1] else None
        result = change(old)[1]
        new = answer[2] or None
        self._remember(key, new, self._decode(new))
        return (result,)

    async def _update(
        self,
        key: str,
        change: Callable[[V | None], tuple[V, R]],
        *,
        patient: bool = False,
        undo: Callable[[V | None], tuple[V, Any]] | None = None,
    ) -> Any:
        """``(result,)`` of the update in Redis, or ``_UNREACHABLE``. ``patient``: each call
        waits for Redis's answer, however late (errors still end it)."""
        full = self._prefix + "state:" + key
        entry = self._cache.get(key)
        raw = _UNKNOWN if entry is None else entry[0]
        fresh = entry is not None and time.monotonic() - entry[2] < self.read_ttl
        ttl = str(math.ceil(self.idle_ttl * 1000))
        for attempt in range(1, self.max_attempts + 1):
            if raw is _UNKNOWN:
                raw = await self._call(
                    _get, full, late=partial(self._read_late, key), patient=patient
                )
                if raw is _UNREACHABLE:
                    return raw
                fresh = True
            old = self._decode(raw)
            new, result = change(old)
            if new == old and old is not None:
                if fresh:  # nothing to write, and what was read is recent enough
                    self._remember(key, raw, old)
                    return (result,)
                raw = _UNKNOWN  # unchanged on a stale copy: read again before deciding
                continue
            written = encode(new).encode()
            expected = b"" if raw is None else raw
            cas = self._script("cas", _scripts.CAS)
            late = partial(self._cas_late, key, written, new, undo)
            answer = await self._call(
                cas, keys=[full], args=[expected, written, ttl], late=late, patient=patient
            )
            if answer is _UNREACHABLE:
                return answer
            if answer[0] == 1:
                self._remember(key, written, new)
                return (result,)
            self._counts["conflicts"] += 1
            raw = answer[1] if len(answer) > 1 else None
            fresh = True
            # Lost to another process: let it go first, by a random fraction of a round trip
            # (without it two busy processes can keep colliding, one losing every time).
            await asyncio.sleep(random.random() * min(self.timeout, _JITTER) * attempt)
        _log.warning("httprail.redis_contended", extra={"key": key, "attempts": self.max_attempts})
        self._counts["fallbacks"] += 1
        return _UNREACHABLE

    async def rate_acquire(
        self, key: str, interval: float, tolerance: float, max_wait: float | None
    ) -> tuple[bool, float] | None:
        """Reserve ``key``'s next send slot (see :class:`httprail.state.SharedRateStore`)."""
        keys = [self._prefix + "rate:" + key, self._prefix + "pause:" + key]
        limit = "-1" if max_wait is None else repr(max(0.0, float(max_wait)))
        args = [repr(float(interval)), repr(float(tolerance)), limit]
        script = self._script("rate", _scripts.RATE)
        answer = await self._call(script, keys=keys, args=args)
        if answer is _UNREACHABLE:
            return None
        return answer[0] == 1, float(answer[1])

    async def rate_pause(self, key: str, seconds: float) -> None:
        """Hold every process's requests to ``key`` for ``seconds`` (only ever later)."""
        keys = [self._prefix + "pause:" + key]
        script = self._script("pause", _scripts.PAUSE)
        args = [repr(max(0.0, float(seconds)))]
        await self._call(script, keys=keys, args=args)

    async def budget_spend(
        self,
        key: str,
        deposits: int,
        *,
        withdraw: bool,
        ratio: float,
        reserve: float,
        window: float,
        buckets: int,
        spent: int = 0,
    ) -> tuple[bool, int] | None:
        """Deposit, and withdraw if asked, in one step (see ``SharedBudgetStore``)."""
        keys = [self._prefix + "budget:" + key]
        args = [
            str(int(deposits)),
            "1" if withdraw else "0",
            repr(float(ratio)),
            repr(float(reserve)),
            repr(window / buckets),
            str(int(buckets)),
            str(int(spent)),
        ]
        script = self._script("budget", _scripts.BUDGET)
        answer = await self._call(script, keys=keys, args=args)
        if answer is _UNREACHABLE:
            return None
        return answer[0] == 1, int(answer[1])

    # -- the connection, its timeout and the fallback -----------------------------------------

    async def _call(
        self,
        operation: Callable[..., Awaitable[Any]],
        *args: Any,
        late: Callable[[Any], None] | None = None,
        patient: bool = False,
        **kwargs: Any,
    ) -> Any:
        """``operation(*args, client=..., **kwargs)``'s answer, or ``_UNREACHABLE`` (an
        error, a slow answer, or Redis left alone after a failure). A late answer is given to
        ``late`` when it comes (the cache learns from it). ``patient``: no timeout (the
        client's socket timeout still bounds the wait)."""
        now = time.monotonic()
        if self._down:
            if now < self._down_until:
                self._counts["fallbacks"] += 1
                return _UNREACHABLE
            self._down_until = now + self.retry_interval  # this call probes; others stay local
        # The operation is never cancelled: a late answer is not used, but the connection it
        # is on stays in step (cancelling one mid-reply makes redis-py drop the connection,
        # and reconnecting is the last thing a loaded process needs).
        task = asyncio.ensure_future(operation(*args, client=self._bound(), **kwargs))
        try:
            done, _ = await asyncio.wait((task,), timeout=None if patient else self.timeout)
        except asyncio.CancelledError:
            task.add_done_callback(partial(self._answered_late, late))
            raise
        if not done:
            task.add_done_callback(partial(self._answered_late, late))
            return self._late(now)
        error = task.exception()
        if error is not None:
            if isinstance(error, RedisError | OSError):
                return self._failed(type(error).__name__, now)
            raise error
        self._stalled_since = None
        if self._down:
            self._recovered()
        return task.result()

    def _late(self, started: float) -> Any:
        """A call started at ``started`` not answered within ``timeout``: decided locally.
        Calls unanswered for ``_STALL`` timeouts with no answer in between are an outage (a
        frozen server: after three timeouts, at least 0.1 s); a late answer that comes ends the
        stall (a busy process)."""
        self._counts["timeouts"] += 1
        since = self._stalled_since
        if since is None:
            self._stalled_since = started
        elif time.monotonic() - since >= max(_STALL * self.timeout, _STALL_MIN):
            return self._failed("timeout", time.monotonic())
        self._counts["fallbacks"] += 1
        return _UNREACHABLE

    def _answered_late(self, late: Callable[[Any], None] | None, task: asyncio.Future[Any]) -> None:
        """A late call's outcome (retrieved, so an error of it is not reported as unhandled):
        an answer ends a stall, and is given to ``late``."""
        if task.cancelled() or task.exception() is not None:
            return
        self._stalled_since = None
        if late is not None:
            late(task.result())

    def _landed(self, key: str, task: asyncio.Task[Any]) -> None:
        landing = self._landing.get(key)
        if landing is not None:
            landing.discard(task)
            if not landing:
                del self._landing[key]

    def _keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a background task until it is done (and retrieve its outcome then)."""
        self._tasks.add(task)
        task.add_done_callback(self._kept_done)

    def _kept_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.warning(
                "httprail.redis_record_failed",
                extra={"store": _safe(self.url), "error": type(task.exception()).__name__},
            )

    def _failed(self, reason: str, now: float) -> Any:
        if reason != "timeout":
            self._counts["errors"] += 1
        self._counts["fallbacks"] += 1
        self._down_until = now + self.retry_interval
        if not self._down:
            self._down = True
            self._local = MemoryStore()  # this outage's records start from the cache, fresh
            self._counts["outages"] += 1
            _log.warning(
                "httprail.redis_unavailable",
                extra={"reason": reason, "store": _safe(self.url), "timeout": self.timeout},
            )
        return _UNREACHABLE

    def _recovered(self) -> None:
        self._down = False
        kept = self._local.snapshot()
        self._local = MemoryStore()
        self._cache.clear()
        _log.info("httprail.redis_recovered", extra={"store": _safe(self.url), "kept": len(kept)})
        if kept:
            self._spawn(self._resync(kept))
        self._spawn(self._sync_clock())

    async def _resync(self, kept: dict[str, V]) -> None:
        """Write the records kept locally during the outage where Redis has none (a server
        that restarted empty); where Redis kept its own, Redis wins."""
        ttl = str(math.ceil(self.idle_ttl * 1000))
        cas = self._script("cas", _scripts.CAS)
        for key, value in kept.items():
            full = self._prefix + "state:" + key
            written = encode(value).encode()
            answer = await self._call(cas, keys=[full], args=[b"", written, ttl])
            if answer is _UNREACHABLE:
                return
            if answer[0] == 1:
                self._counts["resynced"] += 1

    async def _sync_clock(self) -> None:
        """Measure the server clock's offset from ``time.time()`` (half a round trip off)."""
        before = time.time()
        answer = await self._call(_time)
        after = time.time()
        if answer is not _UNREACHABLE:
            seconds, micros = answer
            self._offset = seconds + micros / 1e6 - (before + after) / 2

    def _bound(self) -> aioredis.Redis:
        """The client for the running loop (a store used from a new loop opens new connections)."""
        loop = asyncio.get_running_loop()
        client = self._client
        if client is not None and (self._loop is loop or client is self._given):
            if self._loop is None:
                self._loop = loop
            return client
        client = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=max(self.timeout, 1.0),
            socket_timeout=max(self.timeout, 1.0),
            retry=RedisRetry(NoBackoff(), 0),
        )
        self._client, self._loop = client, loop
        self._scripts.clear()
        self._spawn(self._sync_clock())
        return client

    def _script(self, name: str, text: str) -> AsyncScript:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._bound().register_script(text)
        return script

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _decide_locally(self, key: str, change: Callable[[V | None], tuple[V, R]]) -> R:
        """``change``'s result, decided without Redis. One late answer: on the last value seen,
        keeping nothing (the late write may still land). In an outage: in the local store,
        whose record for ``key`` starts as the last value seen in Redis."""
        if not self._down:
            return change(self._last_known(key))[1]
        local = self._local
        if local.peek(key) is None:
            seed = self._last_known(key)
            if seed is not None:
                await local.update(key, lambda _: (seed, None))
        return await local.update(key, change)

    def _last_known(self, key: str) -> V | None:
        """The best value for ``key`` without Redis: this outage's local record, else the
        last value seen in Redis (however old)."""
        if self._down:
            kept = self._local.peek(key)
            if kept is not None:
                return kept
        entry = self._cache.get(key)
        return None if entry is None else entry[1]

    def _read_late(self, key: str, raw: Any) -> None:
        """A late read's answer: remembered, as the newest value seen."""
        self._remember(key, raw, self._decode(raw))

    def _cas_late(
        self,
        key: str,
        written: bytes,
        new: V,
        undo: Callable[[V | None], tuple[V, Any]] | None,
        answer: Any,
    ) -> None:
        """A late compare-and-set's answer: what Redis now holds is the newest value seen (and
        ``undo``, if given, is recorded after a write that landed unused)."""
        if answer[0] == 1:
            self._remember(key, written, new)
            if undo is not None:
                self._keep(asyncio.ensure_future(self._record_with(key, undo, None)))
        else:
            self._read_late(key, answer[1] if len(answer) > 1 else None)

    def _decode(self, raw: Any) -> V | None:
        if raw is None:
            return None
        try:
            value: V = decode(raw)
            return value
        except (ValueError, KeyError, TypeError):
            _log.warning("httprail.redis_bad_value", extra={"store": _safe(self.url)})
            return None

    def _remember(self, key: str, raw: Any, value: V | None) -> None:
        cache = self._cache
        if len(cache) >= _CACHE_MAX and key not in cache:
            cache.clear()
        cache[key] = (raw, value, time.monotonic())


async def _get(key: str, *, client: aioredis.Redis) -> Any:
    return await client.get(key)


async def _time(*, client: aioredis.Redis) -> Any:
    return await client.time()


def _scheme(url: object) -> str:
    return urlsplit(url).scheme if isinstance(url, str) else ""


def _safe(url: str) -> str:
    """``url`` without its user and password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
