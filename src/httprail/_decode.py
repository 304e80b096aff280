"""Decoding helpers: a response body as JSON or as a pydantic model, as a Result."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, TypeVar, overload

import httpx
from pydantic import TypeAdapter, ValidationError
from returns.result import Failure, Result, Success

from ._errors import DecodeError, RequestError

__all__ = ["decode_json", "request_of"]

T = TypeVar("T")


def request_of(response: httpx.Response) -> httpx.Request | None:
    """The response's request, or ``None`` for a response built without one."""
    try:
        return response.request
    except RuntimeError:
        return None


@lru_cache(maxsize=256)
def _adapter(model: Any) -> TypeAdapter[Any]:
    return TypeAdapter(model)


@overload
def decode_json(response: httpx.Response, model: None = None) -> Result[Any, RequestError]: ...
@overload
def decode_json(response: httpx.Response, model: type[T]) -> Result[T, RequestError]: ...
def decode_json(response: httpx.Response, model: Any = None) -> Result[Any, RequestError]:
    """The body parsed as JSON, validated against ``model`` (a pydantic model or any type).

    Returns ``Failure(DecodeError)`` naming what was wrong if the body is not JSON or does not
    fit the model.
    """
    request = request_of(response)
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep (a hostile body)
        error = DecodeError(f"body is not valid JSON: {exc}", request=request)
        error.__cause__ = exc
        return Failure(error)
    if model is None:
        return Success(data)
    try:
        return Success(_adapter(model).validate_python(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:5]
        )
        name = getattr(model, "__name__", repr(model))
        error = DecodeError(f"body does not match {name}: {problems}", request=request)
        error.__cause__ = exc
        return Failure(error)
    except TypeError as exc:  # the model itself is not a type pydantic understands
        error = DecodeError(f"cannot validate against {model!r}: {exc}", request=request)
        error.__cause__ = exc
        return Failure(error)
