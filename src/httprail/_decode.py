"""Decoding helpers: a response body as JSON or as a pydantic model, as a Result."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, TypeVar, overload

import httpx
from pydantic import TypeAdapter, ValidationError
from returns.result import Failure, Result, Success

from ._errors import DecodeError, RequestError, ResponseValidationError
from ._settings import one_line, quoted

__all__ = ["decode_json", "model_name", "request_of", "validation_problems"]

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


def model_name(model: Any) -> str:
    """``User``, ``list[User]``: a type as a reader would write it (no module paths)."""
    if isinstance(model, type):
        return model.__name__
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", repr(model))


def validation_problems(
    exc: ValidationError, prefix: tuple[str | int, ...] = ()
) -> list[dict[str, object]]:
    """pydantic's findings as ``{"loc", "type"}`` mappings, without the input or the message
    (either can repeat a value from the body: a custom validator's message often does).

    The location of an ``extra_forbidden`` problem ends in the unexpected key, which comes
    from the body, not from the model: it is shown as ``<extra>``.
    """
    problems: list[dict[str, object]] = []
    for found in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = tuple(found["loc"])
        if found["type"] == "extra_forbidden" and loc:
            loc = (*loc[:-1], "<extra>")
        problems.append({"loc": prefix + loc, "type": found["type"]})
    return problems


@overload
def decode_json(response: httpx.Response, model: None = None) -> Result[Any, RequestError]: ...
@overload
def decode_json(response: httpx.Response, model: type[T]) -> Result[T, RequestError]: ...
def decode_json(response: httpx.Response, model: Any = None) -> Result[Any, RequestError]:
    """The body parsed as JSON, validated against ``model`` (a pydantic model or any type).

    Returns ``Failure(DecodeError)`` naming what was wrong if the body is not JSON, and
    ``Failure(ResponseValidationError)`` (field paths and error types, no values) if it does
    not fit the model.
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
    adapter = _adapter_or_problem(model)
    if isinstance(adapter, str):
        return Failure(DecodeError(adapter, request=request))
    try:
        return Success(adapter.validate_python(data))
    except ValidationError as exc:
        # Not chained: pydantic's own message shows the input values.
        return Failure(
            ResponseValidationError(model_name(model), validation_problems(exc), request=request)
        )


def model_problem(model: Any) -> str | None:
    """Why ``model`` cannot validate anything (not a type pydantic understands), or ``None``."""
    found = _adapter_or_problem(model)
    return found if isinstance(found, str) else None


def _adapter_or_problem(model: Any) -> TypeAdapter[Any] | str:
    """The (cached) validator of ``model``, or why there can be none. A string is refused as
    such: pydantic would read it as a forward reference to resolve."""
    if isinstance(model, str | bytes):
        return f"cannot validate against {quoted(model)}: a model is a type, not a string"
    try:
        return _adapter(model)
    except Exception as exc:  # noqa: BLE001 - whatever pydantic raises building the schema
        return f"cannot validate against {quoted(model)}: {one_line(str(exc))[:200]}"
