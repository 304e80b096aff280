"""What a store shared by several processes offers beyond :class:`StateStore`.

The breaker needs only ``get`` and an atomic ``update``. The rate limiter and the retry budget
need operations a generic read-modify-write would make slow or racy across processes, so a
shared store (``httprail-redis``'s ``RedisStore``) offers them as purpose-built atomic calls.

Every method answers ``None`` when the shared state cannot be reached in time (an error, or a
slow answer): the stage then decides with its own local state, and no request fails or waits
longer because of the store. A store may also offer ``clock()``: a wall clock agreed between
the processes (seconds), which a ``CircuitBreaker`` on it uses instead of ``time.monotonic``
(monotonic clocks of different hosts do not agree).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["SharedBudgetStore", "SharedRateStore"]


@runtime_checkable
class SharedRateStore(Protocol):
    """A GCRA schedule and a pause per key, shared by every process using the store."""

    async def rate_acquire(
        self, key: str, interval: float, tolerance: float, max_wait: float | None
    ) -> tuple[bool, float] | None:
        """Reserve the next send slot of ``key``.

        ``interval`` is seconds per request (0: unlimited, only a pause holds requests back),
        ``tolerance`` the burst allowance in seconds, ``max_wait`` the longest wait that may be
        reserved (``None``: any). Answers ``(True, wait)``: reserved, send after ``wait``
        seconds; ``(False, wait)``: not reserved, the slot would come in ``wait`` seconds;
        ``None``: unreachable, decide locally.
        """
        ...

    async def rate_pause(self, key: str, seconds: float) -> None:
        """Hold every process's requests to ``key`` for ``seconds`` (a ``Retry-After``)."""
        ...


@runtime_checkable
class SharedBudgetStore(Protocol):
    """Retry-budget counters per key, in ``buckets`` slices of ``window`` seconds."""

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
        """Add ``deposits`` logical requests to ``key`` (may be negative: refunds) and
        ``spent`` retries a process allowed on its own while the store did not answer; with
        ``withdraw``, then spend one retry if ``retries + 1 <= ratio * requests + reserve``.

        Answers whether the retry was spent (``False`` without ``withdraw``) and the logical
        requests the shared window holds now (every process's), or ``None``: unreachable,
        decide locally.
        """
        ...
