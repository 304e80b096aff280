"""OpenAIChat without a network: options, request encoding, answer and stream decoding, errors.

The client sends through httprail's ``MockTerminal``, so each test states exactly what the
"server" answers and can inspect the request that was sent.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable
from importlib.metadata import entry_points
from typing import Any

import httpx
import pytest
from httprail import (
    AsyncClient,
    ClientStatusError,
    ConfigError,
    ConnectError,
    DecodeError,
    Failure,
    InvalidRequestError,
    MaxRetriesExceededError,
    ProtocolError,
    RequestError,
    ServerStatusError,
    Success,
)
from httprail.generators import GenerationRequest, GenerationStream, Generator, Message, Usage
from httprail.middleware import NO_RETRY_EXTENSION, Retry
from httprail.testing import FakeClock, MockTerminal

from httprail_openai import OpenAIChat
from httprail_openai._provider_errors import is_insufficient_quota

BASE_URL = "https://api.test/v1"
PROMPT = GenerationRequest.from_prompt("hi")
SSE = {"content-type": "text/event-stream"}

Handler = Callable[[httpx.Request], httpx.Response | RequestError]


def completion(**overrides: Any) -> dict[str, Any]:
    """A valid ``chat.completion`` body, with top-level fields replaced by ``overrides``."""
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-served",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    body.update(overrides)
    return body


def sse(*datas: str, tail: str = "") -> bytes:
    """An event-stream body of ``data:`` events (``tail`` is appended verbatim)."""
    return ("".join(f"data: {data}\n\n" for data in datas) + tail).encode()


def delta(content: str | None = None, finish: str | None = None) -> str:
    delta: dict[str, Any] = {} if content is None else {"content": content}
    return json.dumps(
        {"model": "gpt-served", "choices": [{"delta": delta, "finish_reason": finish}]}
    )


class Harness:
    """A MockTerminal-backed client and the generator over it."""

    def __init__(self, handler: Handler, *, raw_status: bool = False, **options: Any) -> None:
        self.terminal = MockTerminal(handler)
        self.client = AsyncClient(
            BASE_URL,
            plugins=options.pop("plugins", []),
            terminal=self.terminal,
            raw_status=raw_status,
        )
        self.chat = OpenAIChat(self.client, model=options.pop("model", "gpt-test"), **options)

    def sent_bodies(self) -> list[Any]:
        return [json.loads(request.content) for request in self.terminal.requests]


@pytest.fixture
async def harness_of() -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(handler: Handler, **options: Any) -> Harness:
        made.append(Harness(handler, **options))
        return made[-1]

    yield make
    for harness in made:
        await harness.client.aclose()


def answer_json(payload: Any, status: int = 200) -> Handler:
    return lambda request: httpx.Response(status, json=payload)


def answer_stream(body: bytes, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(
        200, headers=SSE if headers is None else headers, content=body
    )


async def drain(stream: GenerationStream) -> tuple[list[str], list[RequestError]]:
    pieces: list[str] = []
    failures: list[RequestError] = []
    async with stream:
        async for item in stream:
            assert not failures, "nothing may follow a Failure"
            match item:
                case Success(text):
                    pieces.append(text)
                case Failure(error):
                    failures.append(error)
    return pieces, failures


# -- identity and options --------------------------------------------------------------------


async def test_it_is_a_generator_named_openai_chat(harness_of: Callable[..., Harness]) -> None:
    chat = harness_of(answer_json(completion())).chat
    assert isinstance(chat, Generator)
    assert chat.name == "openai-chat"
    assert repr(chat) == "OpenAIChat(model='gpt-test', path='/chat/completions')"


def test_the_entry_point_is_declared_and_loads() -> None:
    (found,) = entry_points(group="httprail.generators", name="openai-chat")
    assert found.value == "httprail_openai:OpenAIChat"
    assert found.load() is OpenAIChat


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"client": "https://api.test"}, "client"),
        ({"model": ""}, "model"),
        ({"model": "  "}, "model"),
        ({"model": None}, "model"),
        ({"path": ""}, "path"),
        ({"path": "/chat completions"}, "path"),
        ({"max_event_bytes": 0}, "max_event_bytes"),
        ({"max_event_bytes": True}, "max_event_bytes"),
        ({"max_event_bytes": 1.5}, "max_event_bytes"),
        ({"extra_body": ["user"]}, "extra_body"),
        ({"extra_body": {1: "x"}}, "extra_body"),
        ({"extra_body": {"stream": True}}, "extra_body"),
        ({"extra_body": {"messages": []}}, "extra_body"),
        ({"extra_body": {"x": object()}}, "extra_body"),
        ({"extra_body": {"x": math.nan}}, "extra_body"),
    ],
)
async def test_a_bad_option_is_a_config_error_naming_it(
    options: dict[str, Any], named: str
) -> None:
    async with AsyncClient(BASE_URL, plugins=[]) as client:
        arguments: dict[str, Any] = {"client": client, "model": "gpt-test", **options}
        with pytest.raises(ConfigError, match=rf"OpenAIChat\({named}=\.\.\.\)"):
            OpenAIChat(**arguments)


async def test_extra_body_is_copied_when_the_generator_is_built(
    harness_of: Callable[..., Harness],
) -> None:
    extra: dict[str, Any] = {"metadata": {"team": "search"}}
    harness = harness_of(answer_json(completion()), extra_body=extra)
    extra["metadata"]["team"] = "changed"
    extra["user"] = "late"

    await harness.chat.generate(PROMPT)

    assert harness.sent_bodies()[0]["metadata"] == {"team": "search"}
    assert "user" not in harness.sent_bodies()[0]


# -- requests --------------------------------------------------------------------------------


async def test_a_request_is_posted_to_the_path_with_the_retry_veto(
    harness_of: Callable[..., Harness],
) -> None:
    harness = harness_of(answer_json(completion()), path="/openai/deployments/x/chat/completions")

    await harness.chat.generate(PROMPT)

    (sent,) = harness.terminal.requests
    assert sent.method == "POST"
    assert str(sent.url) == f"{BASE_URL}/openai/deployments/x/chat/completions"
    assert sent.extensions[NO_RETRY_EXTENSION] is is_insufficient_quota
    assert sent.headers["accept"] == "application/json"


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        ("hi", "expected a GenerationRequest, got str"),
        (GenerationRequest(messages=()), "messages is empty"),
        (GenerationRequest(messages=["hi"]), "messages[0] must be a Message"),  # type: ignore[arg-type]
        (GenerationRequest(messages=(Message("robot", "hi"),)), "messages[0].role 'robot'"),
        (GenerationRequest(messages=(Message("user", 1),)), "messages[0].content"),  # type: ignore[arg-type]
        (GenerationRequest.from_prompt("hi", model=""), "model must be a non-empty string"),
        (GenerationRequest.from_prompt("hi", max_tokens=0), "max_tokens must be an int >= 1"),
        (GenerationRequest.from_prompt("hi", max_tokens=True), "max_tokens"),
        (GenerationRequest.from_prompt("hi", temperature=math.nan), "temperature"),
        (GenerationRequest.from_prompt("hi", temperature=-0.5), "temperature"),
        (GenerationRequest.from_prompt("hi", stop=("",)), "stop"),
        (GenerationRequest.from_prompt("hi", stop="END"), "stop"),  # type: ignore[arg-type]
        (GenerationRequest.from_prompt("hi", extra={"stream": False}), "'stream'"),
        (GenerationRequest.from_prompt("hi", extra={"model": "x"}), "'model'"),
    ],
)
async def test_an_invalid_request_fails_without_sending(
    harness_of: Callable[..., Harness], request_: Any, fragment: str
) -> None:
    harness = harness_of(answer_json(completion()))

    plain = await harness.chat.generate(request_)
    pieces, failures = await drain(harness.chat.generate_stream(request_))

    assert isinstance(plain, Failure)
    error = plain.failure()
    assert isinstance(error, InvalidRequestError)
    assert fragment in str(error)
    assert pieces == []
    assert [type(f) for f in failures] == [InvalidRequestError]
    assert harness.terminal.requests == []


async def test_a_body_that_cannot_be_encoded_is_an_invalid_request(
    harness_of: Callable[..., Harness],
) -> None:
    harness = harness_of(answer_json(completion()))

    outcome = await harness.chat.generate(
        GenerationRequest.from_prompt("hi", extra={"when": object()})
    )

    assert isinstance(outcome, Failure)
    assert isinstance(outcome.failure(), InvalidRequestError)
    assert harness.terminal.requests == []


async def test_a_url_the_client_cannot_send_to_is_an_invalid_request(
    harness_of: Callable[..., Harness],
) -> None:
    harness = harness_of(answer_json(completion()), path="ftp://files.test/chat")

    plain = await harness.chat.generate(PROMPT)
    pieces, failures = await drain(harness.chat.generate_stream(PROMPT))

    assert isinstance(plain, Failure)
    assert isinstance(plain.failure(), InvalidRequestError)
    assert "scheme" in str(plain.failure())
    assert pieces == []
    assert [type(f) for f in failures] == [InvalidRequestError]
    assert harness.terminal.requests == []


# -- plain answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "not a JSON object"),
        (completion(choices=None), "no choices[0]"),
        (completion(choices={"0": {}}), "no choices[0]"),
        (completion(choices=["x"]), "choices[0] is not an object"),
        (completion(choices=[{"index": 0}]), "no choices[0].message"),
        (completion(choices=[{"message": {"role": "assistant"}}]), "choices[0].message.content"),
        (completion(choices=[{"message": {"content": 7}}]), "content is not a string"),
        (  # a wrong type is reported, not read as "no finish_reason"
            completion(choices=[{"message": {"content": "x"}, "finish_reason": 5}]),
            "finish_reason is not a string: int",
        ),
        (completion(model=["gpt"]), "model is not a string: list"),
        (completion(usage=[1, 2]), "usage is not an object"),
        (completion(usage={"prompt_tokens": "3"}), "usage.prompt_tokens"),
        (completion(usage={"prompt_tokens": 1, "completion_tokens": -2}), "completion_tokens"),
    ],
)
async def test_an_answer_that_is_not_a_completion_is_a_decode_error(
    harness_of: Callable[..., Harness], body: Any, fragment: str
) -> None:
    outcome = await harness_of(answer_json(body)).chat.generate(PROMPT)

    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert isinstance(error, DecodeError)
    assert fragment in str(error)
    assert error.request is not None


async def test_null_content_is_empty_text_and_missing_model_or_usage_fall_back(
    harness_of: Callable[..., Harness],
) -> None:
    body = completion(
        choices=[{"message": {"content": None, "tool_calls": []}, "finish_reason": "tool_calls"}],
        model=None,
    )
    del body["usage"]

    outcome = await harness_of(answer_json(body)).chat.generate(PROMPT)

    assert isinstance(outcome, Success), outcome
    result = outcome.unwrap()
    assert (result.text, result.model, result.usage, result.finish_reason) == (
        "",
        "gpt-test",
        None,
        "tool_calls",
    )


async def test_missing_token_counts_are_zero(harness_of: Callable[..., Harness]) -> None:
    body = completion(usage={"prompt_tokens": 5, "completion_tokens": None})
    outcome = await harness_of(answer_json(body)).chat.generate(PROMPT)
    assert isinstance(outcome, Success), outcome
    assert outcome.unwrap().usage == Usage(input_tokens=5, output_tokens=0)


# -- provider errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (
            404,
            {
                "error": {
                    "message": "The model `x` does not exist",
                    "type": "invalid_request_error",
                    "code": "model_not_found",
                }
            },
            ClientStatusError,
            "HTTP 404 Not Found: The model `x` does not exist "
            "(type=invalid_request_error, code=model_not_found)",
        ),
        (
            500,
            {"error": {"message": "boom\n  again", "type": None, "code": 500}},
            ServerStatusError,
            "HTTP 500 Internal Server Error: boom again (code=500)",
        ),
        (
            502,
            {"error": "upstream unavailable"},
            ServerStatusError,
            "HTTP 502 Bad Gateway: upstream unavailable",
        ),
        (
            429,
            {"error": {"message": True, "type": None, "code": "rate_limited"}},
            ClientStatusError,
            "HTTP 429 Too Many Requests: provider error (code=rate_limited)",
        ),
        (400, {"detail": "not the OpenAI shape"}, ClientStatusError, "HTTP 400 Bad Request"),
        (400, ["not", "an", "object"], ClientStatusError, "HTTP 400 Bad Request"),
        (400, {"error": {}}, ClientStatusError, "HTTP 400 Bad Request"),
    ],
)
async def test_error_bodies_are_read_into_the_same_status_error(
    harness_of: Callable[..., Harness],
    status: int,
    body: Any,
    kind: type[RequestError],
    message: str,
) -> None:
    outcome = await harness_of(answer_json(body, status)).chat.generate(PROMPT)

    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert type(error) is kind
    assert error.message == message
    assert isinstance(error, ClientStatusError | ServerStatusError)
    assert error.status_code == status
    assert error.response.json() == body


async def test_a_non_json_error_body_leaves_the_error_as_it_was(
    harness_of: Callable[..., Harness],
) -> None:
    harness = harness_of(lambda request: httpx.Response(503, text="<html>overloaded</html>"))
    outcome = await harness.chat.generate(PROMPT)
    assert isinstance(outcome, Failure)
    assert outcome.failure().message == "HTTP 503 Service Unavailable"


async def test_a_long_provider_message_is_shortened(harness_of: Callable[..., Harness]) -> None:
    body = {"error": {"message": "x" * 5000}}
    outcome = await harness_of(answer_json(body, 400)).chat.generate(PROMPT)
    assert isinstance(outcome, Failure)
    assert len(outcome.failure().message) < 1100


async def test_a_client_with_raw_status_still_gets_status_errors(
    harness_of: Callable[..., Harness],
) -> None:
    body = {"error": {"message": "Bad key", "type": "invalid_request_error", "code": "bad"}}
    harness = harness_of(answer_json(body, 401), raw_status=True)

    plain = await harness.chat.generate(PROMPT)
    pieces, failures = await drain(harness.chat.generate_stream(PROMPT))

    assert isinstance(plain, Failure)
    for error in (plain.failure(), *failures):
        assert isinstance(error, ClientStatusError)
        assert error.status_code == 401
        assert "Bad key (type=invalid_request_error, code=bad)" in error.message
    assert pieces == []
    assert len(failures) == 1


async def test_a_pipeline_failure_passes_through(harness_of: Callable[..., Harness]) -> None:
    refused = ConnectError("connection refused")
    harness = harness_of(lambda request: refused)

    plain = await harness.chat.generate(PROMPT)
    pieces, failures = await drain(harness.chat.generate_stream(PROMPT))

    assert plain == Failure(refused)
    assert pieces == []
    assert failures == [refused]


@pytest.mark.parametrize(
    ("status", "error", "retried"),
    [
        (429, {"message": "quota", "type": "insufficient_quota", "code": None}, False),
        (429, {"message": "quota", "type": "requests", "code": "insufficient_quota"}, False),
        (429, {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}, True),
        (503, {"message": "quota?", "type": "insufficient_quota"}, True),
    ],
)
async def test_only_an_out_of_quota_429_is_vetoed_from_retrying(
    harness_of: Callable[..., Harness], status: int, error: dict[str, Any], retried: bool
) -> None:
    clock = FakeClock()
    retry = Retry(max_retries=1, sleep=clock.sleep, clock=clock)
    harness = harness_of(answer_json({"error": error}, status), plugins=[retry])

    outcome = await harness.chat.generate(PROMPT)

    assert isinstance(outcome, Failure)
    assert len(harness.terminal.requests) == (2 if retried else 1)


async def test_retries_without_provider_detail_are_returned_as_they_are(
    harness_of: Callable[..., Harness],
) -> None:
    clock = FakeClock()
    retry = Retry(max_retries=1, sleep=clock.sleep, clock=clock)
    harness = harness_of(lambda request: httpx.Response(503, text="busy"), plugins=[retry])

    outcome = await harness.chat.generate(PROMPT)

    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert isinstance(error, MaxRetriesExceededError)
    assert [a.message for a in error.attempts] == ["HTTP 503 Service Unavailable"] * 2


def test_the_veto_ignores_responses_it_cannot_read() -> None:
    request = httpx.Request("POST", BASE_URL)
    unread = httpx.Response(429, stream=httpx.ByteStream(b"{}"), request=request)
    garbage = httpx.Response(429, content=b"\xff\xfe", request=request)
    assert not is_insufficient_quota(unread)
    assert not is_insufficient_quota(garbage)


# -- streams ---------------------------------------------------------------------------------


async def test_a_stream_ends_at_done_and_skips_comments_and_other_events(
    harness_of: Callable[..., Harness],
) -> None:
    usage = json.dumps({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}})
    body = (
        b": keep-alive\r\n\r\n"
        + b"event: ping\r\ndata: {}\r\n\r\n"
        + sse(delta(""), delta("Hel"), delta("lo"), delta(finish="stop"), usage, "[DONE]")
        + sse(delta(" after done"))
    )
    harness = harness_of(answer_stream(body))
    stream = harness.chat.generate_stream(PROMPT)

    pieces, failures = await drain(stream)

    assert (pieces, failures) == (["Hel", "lo"], [])
    assert stream.usage == Usage(input_tokens=2, output_tokens=3)
    assert stream.finish_reason == "stop"
    assert stream.model == "gpt-served"
    (sent,) = harness.sent_bodies()
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_a_stream_that_ends_without_done_after_its_finish_reason_is_complete(
    harness_of: Callable[..., Harness],
) -> None:
    """Some compatible servers send no ``[DONE]``: the finish_reason says the answer is whole."""
    body = sse(delta("a"), delta("b", finish="stop"))
    stream = harness_of(answer_stream(body)).chat.generate_stream(PROMPT)
    pieces, failures = await drain(stream)
    assert (pieces, failures) == (["a", "b"], [])
    assert stream.finish_reason == "stop"
    assert stream.usage is None


@pytest.mark.parametrize("tail", ["", 'data: {"choices": [{"delta": {"content": "c'])
async def test_a_stream_that_ends_before_its_answer_finished_is_a_protocol_error(
    harness_of: Callable[..., Harness], tail: str
) -> None:
    """A body that ends with neither ``[DONE]`` nor a finish_reason (cleanly between events, or
    inside one, which an event stream drops) was cut short: the pieces that came, then a
    ``ProtocolError``, not an answer that looks whole."""
    body = sse(delta("a"), delta("b"), tail=tail)
    stream = harness_of(answer_stream(body)).chat.generate_stream(PROMPT)
    pieces, failures = await drain(stream)
    assert pieces == ["a", "b"]
    (failure,) = failures
    assert isinstance(failure, ProtocolError)
    assert "ended before the answer finished" in str(failure)
    assert stream.finish_reason is None


async def test_an_answer_that_is_not_an_event_stream_is_a_decode_error(
    harness_of: Callable[..., Harness],
) -> None:
    handler = answer_stream(json.dumps(completion()).encode(), {"content-type": "application/json"})
    pieces, failures = await drain(harness_of(handler).chat.generate_stream(PROMPT))
    assert pieces == []
    (failure,) = failures
    assert isinstance(failure, DecodeError)
    assert "text/event-stream" in str(failure)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("[1, 2]", "not a JSON object"),
        ('{"choices": {}}', "choices is not a list"),
        ('{"choices": [3]}', "choices[0] is not an object"),
        ('{"choices": [{"delta": "x"}]}', "delta is not an object"),
        ('{"choices": [{"delta": {"content": 5}}]}', "delta.content is not a string"),
        ('{"choices": [{"delta": {}, "finish_reason": 5}]}', "finish_reason is not a string"),
        ('{"model": 3, "choices": []}', "stream chunk model is not a string: int"),
        ('{"choices": [], "usage": {"prompt_tokens": -1}}', "usage.prompt_tokens"),
    ],
)
async def test_a_malformed_chunk_ends_the_stream_with_a_decode_error(
    harness_of: Callable[..., Harness], data: str, fragment: str
) -> None:
    body = sse(delta("ok"), data, delta("never"))
    pieces, failures = await drain(harness_of(answer_stream(body)).chat.generate_stream(PROMPT))
    assert pieces == ["ok"]
    (failure,) = failures
    assert isinstance(failure, DecodeError)
    assert fragment in str(failure)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            'event: error\ndata: {"error": {"message": "overloaded", "type": "server_error"}}\n\n',
            "provider error in the stream: overloaded (type=server_error)",
        ),
        (
            "event: error\ndata: something broke\n\n",
            "provider error in the stream: something broke",
        ),
    ],
)
async def test_an_error_event_ends_the_stream_with_the_provider_message(
    harness_of: Callable[..., Harness], event: str, message: str
) -> None:
    body = sse(delta("ok"), tail=event) + sse(delta("never"))
    pieces, failures = await drain(harness_of(answer_stream(body)).chat.generate_stream(PROMPT))
    assert pieces == ["ok"]
    (failure,) = failures
    assert type(failure) is RequestError
    assert failure.message == message


async def test_an_event_over_the_size_cap_is_a_decode_error(
    harness_of: Callable[..., Harness],
) -> None:
    body = sse(delta("ok"), delta("x" * 500))
    harness = harness_of(answer_stream(body), max_event_bytes=200)
    pieces, failures = await drain(harness.chat.generate_stream(PROMPT))
    assert pieces == ["ok"]
    (failure,) = failures
    assert isinstance(failure, DecodeError)


async def test_cancelling_a_call_propagates(harness_of: Callable[..., Harness]) -> None:
    started = asyncio.Event()

    async def never(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    harness = harness_of(never)
    task = asyncio.create_task(harness.chat.generate(PROMPT))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
