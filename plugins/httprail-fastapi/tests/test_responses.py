"""Failures as HTTP responses: the status table, Retry-After, the JSON body, and no secrets."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient
from httprail import (
    AsyncClient,
    AuthError,
    BulkheadFullError,
    CircuitBreakerOpenError,
    ConfigError,
    ConnectError,
    DecodeError,
    Failure,
    InvalidRequestError,
    MaxRetriesExceededError,
    RateLimitedError,
    ReadError,
    RequestError,
    RequestTimeoutError,
    ResponseValidationError,
    Result,
    RetryBudgetExhaustedError,
    ServiceNotFoundError,
    StatusError,
    Success,
    unwrap,
)
from httprail.middleware import BearerAuth, Retry
from httprail.testing import ChaosServer, Fault, Reply
from pydantic import BaseModel
from returns.primitives.exceptions import UnwrapFailedError

from httprail_fastapi import add_failure_handlers, failure_response, failure_status, respond

URL = "http://upstream.internal/users/1"


def status_error(code: int, **headers: str) -> StatusError:
    request = httpx.Request("GET", URL)
    return StatusError.from_response(httpx.Response(code, headers=headers, request=request))


def body(response: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(bytes(response.body))
    return parsed


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (CircuitBreakerOpenError(upstream="http://a", retry_after=2.5), 503),
        (RateLimitedError(upstream="http://a", retry_after=0.2), 503),
        (BulkheadFullError(upstream="http://a", limit=10), 503),
        (RequestTimeoutError("read timed out", phase="read"), 504),
        (RequestTimeoutError("deadline", phase="total"), 504),
        (status_error(500), 502),
        (status_error(503), 502),
        (ConnectError("refused"), 502),
        (ReadError("broke"), 502),
        (DecodeError("not JSON"), 502),
        (AuthError("token provider failed"), 502),
        (status_error(404), 404),
        (status_error(422), 422),
        (status_error(401), 502),
        (status_error(403), 502),
        (status_error(429), 503),
        (InvalidRequestError("bad header"), 500),
        (ServiceNotFoundError("billing", ["user"]), 500),
        (ResponseValidationError("User", [{"loc": ("id",), "type": "missing"}]), 502),
        (RequestError("something else"), 502),
        (ConfigError("bad setting"), 500),
        (MaxRetriesExceededError([ReadError("a"), RequestTimeoutError("b", phase="read")]), 504),
        (RetryBudgetExhaustedError([status_error(502)], upstream="http://a"), 502),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_each_error_maps_to_its_documented_status(error: Exception, status: int) -> None:
    """The table of the module docstring: 503 refusals, 504 timeouts, 502 upstream failures."""
    assert failure_status(error)[0] == status
    response = failure_response(error)
    assert response.status_code == status
    assert body(response)["error"] == type(error).__name__


def test_an_open_circuit_sends_retry_after_rounded_up_from_its_retry_after() -> None:
    """Retry-After is the open circuit's retry_after in whole seconds, rounded up (2.1 -> 3)."""
    response = failure_response(CircuitBreakerOpenError(upstream="http://a", retry_after=2.1))
    assert response.headers["retry-after"] == "3"
    assert body(response)["retry_after"] == 2.1


def test_a_retry_after_under_a_second_is_sent_as_one() -> None:
    """A retry_after of 0.2 s is sent as Retry-After: 1 (the header takes whole seconds)."""
    response = failure_response(RateLimitedError(upstream="http://a", retry_after=0.2))
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize(("value", "sent"), [("7", "7"), ("garbage", None), ("-1", None)])
def test_an_upstream_429_becomes_503_with_its_own_retry_after(value: str, sent: str | None) -> None:
    """A 429 from the upstream throttles the gateway, not the caller: 503, its Retry-After
    copied when it is a number of seconds."""
    response = failure_response(status_error(429, **{"Retry-After": value}))
    assert response.status_code == 503
    assert response.headers.get("retry-after") == sent


def test_passthrough_can_be_narrowed_to_hide_upstream_4xx() -> None:
    """With passthrough=() an upstream 404 is a 502: the caller sees no upstream status."""
    assert failure_response(status_error(404), passthrough=()).status_code == 502


def test_the_body_names_the_type_and_message_but_not_the_upstream_url() -> None:
    """The body holds the error's own message, not the upstream request's URL."""
    response = failure_response(status_error(500))
    assert body(response) == {
        "error": "ServerStatusError",
        "message": "HTTP 500 Internal Server Error",
    }
    assert b"upstream.internal" not in bytes(response.body)


def test_include_message_false_sends_only_the_type() -> None:
    """include_message=False: the body is only the error's type."""
    response = failure_response(ReadError("broke at 10.0.0.7"), include_message=False)
    assert body(response) == {"error": "ReadError"}


def test_the_request_id_of_the_failed_request_is_in_the_body() -> None:
    """A request id set by the RequestId stage is echoed so that logs can be matched."""
    request = httpx.Request("GET", URL, extensions={"httprail.request_id": "req-42"})
    response = failure_response(ConnectError("refused", request=request))
    assert body(response)["request_id"] == "req-42"


class User(BaseModel):
    id: int
    name: str


@pytest.mark.parametrize(
    ("result", "status", "content"),
    [
        (Success(User(id=1, name="Ada")), 200, b'{"id":1,"name":"Ada"}'),
        (Success({"ok": [1, 2]}), 200, b'{"ok":[1,2]}'),
        (Success(PlainTextResponse("hi", status_code=201)), 201, b"hi"),
        (
            Success(httpx.Response(203, content=b"<x/>", headers={"content-type": "text/xml"})),
            203,
            b"<x/>",
        ),
        (Failure(RequestTimeoutError("slow", phase="read")), 504, None),
    ],
    ids=["model", "dict", "starlette-response", "httpx-response", "failure"],
)
def test_respond_turns_each_kind_of_result_into_a_response(
    result: Result[Any, RequestError], status: int, content: bytes | None
) -> None:
    """respond(): models and plain values as JSON, responses as they are, Failures mapped."""
    response = respond(result)
    assert response.status_code == status
    if content is not None:
        assert bytes(response.body) == content


def test_respond_refuses_what_is_not_a_result() -> None:
    """respond() of a bare value is a TypeError naming its type."""
    with pytest.raises(TypeError, match="dict"):
        respond({"not": "a result"})  # type: ignore[arg-type]


def test_raised_errors_and_unwrap_failures_are_answered_by_the_handlers() -> None:
    """With add_failure_handlers, httprail.unwrap() and result.unwrap() on a Failure answer
    with the mapped status instead of a 500 traceback."""
    app = FastAPI()
    add_failure_handlers(app)
    timeout: Result[int, RequestError] = Failure(RequestTimeoutError("slow", phase="read"))
    opaque: Result[int, str] = Failure("no exception in here")

    @app.get("/raised")
    async def raised() -> int:
        return unwrap(timeout)

    @app.get("/unwrapped")
    async def unwrapped() -> int:
        return timeout.unwrap()

    @app.get("/opaque")
    async def opaque_failure() -> int:
        return opaque.unwrap()

    with TestClient(app) as http:
        assert http.get("/raised").status_code == 504
        answer = http.get("/unwrapped")
        assert answer.status_code == 504
        assert answer.json()["error"] == "RequestTimeoutError"
        assert http.get("/opaque").json() == {
            "error": "UnwrapFailedError",
            "message": str(UnwrapFailedError(opaque)),
        }


CANARY = "canary-7f3c9e1b-secret"


@pytest.mark.parametrize(
    "reply",
    [Reply.status(503), Reply.status(401), Reply.status(404), Reply.fail(Fault.RESET)],
    ids=["503", "401", "404", "reset"],
)
def test_a_failure_response_never_carries_the_upstream_credentials(
    chaos_server: ChaosServer, reply: Reply
) -> None:
    """Canary: the bearer token and an api_key query value never reach the downstream
    answer (body or headers), whatever the upstream failure."""
    chaos_server.script("/secret", reply)
    app = FastAPI()
    upstream = f"{chaos_server.url}/secret?api_key={CANARY}"

    @app.get("/proxy")
    async def proxy() -> Any:
        async with AsyncClient(plugins=[Retry(max_retries=0), BearerAuth(CANARY)]) as client:
            return respond(await client.get(upstream))

    with TestClient(app) as http:
        answer = http.get("/proxy")
    assert answer.status_code >= 400
    assert chaos_server.requests[0].header("authorization") == f"Bearer {CANARY}"
    assert CANARY not in answer.text
    assert all(CANARY not in value for value in answer.headers.values())
