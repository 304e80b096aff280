"""Checks of the arguments a user configures httprail's classes with.

A wrong argument is refused when the object is built, with a ``ConfigError`` that names the
class, the argument and the rule: not a ``TypeError`` from deep inside, and not a value taken
now that breaks the first request (a number where a clock belongs; one string where a
collection of strings belongs, which iterates as its letters: ``methods="POST"``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from ._errors import ConfigError
from ._settings import quoted

__all__ = [
    "is_int",
    "is_number",
    "items_of",
    "need",
    "need_callable",
    "refuse",
    "statuses_of",
    "strings_of",
]


def is_number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: object) -> bool:
    """An int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def refuse(owner: str, name: str, rule: str, value: object) -> NoReturn:
    """Raise the ``ConfigError`` for ``owner(name=value)``, which breaks ``rule``."""
    raise ConfigError(f"{owner}({name}=...) must be {rule}, got {quoted(value)}")


def need(ok: bool, owner: str, name: str, rule: str, value: object) -> None:
    """:func:`refuse` unless ``ok``."""
    if not ok:
        refuse(owner, name, rule, value)


def need_callable(owner: str, name: str, value: object, *, optional: bool = False) -> None:
    """``value`` is callable (or ``None``, when ``optional``)."""
    if not (callable(value) or (optional and value is None)):
        refuse(owner, name, "callable or None" if optional else "callable", value)


def items_of(owner: str, name: str, value: object, rule: str) -> tuple[Any, ...]:
    """The items of ``value``, a collection that is not a string, bytes or a mapping."""
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        refuse(owner, name, rule, value)
    try:
        return tuple(value)
    except Exception:  # noqa: BLE001 - an iterable that fails to iterate is refused the same
        refuse(owner, name, rule, value)


def strings_of(owner: str, name: str, value: object, what: str) -> tuple[str, ...]:
    """The items of ``value``, a collection of non-empty strings, in order (``what`` says of
    what, for the message)."""
    rule = f"a collection of {what}"
    items = items_of(owner, name, value, rule)
    if not all(isinstance(item, str) and item for item in items):
        refuse(owner, name, rule, value)
    return items


def statuses_of(owner: str, name: str, value: object) -> frozenset[int]:
    """``value``, a collection of HTTP status codes (ints within 100-599)."""
    items = items_of(owner, name, value, "a collection of HTTP status codes")
    bad = [s for s in items if isinstance(s, bool) or not isinstance(s, int) or not 100 <= s <= 599]
    if bad:
        refuse(owner, name, "HTTP status codes (ints within 100-599)", bad)
    return frozenset(items)
