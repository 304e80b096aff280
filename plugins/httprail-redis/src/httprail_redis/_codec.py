"""Values as JSON of known types, never pickle: a value read from a shared server is data, not
code. A breaker record is a tagged list of its fields; other values must be plain JSON."""

from __future__ import annotations

import json
import math
from typing import Any

from httprail import CircuitState
from httprail.middleware import BreakerRecord

__all__ = ["decode", "encode"]

_BREAKER = "breaker"
_JSON = "json"
_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_STATES = {state.value: state for state in CircuitState}


def encode(value: object) -> str:
    """``value`` as text to store.

    Raises:
        TypeError: not a breaker record nor a plain JSON value (``dict``/``list``/``str``/
            ``int``/``float``/``bool``/``None``).
    """
    if isinstance(value, BreakerRecord):
        state, *numbers = value
        fields = [*numbers[:8], list(value.calls), list(value.fails), *numbers[10:]]
        return _dumps([_BREAKER, state.value, *fields])
    try:
        return _dumps([_JSON, value])
    except ValueError as exc:  # NaN or infinity
        raise TypeError(f"cannot store {type(value).__name__}: {exc}") from None


def decode(text: bytes | str) -> Any:
    """The value ``text`` holds.

    Raises:
        ValueError: not something :func:`encode` wrote.
    """
    try:
        data = json.loads(text)
    except RecursionError:  # nested past the interpreter's limit: written by someone else
        raise ValueError("not a stored value: nested too deep") from None
    if not isinstance(data, list) or not data:
        raise ValueError("not a stored value")
    if data[0] == _JSON and len(data) == 2:
        return data[1]
    if data[0] == _BREAKER and len(data) == 14:
        state = _STATES[data[1]]
        failures, opened_at, trips, streak, probes, passed, lease_until, epoch = data[2:10]
        calls, fails, window_calls, window_fails = data[10:]
        record = BreakerRecord(
            state,
            _int(failures),
            _float(opened_at),
            _int(trips),
            _int(streak),
            _int(probes),
            _int(passed),
            _float(lease_until),
            _int(epoch),
            tuple(_int(c) for c in calls),
            tuple(_int(f) for f in fails),
            _int(window_calls),
            _int(window_fails),
        )
        if len(record.calls) != len(BreakerRecord().calls) or len(record.fails) != len(
            record.calls
        ):
            raise ValueError("a breaker record with the wrong window size")
        return record
    raise ValueError("not a stored value")


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an int, got {type(value).__name__}")
    return value


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    return float(value)
