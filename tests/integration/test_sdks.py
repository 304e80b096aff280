"""The real, latest ``openai`` and ``anthropic`` SDKs over httprail's transport, on httpx2.

Three setups run the same scenarios against a local fake of both APIs (a ``ChaosServer`` that
records every request):

- ``openai-httpx2``: ``openai.DefaultAsyncHttpxClient`` (an ``httpx2.AsyncClient``) over
  ``client.as_httpx_transport()``;
- ``openai-httpx``: a legacy ``httpx.AsyncClient`` over the same transport;
- ``anthropic-httpx2``: ``anthropic.DefaultAsyncHttpxClient`` over
  ``client.as_httpx2_transport()`` (anthropic refuses any object of the ``httpx`` package).

Every SDK runs with ``max_retries=0`` over an ``AsyncClient``'s default stack, as
docs/openai-sdk.md says, with the transport's defaults: httprail must retry what the SDK would
have retried, and the SDK must see its own error classes.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from httprail import AsyncClient, HttpSettings, MaxRetriesExceededError, RequestTimeoutError
from httprail.testing import ChaosServer, RecordedRequest, Reply

from .test_openai_sdk import causes

API_KEY = "sk-test-0123456789"
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
WORDS = ["You", " said:", " hello"]
# The default stack, with backoff short enough for tests.
SETTINGS = HttpSettings(backoff_base=0.01, backoff_max=0.02, timeout_connect=1, timeout_read=5)


# -- the fake APIs -------------------------------------------------------------------------------


def openai_chunk(content: str | None = None, *, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return json.dumps(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [choice],
        }
    )


def anthropic_event(kind: str, **fields: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}"


def anthropic_message(text: str) -> dict[str, Any]:
    return {
        "id": "msg_local",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": text}] if text else [],
        "stop_reason": "end_turn" if text else None,
        "stop_sequence": None,
        "usage": {"input_tokens": 2, "output_tokens": 3},
    }


def openai_stream(words: list[str]) -> list[str]:
    return [*(openai_chunk(w) for w in words), openai_chunk(finish="stop"), "[DONE]"]


def anthropic_stream(words: list[str]) -> list[str]:
    block = {"type": "text", "text": ""}
    deltas = [
        anthropic_event("content_block_delta", index=0, delta={"type": "text_delta", "text": w})
        for w in words
    ]
    return [
        anthropic_event("message_start", message=anthropic_message("")),
        anthropic_event("content_block_start", index=0, content_block=block),
        *deltas,
        anthropic_event("content_block_stop", index=0),
        anthropic_event(
            "message_delta",
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage={"output_tokens": 3},
        ),
        anthropic_event("message_stop"),
    ]


class FakeAPIs:
    """OpenAI's ``/v1/chat/completions`` and Anthropic's ``/v1/messages`` on a ChaosServer:
    a completion or a stream of :data:`WORDS`, 401 for a wrong key; :meth:`then` queues
    scripted replies answered first."""

    def __init__(self, server: ChaosServer) -> None:
        self.server = server
        self._queued: deque[Reply] = deque()
        self._lock = threading.Lock()
        server.route(OPENAI_PATH, self._openai)
        server.route(ANTHROPIC_PATH, self._anthropic)

    def then(self, *replies: Reply) -> None:
        with self._lock:
            self._queued.extend(replies)

    def _scripted(self) -> Reply | None:
        with self._lock:
            return self._queued.popleft() if self._queued else None

    def _openai(self, request: RecordedRequest) -> Reply:
        scripted = self._scripted()
        if scripted is not None:
            return scripted
        if request.header("authorization") != f"Bearer {API_KEY}":
            return Reply.json({"error": {"message": "Incorrect API key."}}, status=401)
        if json.loads(request.body).get("stream"):
            return Reply.sse(openai_stream(WORDS))
        message = {"role": "assistant", "content": "".join(WORDS)}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return Reply.json(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [choice],
            }
        )

    def _anthropic(self, request: RecordedRequest) -> Reply:
        scripted = self._scripted()
        if scripted is not None:
            return scripted
        # anthropic 2.x sends its key as a bearer token (1.x sent x-api-key)
        keys = (request.header("x-api-key"), request.header("authorization"))
        if API_KEY not in keys and f"Bearer {API_KEY}" not in keys:
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            return Reply.json({"type": "error", "error": error}, status=401)
        if json.loads(request.body).get("stream"):
            return Reply.sse(anthropic_stream(WORDS))
        return Reply.json(anthropic_message("".join(WORDS)))


# -- the three setups ----------------------------------------------------------------------------


@dataclass
class Setup:
    """One SDK over one client library: how to build it, call it, and what it raises."""

    name: str
    path: str
    make: Callable[[str, str, dict[str, Any]], Any]
    complete: Callable[..., Any]
    stream: Callable[..., Any]
    stream_events: Callable[[list[str]], list[str]]
    errors: Any  # the SDK module

    def error_body(self, status: int, kind: str) -> Reply:
        if self.errors is anthropic:
            return Reply.json(
                {"type": "error", "error": {"type": kind, "message": kind}}, status=status
            )
        return Reply.json({"error": {"message": kind, "type": kind, "code": None}}, status=status)


def make_openai(legacy: bool) -> Callable[[str, str, dict[str, Any]], openai.AsyncOpenAI]:
    def make(url: str, key: str, options: dict[str, Any]) -> openai.AsyncOpenAI:
        transport = AsyncClient(settings=SETTINGS).as_httpx_transport(**options)
        http_client: Any
        if legacy:
            http_client = httpx.AsyncClient(transport=transport)
        else:
            http_client = openai.DefaultAsyncHttpxClient(transport=transport)
        return openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key=key, http_client=http_client, max_retries=0
        )

    return make


def make_anthropic(url: str, key: str, options: dict[str, Any]) -> anthropic.AsyncAnthropic:
    transport = AsyncClient(settings=SETTINGS).as_httpx2_transport(**options)
    return anthropic.AsyncAnthropic(
        base_url=url,
        api_key=key,
        http_client=anthropic.DefaultAsyncHttpxClient(transport=transport),
        max_retries=0,
    )


HELLO = [{"role": "user", "content": "hello"}]


async def openai_complete(sdk: openai.AsyncOpenAI, **options: Any) -> str:
    completion = await sdk.chat.completions.create(model="m", messages=HELLO, **options)  # type: ignore[arg-type]
    return completion.choices[0].message.content or ""


async def openai_stream_call(sdk: openai.AsyncOpenAI, received: list[str]) -> None:
    stream = await sdk.chat.completions.create(model="m", messages=HELLO, stream=True)  # type: ignore[arg-type]
    async with stream:
        async for event in stream:
            if event.choices and event.choices[0].delta.content:
                received.append(event.choices[0].delta.content)


async def anthropic_complete(sdk: anthropic.AsyncAnthropic, **options: Any) -> str:
    message = await sdk.messages.create(
        model="claude-test", max_tokens=16, messages=HELLO, **options
    )
    return "".join(block.text for block in message.content if block.type == "text")


async def anthropic_stream_call(sdk: anthropic.AsyncAnthropic, received: list[str]) -> None:
    stream = await sdk.messages.create(
        model="claude-test", max_tokens=16, messages=HELLO, stream=True
    )
    async with stream:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                received.append(event.delta.text)


SETUPS = {
    "openai-httpx2": Setup(
        "openai-httpx2",
        OPENAI_PATH,
        make_openai(legacy=False),
        openai_complete,
        openai_stream_call,
        openai_stream,
        openai,
    ),
    "openai-httpx": Setup(
        "openai-httpx",
        OPENAI_PATH,
        make_openai(legacy=True),
        openai_complete,
        openai_stream_call,
        openai_stream,
        openai,
    ),
    "anthropic-httpx2": Setup(
        "anthropic-httpx2",
        ANTHROPIC_PATH,
        make_anthropic,
        anthropic_complete,
        anthropic_stream_call,
        anthropic_stream,
        anthropic,
    ),
}


@pytest.fixture
def apis() -> Iterator[FakeAPIs]:
    with ChaosServer() as server:
        yield FakeAPIs(server)


@pytest.fixture(params=list(SETUPS))
def setup(request: pytest.FixtureRequest) -> Setup:
    return SETUPS[request.param]


def sdk_for(setup: Setup, apis: FakeAPIs, *, key: str = API_KEY, **options: Any) -> Any:
    return setup.make(apis.server.url, key, options)


def seen(setup: Setup, apis: FakeAPIs) -> list[RecordedRequest]:
    return apis.server.requests_for(setup.path)


# -- scenarios -----------------------------------------------------------------------------------


async def test_a_completion_comes_back_through_the_chain(setup: Setup, apis: FakeAPIs) -> None:
    async with sdk_for(setup, apis) as sdk:
        text = await setup.complete(sdk)
    assert text == "You said: hello"
    (request,) = seen(setup, apis)
    assert request.method == "POST"
    # The transport's default: a key the chain's Retry may repeat the POST under.
    assert (request.header("idempotency-key") or "").startswith("httprail-")


async def test_a_stream_streams_through_event_by_event(setup: Setup, apis: FakeAPIs) -> None:
    received: list[str] = []
    async with sdk_for(setup, apis) as sdk:
        await setup.stream(sdk, received)
    assert received == WORDS
    assert len(seen(setup, apis)) == 1


@pytest.mark.parametrize(
    ("asked", "at_least"),
    [({"retry-after-ms": "300"}, 0.3), ({"retry-after": "1"}, 1.0)],
    ids=["retry-after-ms", "retry-after"],
)
async def test_a_429_is_waited_out_and_retried_by_httprail(
    setup: Setup, apis: FakeAPIs, asked: dict[str, str], at_least: float
) -> None:
    limited = setup.error_body(429, "rate_limit_error")
    apis.then(Reply(limited.status_code, (*limited.headers, *asked.items()), limited.body))
    async with sdk_for(setup, apis) as sdk:
        text = await setup.complete(sdk)
    assert text == "You said: hello"
    first, second = seen(setup, apis)
    assert second.time - first.time >= at_least  # the server's delay, not the 10 ms backoff
    # One SDK call: one key for both attempts, and the SDK itself did not retry.
    assert first.header("idempotency-key") == second.header("idempotency-key")
    assert first.header("x-stainless-retry-count") == second.header("x-stainless-retry-count")


async def test_a_429_on_a_post_is_retried_even_with_idempotency_keys_off(
    setup: Setup, apis: FakeAPIs
) -> None:
    apis.then(setup.error_body(429, "rate_limit_error"))
    async with sdk_for(setup, apis, idempotency_keys=False) as sdk:
        assert await setup.complete(sdk) == "You said: hello"
    first, _ = seen(setup, apis)
    assert first.header("idempotency-key") is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [(503, "api_error"), (529, "overloaded_error"), (409, "conflict"), (500, "api_error")],
)
async def test_what_the_sdk_would_retry_httprail_retries(
    setup: Setup, apis: FakeAPIs, status: int, kind: str
) -> None:
    apis.then(setup.error_body(status, kind))
    async with sdk_for(setup, apis) as sdk:
        assert await setup.complete(sdk) == "You said: hello"
    attempts = seen(setup, apis)
    assert len(attempts) == 2
    assert attempts[0].header("idempotency-key") == attempts[1].header("idempotency-key")


async def test_a_503_that_persists_is_the_sdks_server_error_after_httprails_retries(
    setup: Setup, apis: FakeAPIs
) -> None:
    failure = setup.error_body(503, "api_error")
    apis.then(failure, failure, failure, failure)
    async with sdk_for(setup, apis) as sdk:
        with pytest.raises(setup.errors.InternalServerError) as raised:
            await setup.complete(sdk)
    assert raised.value.status_code == 503
    assert len(seen(setup, apis)) == 4  # the default stack: 1 + 3 retries


async def test_a_529_that_persists_is_anthropics_overloaded_error(apis: FakeAPIs) -> None:
    setup = SETUPS["anthropic-httpx2"]
    failure = setup.error_body(529, "overloaded_error")
    apis.then(failure, failure, failure, failure)
    async with sdk_for(setup, apis) as sdk:
        with pytest.raises(anthropic.OverloadedError):
            await setup.complete(sdk)
    assert len(seen(setup, apis)) == 4


async def test_a_401_is_the_sdks_authentication_error_and_not_retried(
    setup: Setup, apis: FakeAPIs
) -> None:
    async with sdk_for(setup, apis, key="sk-wrong") as sdk:
        with pytest.raises(setup.errors.AuthenticationError) as raised:
            await setup.complete(sdk)
    assert raised.value.status_code == 401
    assert len(seen(setup, apis)) == 1


async def test_a_stream_dropped_midway_raises_in_the_sdk_and_is_never_replayed(
    setup: Setup, apis: FakeAPIs
) -> None:
    events = setup.stream_events(["a", "b", "c", "d"])
    kept = 3 if setup.errors is openai else 4  # two text deltas either way
    apis.then(Reply.sse(events, drop_after=kept))
    received: list[str] = []
    async with sdk_for(setup, apis) as sdk:
        with pytest.raises(setup.errors.APIConnectionError) as raised:
            await setup.stream(sdk, received)
    assert received[:2] == ["a", "b"]
    assert "d" not in received
    flavour = httpx if setup.name == "openai-httpx" else httpx2
    assert isinstance(raised.value.__cause__, flavour.TransportError)
    assert len(seen(setup, apis)) == 1


async def test_a_hang_is_the_sdks_timeout_error_after_httprails_retries(
    setup: Setup, apis: FakeAPIs
) -> None:
    apis.then(Reply.slow(3.0), Reply.slow(3.0), Reply.slow(3.0), Reply.slow(3.0))
    started = time.monotonic()
    async with sdk_for(setup, apis) as sdk:
        with pytest.raises(setup.errors.APITimeoutError) as raised:
            await setup.complete(sdk, timeout=0.25)
    assert time.monotonic() - started < 2.5
    chain = causes(raised.value)
    flavour = httpx if setup.name == "openai-httpx" else httpx2
    assert type(chain[1]) is flavour.ReadTimeout
    assert isinstance(chain[2], MaxRetriesExceededError)
    assert isinstance(chain[3], RequestTimeoutError)
    assert chain[3].phase == "read"
    attempts = seen(setup, apis)
    assert len(attempts) == 4  # as the SDK would have, the POST was tried again
    assert len({a.header("idempotency-key") for a in attempts}) == 1


def test_anthropic_refuses_the_httpx_flavoured_transport_so_there_is_an_httpx2_one() -> None:
    client = AsyncClient(settings=SETTINGS)
    with pytest.raises(TypeError, match="httpx2"):
        anthropic.DefaultAsyncHttpxClient(transport=client.as_httpx_transport())
    assert isinstance(client.as_httpx2_transport(), httpx2.AsyncBaseTransport)
