"""Provider error bodies: ``{"error": {"message", "type", "code"}}`` read into our error tree."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
from httprail import (
    ClientStatusError,
    MaxRetriesExceededError,
    RequestError,
    ServerStatusError,
    StatusError,
)

__all__ = ["ProviderError", "is_insufficient_quota", "parse_provider_error", "with_provider_detail"]

_MAX_MESSAGE_CHARS = 1000
# Only these are rebuilt: they share StatusError's constructor (response, *, message).
_STATUS_CLASSES = (StatusError, ClientStatusError, ServerStatusError)


@dataclass(frozen=True, slots=True)
class ProviderError:
    """What the provider said went wrong (every field may be missing)."""

    message: str | None = None
    type: str | None = None
    code: str | None = None

    def describe(self) -> str:
        """``message (type=..., code=...)``, leaving out what is missing."""
        pairs = (("type", self.type), ("code", self.code))
        tags = ", ".join(f"{label}={value}" for label, value in pairs if value)
        text = self.message or "provider error"
        return f"{text} ({tags})" if tags else text


def _clean(value: object) -> str | None:
    """A short single-line string for a scalar field, ``None`` for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[: _MAX_MESSAGE_CHARS - 3] + "..."
    return text or None


def parse_provider_error(payload: object) -> ProviderError | None:
    """The provider error in a decoded JSON body or stream chunk, or ``None`` if there is none.

    Accepts the OpenAI shape ``{"error": {"message": ..., "type": ..., "code": ...}}`` and the
    bare ``{"error": "message"}`` some compatible servers send.
    """
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, str):
        message = _clean(error)
        return ProviderError(message=message) if message else None
    if not isinstance(error, dict):
        return None
    found = ProviderError(
        message=_clean(error.get("message")),
        type=_clean(error.get("type")),
        code=_clean(error.get("code")),
    )
    if found == ProviderError():
        return None
    return found


def _response_error(response: httpx.Response) -> ProviderError | None:
    try:
        payload = json.loads(response.content)
    except (httpx.ResponseNotRead, ValueError, RecursionError):
        return None
    return parse_provider_error(payload)


def is_insufficient_quota(response: httpx.Response) -> bool:
    """True for a 429 whose body says ``insufficient_quota``: waiting will not help.

    Used as the request's ``NO_RETRY_EXTENSION`` veto, so ``Retry`` returns it at once.
    """
    if response.status_code != 429:
        return False
    error = _response_error(response)
    return error is not None and "insufficient_quota" in (error.code, error.type)


def with_provider_detail(error: RequestError) -> RequestError:
    """``error`` with the provider's message, type and code added, when its body has them.

    A ``StatusError`` comes back as the same class, keeping ``.response`` and ``.status_code``,
    with the message ``HTTP 401 Unauthorized: <provider message> (type=..., code=...)``. A
    ``MaxRetriesExceededError`` gets the same treatment for each attempt. Anything else, or a
    body that is not an OpenAI-style error, is returned unchanged.
    """
    if isinstance(error, MaxRetriesExceededError):
        attempts = tuple(with_provider_detail(attempt) for attempt in error.attempts)
        if all(new is old for new, old in zip(attempts, error.attempts, strict=True)):
            return error
        return MaxRetriesExceededError(attempts, request=error.request)
    if not isinstance(error, StatusError) or type(error) not in _STATUS_CLASSES:
        return error
    detail = _response_error(error.response)
    if detail is None:
        return error
    decorated = type(error)(error.response, message=f"{error.message}: {detail.describe()}")
    decorated.__cause__ = error.__cause__
    return decorated
