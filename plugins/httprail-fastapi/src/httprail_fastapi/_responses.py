"""Failures as HTTP responses: one table from the error tree to 5xx (and some 4xx) answers.

=================================  ======  ==========================================
error                              status  why
=================================  ======  ==========================================
CircuitBreakerOpenError            503     ``Retry-After`` = the circuit's ``retry_after``
RateLimitedError                   503     ``Retry-After`` = the limiter's ``retry_after``
BulkheadFullError                  503     too many calls in flight to the upstream
ClientStatusError 429              503     ``Retry-After`` copied from the upstream's answer
ClientStatusError in passthrough   same    404, 409, 410, 422 by default: the caller's to see
other ClientStatusError            502     401/403 say the *gateway's* credentials are bad
RequestTimeoutError                504
MaxRetriesExceededError            (last)  mapped by the last attempt's error
ServerStatusError, TransportError  502
DecodeError, ResponseValidationError 502   the upstream answered something unusable
InvalidRequestError                500     the gateway built a request it cannot send
ServiceNotFoundError               500     the service is not configured
anything else                      502
=================================  ======  ==========================================

The body is JSON: ``{"error": "<type>", "message": "<redacted message>"}`` plus
``retry_after`` (seconds) and ``request_id`` when known. The message is the error's own
(``error.message``: already redacted, and without the upstream request's URL), passed once
more through :func:`httprail.redact_text`; the upstream's body is never copied.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from httprail import (
    BulkheadFullError,
    CircuitBreakerOpenError,
    ClientStatusError,
    HttprailError,
    InvalidRequestError,
    MaxRetriesExceededError,
    RateLimitedError,
    RequestError,
    RequestTimeoutError,
    ServiceNotFoundError,
    redact_text,
)
from pydantic import BaseModel
from returns.primitives.exceptions import UnwrapFailedError
from returns.result import Failure, Result, Success

__all__ = [
    "DEFAULT_PASSTHROUGH",
    "add_failure_handlers",
    "failure_response",
    "failure_status",
    "respond",
]

DEFAULT_PASSTHROUGH: frozenset[int] = frozenset({404, 409, 410, 422})
"""Upstream 4xx statuses handed on as they are: they are about what the caller asked for."""

_REQUEST_ID = "httprail.request_id"  # where the RequestId stage keeps the id


def failure_status(
    error: BaseException, *, passthrough: Collection[int] = DEFAULT_PASSTHROUGH
) -> tuple[int, float | None]:
    """The HTTP status for ``error`` and the ``Retry-After`` seconds to send (``None``: none)."""
    if isinstance(error, MaxRetriesExceededError):
        return failure_status(error.last, passthrough=passthrough)
    if isinstance(error, CircuitBreakerOpenError | RateLimitedError):
        return 503, error.retry_after
    if isinstance(error, BulkheadFullError):
        return 503, None
    if isinstance(error, RequestTimeoutError):
        return 504, None
    if isinstance(error, ClientStatusError):
        if error.status_code == 429:
            return 503, _upstream_retry_after(error.response)
        if error.status_code in passthrough:
            return error.status_code, None
        return 502, None
    if isinstance(error, InvalidRequestError | ServiceNotFoundError):
        return 500, None
    if isinstance(error, RequestError):
        return 502, None
    return 500, None


def failure_response(
    error: BaseException,
    *,
    passthrough: Collection[int] = DEFAULT_PASSTHROUGH,
    include_message: bool = True,
) -> JSONResponse:
    """The response for a failed upstream call (see the module's table).

    Args:
        error: the ``Failure``'s error (a ``RequestError``; anything else is a 500).
        passthrough: upstream 4xx statuses handed on as they are.
        include_message: put the error's (redacted) message in the body; ``False`` sends only
            its type, for gateways that show nothing of their upstreams.

    Example:
        >>> match await client.get("/users/1"):  # doctest: +SKIP
        ...     case Success(response): return response.json()
        ...     case Failure(error): return failure_response(error)
    """
    status, retry_after = failure_status(error, passthrough=passthrough)
    body: dict[str, Any] = {"error": type(error).__name__}
    if include_message:
        text = error.message if isinstance(error, RequestError) else str(error)
        body["message"] = redact_text(text)
    headers: dict[str, str] = {}
    if retry_after is not None:
        body["retry_after"] = round(retry_after, 3)
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    request = error.request if isinstance(error, RequestError) else None
    request_id = request.extensions.get(_REQUEST_ID) if request is not None else None
    if isinstance(request_id, str):
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers)


def respond(
    result: Result[Any, BaseException],
    *,
    status_code: int = 200,
    passthrough: Collection[int] = DEFAULT_PASSTHROUGH,
) -> Response:
    """A route's answer straight from a ``Result``.

    ``Success``: a Starlette ``Response`` as it is; an ``httpx.Response`` (read) with its
    status, body and content type; anything else (a pydantic model, a dict, a list) as JSON
    with ``status_code``. ``Failure``: :func:`failure_response`.

    Example:
        >>> @app.get("/users/{user_id}")  # doctest: +SKIP
        ... async def user(user_id: int, users: Users) -> Response:
        ...     return respond(await users.get_user(id=user_id))
    """
    match result:
        case Success(Response() as response):
            return response
        case Success(httpx.Response() as upstream):
            return Response(
                upstream.content,
                status_code=upstream.status_code,
                media_type=upstream.headers.get("content-type"),
            )
        case Success(BaseModel() as model):
            return JSONResponse(model.model_dump(mode="json"), status_code=status_code)
        case Success(value):
            return JSONResponse(jsonable_encoder(value), status_code=status_code)
        case Failure(error):
            return failure_response(error, passthrough=passthrough)
    raise TypeError(f"respond() takes a Result, got {type(result).__name__}")


def add_failure_handlers(
    app: FastAPI, *, passthrough: Collection[int] = DEFAULT_PASSTHROUGH
) -> None:
    """Answer a raised httprail error (``httprail.unwrap``) or returns' ``UnwrapFailedError``
    (``result.unwrap()`` on a ``Failure``) with :func:`failure_response` instead of a 500."""

    def handler(_request: Request, exc: Exception) -> Response:
        if isinstance(exc, UnwrapFailedError):
            inner = exc.halted_container.failure()
            if isinstance(inner, BaseException):  # else: a 500 naming UnwrapFailedError
                return failure_response(inner, passthrough=passthrough)
        return failure_response(exc, passthrough=passthrough)

    handle: Callable[[Request, Exception], Response] = handler
    app.add_exception_handler(HttprailError, handle)
    app.add_exception_handler(UnwrapFailedError, handle)


def _upstream_retry_after(response: httpx.Response) -> float | None:
    """The upstream's ``Retry-After`` in seconds (a number; dates are not copied)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
