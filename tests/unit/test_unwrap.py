"""``httprail.unwrap`` raises the httprail error itself, not returns' ``UnwrapFailedError``."""

from __future__ import annotations

import httpx
import pytest
from returns.result import Failure, Success

from httprail import (
    AsyncClient,
    MaxRetriesExceededError,
    ReadError,
    ServerStatusError,
    StatusError,
    unwrap,
)
from httprail.testing import MockTerminal


def test_a_success_gives_its_value() -> None:
    assert unwrap(Success(42)) == 42


def test_a_failure_raises_its_own_error_with_its_cause() -> None:
    cause = ConnectionResetError("reset")
    error = ReadError("the connection broke")
    error.__cause__ = cause
    with pytest.raises(ReadError) as raised:
        unwrap(Failure(error))
    assert raised.value is error
    assert raised.value.__cause__ is cause


def test_a_failure_without_an_exception_or_a_non_result_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="holds no exception: 'nope'"):
        unwrap(Failure("nope"))  # type: ignore[type-var]
    with pytest.raises(TypeError, match="takes a Result, got int"):
        unwrap(3)  # type: ignore[arg-type]


async def test_an_error_response_from_the_client_raises_its_status_error() -> None:
    terminal = MockTerminal(lambda request: httpx.Response(503, request=request))
    async with AsyncClient("http://api.test", plugins=[], terminal=terminal) as client:
        with pytest.raises(StatusError) as raised:
            unwrap(await client.get("/x"))
    assert isinstance(raised.value, ServerStatusError)
    assert raised.value.status_code == 503
    assert not isinstance(raised.value, MaxRetriesExceededError)
