"""Chat Completions wire format: requests encoded to JSON, answers and stream chunks decoded.

Everything here is pure (no I/O): bad input comes back as ``Failure(InvalidRequestError)``,
a body that is not what the API documents as ``Failure(DecodeError)`` saying what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from httprail import (
    DecodeError,
    Failure,
    InvalidRequestError,
    RequestError,
    Result,
    Success,
    decode_json,
)
from httprail.generators import GenerationRequest, GenerationResult, Usage

from ._provider_errors import parse_provider_error

__all__ = [
    "RESERVED_KEYS",
    "StreamChunk",
    "decode_chunk",
    "decode_completion",
    "encode_chat",
    "extra_problem",
]

RESERVED_KEYS = frozenset({"messages", "model", "stream", "stream_options"})
"""Body keys the generator owns: extra fields may not set them."""


def _request_of(response: httpx.Response) -> httpx.Request | None:
    try:
        return response.request
    except RuntimeError:  # a response built without a request
        return None


def extra_problem(extra: object) -> str | None:
    """Why ``extra`` cannot be merged into a request body, or ``None`` if it can."""
    if not isinstance(extra, Mapping):
        return f"must be a mapping, got {type(extra).__name__}"
    for key in extra:
        if not isinstance(key, str):
            return f"keys must be strings, got {key!r}"
        if key in RESERVED_KEYS:
            return f"may not set {key!r} (the generator sets it)"
    try:
        json.dumps(dict(extra), allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"is not JSON-serialisable: {exc}"
    return None


def _request_problems(request: GenerationRequest) -> list[str]:
    """Everything that makes ``request`` unsendable (empty when it can be sent)."""
    found = list(request.problems())
    extra: object = request.extra
    if isinstance(extra, Mapping) and all(isinstance(key, str) for key in extra):
        problem = extra_problem(extra)
        if problem is not None:
            found.append(f"extra {problem}")
    return found


def encode_chat(
    request: object,
    *,
    default_model: str,
    extra_body: Mapping[str, object],
    stream: bool,
) -> Result[dict[str, Any], RequestError]:
    """The JSON body of a Chat Completions call for ``request``.

    Field order of precedence, lowest first: ``extra_body`` (the generator's), the request's
    typed fields (``max_tokens``, ``temperature``, ``stop``), the request's ``extra``.
    ``model`` is the request's, else ``default_model``.

    Returns:
        The body, or ``Failure(InvalidRequestError)`` naming what is wrong with ``request``.
    """
    if not isinstance(request, GenerationRequest):
        return Failure(
            InvalidRequestError(f"expected a GenerationRequest, got {type(request).__name__}")
        )
    problems = _request_problems(request)
    if problems:
        return Failure(InvalidRequestError(f"invalid generation request: {'; '.join(problems)}"))
    model = default_model if request.model is None else request.model
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    body.update(extra_body)
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.stop:
        body["stop"] = list(request.stop)
    body.update(request.extra)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return Success(body)


def _decode_error(message: str, request: httpx.Request | None) -> Failure[DecodeError]:
    return Failure(DecodeError(message, request=request))


def _token_count(raw: Mapping[str, object], key: str) -> int | None:
    value = raw.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _usage(
    raw: object, where: str, request: httpx.Request | None
) -> Result[Usage | None, RequestError]:
    if raw is None:
        return Success(None)
    if not isinstance(raw, Mapping):
        return _decode_error(f"{where}usage is not an object", request)
    counts = []
    for key in ("prompt_tokens", "completion_tokens"):
        count = _token_count(raw, key)
        if count is None:
            return _decode_error(
                f"{where}usage.{key} is not a non-negative integer: {raw.get(key)!r}", request
            )
        counts.append(count)
    return Success(Usage(input_tokens=counts[0], output_tokens=counts[1]))


class _NotText(Exception):
    """A field that must be text (or absent, or null) is not: its name and type."""


def _optional_str(value: object, field: str) -> str | None:
    """``value`` when it is text, ``None`` when absent, null or empty.

    Raises:
        _NotText: anything else (``"finish_reason": 5``), which must not pass unnoticed.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _NotText(f"{field} is not a string: {type(value).__name__}")
    return value


def _completion(
    data: object, model: str, request: httpx.Request | None
) -> Result[GenerationResult, RequestError]:
    where = "chat completion"
    if not isinstance(data, Mapping):
        return _decode_error(f"{where} is not a JSON object", request)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        return _decode_error(f"{where} has no choices[0]", request)
    choice = choices[0]
    if not isinstance(choice, Mapping):
        return _decode_error(f"{where} choices[0] is not an object", request)
    message = choice.get("message")
    if not isinstance(message, Mapping):
        return _decode_error(f"{where} has no choices[0].message", request)
    if "content" not in message:
        return _decode_error(f"{where} has no choices[0].message.content", request)
    content = message["content"]
    if content is not None and not isinstance(content, str):
        return _decode_error(
            f"{where} choices[0].message.content is not a string: {type(content).__name__}",
            request,
        )
    usage = _usage(data.get("usage"), "", request)
    if isinstance(usage, Failure):
        return usage
    try:
        served = _optional_str(data.get("model"), f"{where} model")
        finish_reason = _optional_str(choice.get("finish_reason"), f"{where} finish_reason")
    except _NotText as exc:
        return _decode_error(str(exc), request)
    return Success(
        GenerationResult(
            text=content or "",
            model=served or model,
            usage=usage.unwrap(),
            finish_reason=finish_reason,
        )
    )


def decode_completion(
    response: httpx.Response, *, model: str
) -> Result[GenerationResult, RequestError]:
    """A ``chat.completion`` body as a :class:`GenerationResult`.

    ``content: null`` (a tool call or a refusal, which this generator does not model) gives
    empty text; ``finish_reason`` says why. ``model`` is used when the body names none.

    Returns:
        The result, or ``Failure(DecodeError)`` naming what is missing or malformed.
    """
    request = _request_of(response)
    return decode_json(response).bind(lambda data: _completion(data, model, request))


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """What one ``chat.completion.chunk`` carried."""

    text: str = ""
    finish_reason: str | None = None
    model: str | None = None
    usage: Usage | None = None


def decode_chunk(data: str, request: httpx.Request | None) -> Result[StreamChunk, RequestError]:
    """One SSE ``data`` payload of a streamed completion.

    A chunk carrying ``{"error": ...}`` (a provider that fails mid-stream) becomes
    ``Failure(RequestError)`` with the provider's message; anything that is not a chunk
    object becomes ``Failure(DecodeError)``. Chunks without choices (the final usage chunk,
    keep-alives) are fine.
    """
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        snippet = data if len(data) <= 80 else data[:77] + "..."
        error = DecodeError(f"stream chunk is not valid JSON ({exc}): {snippet!r}", request=request)
        error.__cause__ = exc
        return Failure(error)
    if not isinstance(payload, Mapping):
        return _decode_error("stream chunk is not a JSON object", request)
    provider = parse_provider_error(payload)
    if provider is not None:
        return Failure(
            RequestError(f"provider error in the stream: {provider.describe()}", request=request)
        )
    usage = _usage(payload.get("usage"), "stream chunk ", request)
    if isinstance(usage, Failure):
        return usage
    text, finish_reason = "", None
    choices = payload.get("choices")
    if choices is not None and not isinstance(choices, list):
        return _decode_error("stream chunk choices is not a list", request)
    if choices:
        choice = choices[0]
        if not isinstance(choice, Mapping):
            return _decode_error("stream chunk choices[0] is not an object", request)
        delta = choice.get("delta")
        if delta is not None and not isinstance(delta, Mapping):
            return _decode_error("stream chunk choices[0].delta is not an object", request)
        content = None if delta is None else delta.get("content")
        if content is not None and not isinstance(content, str):
            return _decode_error(
                f"stream chunk choices[0].delta.content is not a string: {content!r}", request
            )
        text = content or ""
        finish_reason = choice.get("finish_reason")
    try:
        finish_reason = _optional_str(finish_reason, "stream chunk choices[0].finish_reason")
        served = _optional_str(payload.get("model"), "stream chunk model")
    except _NotText as exc:
        return _decode_error(str(exc), request)
    return Success(
        StreamChunk(text=text, finish_reason=finish_reason, model=served, usage=usage.unwrap())
    )
