"""``RetryBudget``: retries may add only a share of recent traffic, per upstream.

For each key (an upstream), over the last ``window`` seconds::

    retries  <=  ratio * requests  +  min_per_second * window

``requests`` counts logical requests (each deposits once, on its first attempt) and ``retries``
counts the retries that were allowed. The first term lets a busy upstream be retried in
proportion to its traffic; the second is a floor, so a quiet upstream can still retry at all.
When a retry would break the cap, :class:`Retry` returns ``RetryBudgetExhaustedError`` at once
instead of sleeping and trying again: in a full outage the upstream sees at most
``(1 + ratio)`` times the offered load plus the floor, not ``1 + max_retries`` times.

Each key keeps two rings of ``buckets`` counters (requests and retries) covering the window,
and their running totals: memory per key is constant, however heavy the traffic, and every
operation is O(1) amortised. Keys idle for a whole window hold nothing worth keeping and are
dropped; ``max_keys`` bounds the rest.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._args import is_number, need_callable
from .._errors import ConfigError
from .._settings import HttpSettings
from ..state._shared import SharedBudgetStore
from ..state._store import DEFAULT_MAX_KEYS

__all__ = ["RetryBudget", "RetryBudgetSnapshot"]

_floor = math.floor

_FLUSH_EVERY = 0.05  # seconds a shared budget's deposits wait to go to the store in one call

# Absorbs float rounding in ``ratio * requests`` (0.1 * 3 is 0.30000000000000004).
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class RetryBudgetSnapshot:
    """One key's budget at the moment it was read.

    Attributes:
        requests: logical requests deposited during the window.
        retries: retries withdrawn during the window.
        available: retries that would be allowed now.
    """

    requests: int
    retries: int
    available: int


class _Ledger:
    """The counters of one key: two rings of per-bucket counts and their totals."""

    __slots__ = ("request_total", "requests", "retries", "retry_total", "tick")

    def __init__(self, buckets: int, tick: int) -> None:
        self.requests = [0] * buckets
        self.retries = [0] * buckets
        self.request_total = 0
        self.retry_total = 0
        self.tick = tick  # the latest bucket written; its slot is tick % buckets

    def advance(self, tick: int) -> None:
        """Clear the buckets that fell out of the window by ``tick``."""
        gap = tick - self.tick
        if gap <= 0:
            return  # same bucket (or a clock that stepped back: keep writing the latest one)
        size = len(self.requests)
        if gap >= size:
            for ring in (self.requests, self.retries):
                for slot in range(size):
                    ring[slot] = 0
            self.request_total = self.retry_total = 0
        else:
            for passed in range(self.tick + 1, tick + 1):
                slot = passed % size
                self.request_total -= self.requests[slot]
                self.retry_total -= self.retries[slot]
                self.requests[slot] = self.retries[slot] = 0
        self.tick = tick

    def totals_at(self, tick: int) -> tuple[int, int]:
        """The totals as they will read at ``tick``, without changing anything."""
        gap = tick - self.tick
        if gap <= 0:
            return self.request_total, self.retry_total
        size = len(self.requests)
        if gap >= size:
            return 0, 0
        requests, retries = self.request_total, self.retry_total
        for passed in range(self.tick + 1, tick + 1):
            slot = passed % size
            requests -= self.requests[slot]
            retries -= self.retries[slot]
        return requests, retries


class RetryBudget:
    """A retry budget per upstream key, in the style of Finagle's and gRPC's.

    Over the last ``window`` seconds, each key may spend at most ``ratio * requests +
    min_per_second * window`` retries. ``Retry`` deposits once per logical request and
    withdraws once per retry; a refused withdrawal ends the call with
    ``RetryBudgetExhaustedError``. One budget can be given to several ``Retry`` stages (of one
    client or many): they then share each upstream's budget.

    The window is a ring of ``buckets`` equal slices: an event counts for between
    ``window * (1 - 1/buckets)`` and ``window`` seconds. Every method is synchronous and never
    awaits, so the budget stays consistent under any number of concurrent tasks. Like the
    in-memory breaker store it takes no lock: share it within one event loop's thread, not
    between threads.

    Keys idle for a whole window are forgotten (their counters are all zero by then). Beyond
    ``max_keys`` the least recently used key is forgotten too, and starts again with the
    floor alone when it comes back.

    Args:
        ratio: retries allowed per logical request of the window, 0..1 (0.2: 20%).
        min_per_second: retries per second always allowed, whatever the traffic (>= 0).
        window: seconds of traffic the budget counts (> 0).
        buckets: slices the window is cut into (>= 1); more is smoother and uses more memory.
        max_keys: the most keys kept at once (>= 1).
        clock: monotonic clock, injectable for tests.
        store: a store shared by processes (``httprail-redis``'s ``RedisStore``): the budget is
            then one for every process using it. Deposits go to it in batches (every 50 ms,
            and with each withdrawal); a withdrawal is one atomic call. When it cannot be
            reached in time the budget decides with this process's own counts, which it keeps
            all along, and its share of the floor (its part of the shared requests).

    Example:
        >>> budget = RetryBudget(ratio=0.2, min_per_second=10, window=10)
        >>> shared = [Retry(budget=budget), CircuitBreaker()]  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        window: float = 10.0,
        buckets: int = 10,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
        store: SharedBudgetStore | None = None,
    ) -> None:
        if not is_number(ratio) or not 0 <= ratio <= 1:
            raise ConfigError(f"RetryBudget(ratio=...) must be a number within 0..1, got {ratio!r}")
        if not is_number(min_per_second) or min_per_second < 0:
            raise ConfigError(
                f"RetryBudget(min_per_second=...) must be a finite number >= 0, "
                f"got {min_per_second!r}"
            )
        if not is_number(window) or window <= 0:
            raise ConfigError(
                f"RetryBudget(window=...) must be a finite number > 0, got {window!r}"
            )
        for label, count in (("buckets", buckets), ("max_keys", max_keys)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"RetryBudget({label}=...) must be an int >= 1, got {count!r}")
        need_callable("RetryBudget", "clock", clock)
        if store is not None and not (
            isinstance(store, SharedBudgetStore) and inspect.iscoroutinefunction(store.budget_spend)
        ):
            raise ConfigError(
                f"RetryBudget(store=...) must be a shared budget store (async budget_spend), "
                f"got {store!r}"
            )
        self.ratio = float(ratio)
        self.min_per_second = float(min_per_second)
        self.window = float(window)
        self.buckets = buckets
        self.max_keys = max_keys
        self._reserve = self.min_per_second * self.window
        self._width = self.window / buckets
        self._clock = clock
        # Ordered by last write: every write moves its key to the end when it starts a new
        # bucket, so the keys idle the longest are always at the front.
        self._ledgers: OrderedDict[str, _Ledger] = OrderedDict()
        self._swept_at = -1
        self.store = store
        self._pending: dict[str, int] = {}  # deposits (minus refunds) not sent to the store yet
        self._shares: dict[str, float] = {}  # this process's part of a key's shared requests
        self._spent_here: dict[str, int] = {}  # retries allowed locally, not yet counted shared
        self._flusher: asyncio.Task[None] | None = None
        if store is not None:  # the in-memory budget's methods stay as they are
            self.deposit = self._deposit_shared  # type: ignore[method-assign]
            self.refund = self._refund_shared  # type: ignore[method-assign]

    @classmethod
    def from_settings(cls, settings: HttpSettings, **overrides: Any) -> RetryBudget:
        """A budget configured from ``settings`` (keyword arguments win).

        ``retry_budget_ratio``, ``retry_budget_min_per_second`` and ``retry_budget_window``
        give its numbers; ``retry_budget`` (on or off) is for the caller to read.
        """
        options: dict[str, Any] = {
            "ratio": settings.retry_budget_ratio,
            "min_per_second": settings.retry_budget_min_per_second,
            "window": settings.retry_budget_window,
        }
        options.update(overrides)
        return cls(**options)

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio}, min_per_second={self.min_per_second}, "
            f"window={self.window})"
        )

    @property
    def tracked_keys(self) -> int:
        """How many keys hold counters now (idle ones are dropped; at most ``max_keys``)."""
        return len(self._ledgers)

    def deposit(self, key: str) -> None:
        """Count one logical request to ``key`` (call it once, before the first attempt)."""
        tick = _floor(self._clock() / self._width)
        ledger = self._ledgers.get(key)
        if ledger is None or ledger.tick != tick or self._swept_at != tick:
            ledger = self._ledger(key, tick)
        ledger.requests[ledger.tick % self.buckets] += 1
        ledger.request_total += 1

    def refund(self, key: str) -> None:
        """Take back the deposit of a request to ``key`` that never reached it (its error was
        the caller's or the environment's): such requests do not raise the allowance."""
        ledger = self._ledgers.get(key)
        if ledger is None:
            return
        ledger.advance(_floor(self._clock() / self._width))
        bucket = ledger.tick % self.buckets
        if ledger.requests[bucket] > 0:
            ledger.requests[bucket] -= 1
            ledger.request_total -= 1

    def try_withdraw(self, key: str) -> bool:
        """Spend one retry for ``key`` if the budget allows it; ``False`` (and nothing spent)
        if it is exhausted."""
        return self._withdraw_locally(key, self._reserve)

    def _withdraw_locally(self, key: str, reserve: float) -> bool:
        ledger = self._ledger(key, _floor(self._clock() / self._width))
        allowance = self.ratio * ledger.request_total + reserve
        if ledger.retry_total + 1 > allowance + _EPSILON:
            return False
        ledger.retries[ledger.tick % self.buckets] += 1
        ledger.retry_total += 1
        return True

    async def withdraw(self, key: str) -> bool:
        """Spend one retry for ``key`` if the budget allows it: :meth:`try_withdraw`, or with a
        ``store``, one atomic call to the shared budget (with this process's pending deposits);
        this process's own counts decide when the store cannot be reached in time, with this
        process's share of the floor (its part of the requests the store last counted), so
        processes deciding alone together stay within the one shared floor."""
        store = self.store
        if store is None:
            return self.try_withdraw(key)
        answer = await store.budget_spend(
            key,
            self._pending.pop(key, 0),
            withdraw=True,
            ratio=self.ratio,
            reserve=self._reserve,
            window=self.window,
            buckets=self.buckets,
            spent=self._spent_here.pop(key, 0),
        )
        if answer is None:
            allowed = self._withdraw_locally(key, self._reserve * self._shares.get(key, 1.0))
            if allowed:  # the store counts it too, with the next batch
                self._spent_here[key] = self._spent_here.get(key, 0) + 1
                self._flush_soon()
            return allowed
        spent, shared = answer
        self._learn_share(key, shared)
        if spent:  # mirrored locally: the own counts stay close, should the store fail
            ledger = self._ledger(key, self._tick())
            ledger.retries[ledger.tick % self.buckets] += 1
            ledger.retry_total += 1
        return spent

    def _deposit_shared(self, key: str) -> None:
        RetryBudget.deposit(self, key)
        self._queue(key, 1)

    def _refund_shared(self, key: str) -> None:
        RetryBudget.refund(self, key)
        self._queue(key, -1)

    def _queue(self, key: str, count: int) -> None:
        """Count ``count`` deposits for the store; they go with the next batch."""
        self._pending[key] = self._pending.get(key, 0) + count
        self._flush_soon()

    def _flush_soon(self) -> None:
        """Start the batch sender unless it runs (no loop: the next withdrawal takes them)."""
        flusher = self._flusher
        if flusher is None or flusher.done():
            try:
                self._flusher = asyncio.get_running_loop().create_task(self._flush())
            except RuntimeError:  # no loop running: they go with the next withdrawal
                self._flusher = None

    async def _flush(self) -> None:
        """Send the pending deposits (and the retries spent while the store did not answer)
        every ``_FLUSH_EVERY`` seconds while there are some (a batch the store does not take
        in time still lands when it answers late; one that fails is dropped)."""
        store = self.store
        assert store is not None
        while self._pending or self._spent_here:
            await asyncio.sleep(_FLUSH_EVERY)
            pending, self._pending = self._pending, {}
            spent_here, self._spent_here = self._spent_here, {}
            for key in pending.keys() | spent_here.keys():
                count, spent = pending.get(key, 0), spent_here.get(key, 0)
                if count or spent:
                    answer = await store.budget_spend(
                        key,
                        count,
                        withdraw=False,
                        ratio=self.ratio,
                        reserve=self._reserve,
                        window=self.window,
                        buckets=self.buckets,
                        spent=spent,
                    )
                    if answer is not None:
                        self._learn_share(key, answer[1])

    def _learn_share(self, key: str, shared: int) -> None:
        """Note this process's part of ``key``'s requests (``shared``: every process's)."""
        ledger = self._ledgers.get(key)
        own = 0 if ledger is None else ledger.totals_at(self._tick())[0]
        shares = self._shares
        if len(shares) >= self.max_keys and key not in shares:
            shares.clear()
        shares[key] = min(1.0, own / shared) if shared > 0 else 1.0

    def available(self, key: str) -> int:
        """How many retries ``key`` could spend now (reads only; changes nothing)."""
        ledger = self._ledgers.get(key)
        if ledger is None:
            return self._available(0, 0)
        return self._available(*ledger.totals_at(self._tick()))

    def snapshot(self) -> dict[str, RetryBudgetSnapshot]:
        """Every key with traffic in the window, and its budget (a copy; changes nothing)."""
        tick = self._tick()
        result: dict[str, RetryBudgetSnapshot] = {}
        for key, ledger in self._ledgers.items():
            requests, retries = ledger.totals_at(tick)
            if requests or retries:
                available = self._available(requests, retries)
                result[key] = RetryBudgetSnapshot(requests, retries, available)
        return result

    def _tick(self) -> int:
        return _floor(self._clock() / self._width)

    def _available(self, requests: int, retries: int) -> int:
        allowance = self.ratio * requests + self._reserve
        return max(0, math.floor(allowance - retries + _EPSILON))

    def _ledger(self, key: str, tick: int) -> _Ledger:
        """``key``'s ledger, advanced to ``tick``; created (and the map kept small) if new."""
        ledgers = self._ledgers
        ledger = ledgers.get(key)
        if ledger is not None:
            if tick > ledger.tick:
                ledger.advance(tick)
                ledgers.move_to_end(key)
        else:
            ledger = ledgers[key] = _Ledger(self.buckets, tick)
            if len(ledgers) > self.max_keys:
                ledgers.popitem(last=False)
        if tick != self._swept_at:
            self._sweep(tick)
        return ledger

    def _sweep(self, tick: int) -> None:
        """Forget the keys whose every bucket has expired (at most once per bucket)."""
        self._swept_at = tick
        ledgers = self._ledgers
        oldest_live = tick - self.buckets + 1
        while ledgers:
            key, ledger = next(iter(ledgers.items()))
            if ledger.tick >= oldest_live:
                return
            del ledgers[key]
