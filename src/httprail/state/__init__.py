"""Shared state behind a small protocol: :class:`StateStore` and the in-memory default."""

from ._store import MemoryStore, StateStore

__all__ = ["MemoryStore", "StateStore"]
