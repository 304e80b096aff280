"""Where shared per-key state (breaker records, later budgets) lives.

A store maps string keys to immutable values and changes them with one atomic
read-modify-write, :meth:`StateStore.update`. The in-memory store is the default; a shared
store (Redis) implements the same two methods so several processes can share one breaker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar, runtime_checkable

from .._args import need_callable
from .._errors import ConfigError

__all__ = ["DEFAULT_MAX_KEYS", "MemoryStore", "StateStore", "shed_idle"]

V = TypeVar("V")
R = TypeVar("R")

DEFAULT_MAX_KEYS = 10_000
"""How many keys (upstreams) a per-upstream table keeps by default: the breaker's store, the
retry budget and the metrics (see each one's ``max_keys`` / ``max_upstreams``; the hedge, with a
latency window per upstream, keeps 1,000)."""


@runtime_checkable
class StateStore(Protocol[V]):
    """Keyed immutable values with an atomic update."""

    async def get(self, key: str) -> V | None:
        """The value stored under ``key``, or ``None``."""
        ...

    async def update(self, key: str, change: Callable[[V | None], tuple[V, R]]) -> R:
        """Atomically replace the value under ``key`` by ``change(old)[0]``; return ``[1]``.

        ``change`` is pure and may be called more than once by stores that retry on conflict.
        """
        ...


class MemoryStore(Generic[V]):
    """A process-local store: a dict, updated without any await in between (so atomically).

    It holds at most about ``max_keys`` keys: when an update adds a key past that, the keys
    written least recently are forgotten until a tenth of the room is free again, skipping
    those whose value ``evictable`` says must stay (a circuit that is open). Only kept values
    can make it hold more than ``max_keys``, and then only until they become evictable; the
    sweep costs O(1) per added key, amortised. Reads do not count as use: a key is as recent
    as its last write (a breaker writes on failures and state changes only).

    Args:
        max_keys: the keys kept (>= 1), or ``None`` for no bound.
        evictable: whether a value may be forgotten (default: any). A ``CircuitBreaker``
            given a store without one installs its own.
    """

    __slots__ = ("_limit", "_values", "evictable", "max_keys", "peek")

    def __init__(
        self,
        *,
        max_keys: int | None = DEFAULT_MAX_KEYS,
        evictable: Callable[[V], bool] | None = None,
    ) -> None:
        if max_keys is not None and (
            isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1
        ):
            raise ConfigError(
                f"MemoryStore(max_keys=...) must be an int >= 1 or None, got {max_keys!r}"
            )
        need_callable("MemoryStore", "evictable", evictable, optional=True)
        self.max_keys = max_keys
        self.evictable = evictable
        self._limit = max_keys if max_keys is not None else -1
        self._values: dict[str, V] = {}  # least recently written first
        # The value under a key now, without an await (the dict's own ``get``): a stage that
        # knows its store is a MemoryStore reads through it on the hot path.
        self.peek: Callable[[str], V | None] = self._values.get

    async def get(self, key: str) -> V | None:
        """The value stored under ``key``, or ``None``."""
        return self._values.get(key)

    async def update(self, key: str, change: Callable[[V | None], tuple[V, R]]) -> R:
        """Replace the value under ``key`` by ``change(old)[0]`` and return ``change(old)[1]``."""
        values = self._values
        value, result = change(values.get(key))
        values.pop(key, None)  # re-inserted: the most recently written key is the last one
        values[key] = value
        if len(values) > self._limit >= 0:
            self._sweep(key)
        return result

    def snapshot(self) -> dict[str, V]:
        """A copy of every key and value (synchronous; for inspection and metrics)."""
        return dict(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def _sweep(self, keep: str) -> None:
        """Forget the least recently written evictable keys until a tenth of the room is free
        (never ``keep``, the key just written); then wait for as many new keys again."""
        assert self.max_keys is not None
        values = self._values
        slack = max(1, self.max_keys // 10)
        target = self.max_keys - slack
        evictable = self.evictable
        doomed: list[str] = []
        excess = len(values) - target
        for key, value in values.items():
            if len(doomed) >= excess:
                break
            if key != keep and (evictable is None or evictable(value)):
                doomed.append(key)
        for key in doomed:
            del values[key]
        # Kept values (open circuits) may leave the table fuller than the target: sweep again
        # only after ``slack`` more keys, so the cost per key stays O(1).
        self._limit = max(self.max_keys, len(values) + slack)


class Counted(Protocol):
    """An entry of a per-upstream table that counts its requests (what :func:`shed_idle` reads).

    ``swept`` starts at -1; the sweep sets it to ``requests``, so "unchanged" means "unused".
    """

    requests: int
    swept: int


C = TypeVar("C", bound=Counted)


def shed_idle(table: dict[str, C], room: int, forget: Callable[[C], object] | None = None) -> None:
    """Free a tenth of ``room`` in ``table`` (ordered oldest first), by second chance: entries
    with no request since the last sweep go (``forget`` is given each), those with one move to
    the back; if all had one, the oldest go all the same. A request pays nothing for this: it
    only counts ``requests``, which it does anyway (the Metrics and Hedge tables)."""
    target = room - max(1, room // 10)
    for key in list(table):
        if len(table) <= target:
            return
        entry = table.pop(key)
        if entry.swept != entry.requests:  # used since the last sweep: a second chance
            entry.swept = entry.requests
            table[key] = entry
        elif forget is not None:
            forget(entry)
    for key in list(table):
        if len(table) <= target:
            return
        entry = table.pop(key)
        if forget is not None:
            forget(entry)
