"""Shared state behind a small protocol: :class:`StateStore` and the in-memory default; what a
store shared by processes offers beyond it (:class:`SharedRateStore`,
:class:`SharedBudgetStore`)."""

from ._shared import SharedBudgetStore, SharedRateStore
from ._store import MemoryStore, StateStore

__all__ = ["MemoryStore", "SharedBudgetStore", "SharedRateStore", "StateStore"]
