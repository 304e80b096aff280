"""``unwrap``: leave the railway on purpose, raising the httprail error itself.

``returns``' own ``Result.unwrap()`` raises ``UnwrapFailedError``, which buries the real error
in ``.halted_container``; code that prefers exceptions (a script, a test, a framework's error
handler) wants the ``StatusError`` or ``RequestTimeoutError`` it can catch by its class.
"""

from __future__ import annotations

from typing import TypeVar

from returns.result import Failure, Result, Success

__all__ = ["unwrap"]

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


def unwrap(result: Result[T, E]) -> T:
    """The value of a ``Success``; for a ``Failure``, its error is raised as it is.

    The error keeps its own ``__cause__`` (the backend's exception, or the last attempt's
    error for ``MaxRetriesExceededError``) and its redacted text.

    Raises:
        HttprailError: the ``Failure``'s error (any exception a ``Failure`` holds).
        TypeError: ``result`` is not a ``Result``, or its ``Failure`` holds no exception.

    Example:
        >>> response = unwrap(await client.get("/users/1"))  # doctest: +SKIP
        >>> try:  # doctest: +SKIP
        ...     unwrap(await client.get("/missing"))
        ... except StatusError as error:
        ...     print(error.status_code)
    """
    if isinstance(result, Success):
        value: T = result.unwrap()
        return value
    if isinstance(result, Failure):
        error = result.failure()
        if isinstance(error, BaseException):
            raise error
        raise TypeError(f"unwrap() of a Failure that holds no exception: {error!r}")
    raise TypeError(f"unwrap() takes a Result, got {type(result).__name__}")
