"""Terminals: what finally sends a request. ``HttpxTerminal`` is the default."""

from ._httpx import HttpxTerminal, read_capped
from ._mapping import map_exception

__all__ = ["HttpxTerminal", "map_exception", "read_capped"]
