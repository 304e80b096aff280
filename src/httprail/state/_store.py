"""Where shared per-key state (breaker records, later budgets) lives.

A store maps string keys to immutable values and changes them with one atomic
read-modify-write, :meth:`StateStore.update`. The in-memory store is the default; a shared
store (Redis) implements the same two methods so several processes can share one breaker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar, runtime_checkable

__all__ = ["MemoryStore", "StateStore"]

V = TypeVar("V")
R = TypeVar("R")


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
    """A process-local store: a dict, updated without any await in between (so atomically)."""

    __slots__ = ("_values", "peek")

    def __init__(self) -> None:
        self._values: dict[str, V] = {}
        # The value under a key now, without an await (the dict's own ``get``): a stage that
        # knows its store is a MemoryStore reads through it on the hot path.
        self.peek: Callable[[str], V | None] = self._values.get

    async def get(self, key: str) -> V | None:
        """The value stored under ``key``, or ``None``."""
        return self._values.get(key)

    async def update(self, key: str, change: Callable[[V | None], tuple[V, R]]) -> R:
        """Replace the value under ``key`` by ``change(old)[0]`` and return ``change(old)[1]``."""
        value, result = change(self._values.get(key))
        self._values[key] = value
        return result

    def snapshot(self) -> dict[str, V]:
        """A copy of every key and value (synchronous; for inspection and metrics)."""
        return dict(self._values)

    def __len__(self) -> int:
        return len(self._values)
