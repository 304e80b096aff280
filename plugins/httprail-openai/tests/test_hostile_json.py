"""JSON nested too deep (a hostile or broken provider) is a value, never a RecursionError."""

from __future__ import annotations

import httpx
from httprail import DecodeError, RequestError

from httprail_openai._chat import _error_event
from httprail_openai._codec import decode_chunk
from httprail_openai._provider_errors import is_insufficient_quota

DEEP = "[" * 100_000 + "]" * 100_000
REQUEST = httpx.Request("POST", "https://api.example.test/v1/chat/completions")


def test_a_stream_chunk_nested_too_deep_is_a_decode_error() -> None:
    """A chunk of 100,000 nested arrays: ``Failure(DecodeError)``, its text shortened."""
    error = decode_chunk(DEEP, REQUEST).failure()
    assert isinstance(error, DecodeError)
    assert "maximum recursion depth" in str(error)
    assert len(str(error)) < 300


def test_an_error_body_nested_too_deep_is_not_a_quota_error() -> None:
    """A 429 whose body nests too deep is read as no provider detail, without raising."""
    response = httpx.Response(429, content=DEEP.encode(), request=REQUEST)
    assert is_insufficient_quota(response) is False


def test_an_error_event_nested_too_deep_is_a_request_error() -> None:
    """An ``event: error`` whose data nests too deep still gives a RequestError."""
    error = _error_event(DEEP, REQUEST)
    assert isinstance(error, RequestError)
