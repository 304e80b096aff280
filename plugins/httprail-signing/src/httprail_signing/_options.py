"""Option checks shared by :class:`HmacSigning` and :func:`verify`: each names the bad option.

Messages never contain the secret.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from httprail import ConfigError

from ._canonical import CONTENT_SHA256_HEADER, TIMESTAMP_HEADER, Algorithm

__all__ = [
    "check_algorithm",
    "check_clock",
    "check_header",
    "check_key_id",
    "check_max_age",
    "check_secret",
    "check_signed_headers",
]

# RFC 9110 field-name: one or more "tchar" (so no space, CR, LF, NUL, ':' or '(').
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ALGORITHMS: tuple[Algorithm, ...] = ("sha256", "sha512")
_ALWAYS_SIGNED = frozenset({TIMESTAMP_HEADER.lower(), CONTENT_SHA256_HEADER.lower()})
# The signature header must not overwrite something the request needs to be delivered.
_NOT_A_SIGNATURE_HEADER = _ALWAYS_SIGNED | {"host", "content-length", "transfer-encoding"}


def check_key_id(owner: str, key_id: object) -> str:
    """A key id that fits inside ``keyId="..."`` unescaped and reads the same on any server."""
    if (
        not isinstance(key_id, str)
        or not key_id
        or key_id != key_id.strip()
        or any(not " " <= ch <= "~" or ch in '"\\' for ch in key_id)
    ):
        raise ConfigError(
            f"{owner}(key_id=...) must be a non-empty string of printable ASCII without "
            "surrounding whitespace, quotes or backslashes (so no CR, LF or NUL)"
        )
    return key_id


def check_secret(owner: str, secret: object) -> bytes:
    """The secret as bytes (a ``str`` is UTF-8 encoded)."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes) or not secret:
        raise ConfigError(f"{owner}(secret=...) must be a non-empty str or bytes")
    return secret


def check_algorithm(owner: str, algorithm: object) -> Algorithm:
    """One of the supported HMAC hashes."""
    for known in _ALGORITHMS:
        if algorithm == known:
            return known
    raise ConfigError(f"{owner}(algorithm=...) must be 'sha256' or 'sha512', got {algorithm!r}")


def _is_token(name: object) -> bool:
    return isinstance(name, str) and _TOKEN.fullmatch(name) is not None


def check_header(owner: str, header: object) -> str:
    """The name of the header that carries the signature."""
    if not _is_token(header):
        raise ConfigError(
            f"{owner}(header=...) must be a header name (RFC 9110 token: no spaces, CR, LF, "
            f"':'), got {header!r}"
        )
    assert isinstance(header, str)
    if header.lower() in _NOT_A_SIGNATURE_HEADER:
        raise ConfigError(
            f"{owner}(header=...) must not be {header!r}: the stage or the request needs it"
        )
    return header


def check_signed_headers(owner: str, names: object, header: str) -> tuple[str, ...]:
    """The extra headers to sign: lower-case, unique, not the ones that are always signed."""
    if isinstance(names, str | bytes) or not isinstance(names, Sequence):
        raise ConfigError(
            f"{owner}(signed_headers=...) must be a sequence of header names, e.g. ('host',), "
            f"got {names!r}"
        )
    lowered: list[str] = []
    for name in names:
        if not _is_token(name):
            raise ConfigError(
                f"{owner}(signed_headers=...) must hold header names (RFC 9110 tokens: no "
                f"spaces, CR, LF, ':'), got {name!r}"
            )
        assert isinstance(name, str)
        low = name.lower()
        if low in _ALWAYS_SIGNED:
            raise ConfigError(
                f"{owner}(signed_headers=...) must not list {name!r}: it is always signed"
            )
        if low == header.lower():
            raise ConfigError(
                f"{owner}(signed_headers=...) must not list {name!r}: it carries the signature"
            )
        if low in lowered:
            raise ConfigError(f"{owner}(signed_headers=...) lists {name!r} twice")
        lowered.append(low)
    return tuple(lowered)


def check_clock(owner: str, clock: object) -> Callable[[], float]:
    """A callable returning Unix time in seconds."""
    if not callable(clock):
        raise ConfigError(
            f"{owner}(clock=...) must be a callable returning Unix seconds (like time.time), "
            f"got {clock!r}"
        )
    return clock


def check_max_age(owner: str, max_age: object) -> float:
    """How far, in seconds, a timestamp may be from now."""
    if (
        isinstance(max_age, bool)
        or not isinstance(max_age, int | float)
        or not math.isfinite(max_age)
        or max_age < 0
    ):
        raise ConfigError(
            f"{owner}(max_age=...) must be a finite number of seconds >= 0, got {max_age!r}"
        )
    return float(max_age)
