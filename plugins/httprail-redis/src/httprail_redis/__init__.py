"""httprail's shared state on Redis: one view of each upstream across many processes.

:class:`RedisStore` is a :class:`httprail.state.StateStore` (the circuit breaker's records) and
a shared rate-limit and retry-budget store, on the official ``redis`` package's asyncio client
(Redis and Valkey servers). When Redis errs or is slow, stages decide with local state and no
request fails because of it. See docs/shared-state.md.

Example:
    >>> store = RedisStore("redis://127.0.0.1:6379/0")  # doctest: +SKIP
    >>> budget = RetryBudget(store=store)  # doctest: +SKIP
    >>> stack = [Retry(budget=budget), CircuitBreaker(store=store)]  # doctest: +SKIP
"""

from __future__ import annotations

from ._codec import decode, encode
from ._store import RedisStore, RedisStoreStats

__all__ = ["RedisStore", "RedisStoreStats", "decode", "encode"]
