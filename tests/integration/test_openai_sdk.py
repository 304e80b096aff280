"""The real ``openai`` SDK running through an httprail pipeline, against a local server.

The server is a small OpenAI-compatible Chat Completions endpoint (plain JSON and SSE streams,
OpenAI-style error bodies, a bearer-key check) on top of ``ChaosServer``, which records every
request it receives. The SDK is built as docs/openai-sdk.md says: ``max_retries=0`` and
``http_client=httpx.AsyncClient(transport=pipeline.as_httpx_transport(...))``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from httprail import (
    AsyncClient,
    CircuitBreakerOpenError,
    ConnectError,
    HttpSettings,
    MaxRetriesExceededError,
    MiddlewarePlugin,
    Pipeline,
    RequestTimeoutError,
)
from httprail.middleware import CircuitBreaker, Retry, Timeout
from httprail.terminals import HttpxTerminal
from httprail.testing import ChaosServer, RecordedRequest, Reply

from .._net import closed_port

API_KEY = "sk-test-0123456789"
MODEL = "gpt-test"
PATH = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hello there"}]


def error_reply(status: int, message: str, type_: str, code: str | None, **headers: str) -> Reply:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return Reply.json(body, status=status, headers=headers)


def chunk_event(content: str | None = None, *, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    return json.dumps(
        {
            "id": "chatcmpl-local",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


class LocalOpenAI:
    """``/v1/chat/completions`` on a ChaosServer: echoes the last user message, word by word
    when streaming; 401 for a wrong key. :meth:`then` queues scripted replies answered first."""

    def __init__(self, server: ChaosServer) -> None:
        self.server = server
        self._queued: deque[Reply] = deque()
        self._lock = threading.Lock()
        server.route(PATH, self._answer)

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.server.requests_for(PATH)

    def then(self, *replies: Reply) -> None:
        with self._lock:
            self._queued.extend(replies)

    def _answer(self, request: RecordedRequest) -> Reply:
        with self._lock:
            if self._queued:
                return self._queued.popleft()
        if request.header("authorization") != f"Bearer {API_KEY}":
            return error_reply(401, "Incorrect API key provided.", "invalid_request_error", "k")
        body = json.loads(request.body)
        words = f"You said: {body['messages'][-1]['content']}".split()
        pieces = [word if i == 0 else f" {word}" for i, word in enumerate(words)]
        if body.get("stream"):
            events = [*(chunk_event(p) for p in pieces), chunk_event(finish="stop"), "[DONE]"]
            return Reply.sse(events)
        return Reply.json(
            {
                "id": "chatcmpl-local",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(pieces)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6},
            }
        )


@pytest.fixture
def api() -> Iterator[LocalOpenAI]:
    with ChaosServer() as server:
        yield LocalOpenAI(server)


def sdk_over(
    pipeline: Pipeline, base_url: str, *, api_key: str = API_KEY, **transport: Any
) -> openai.AsyncOpenAI:
    """The SDK as the docs build it: its retries off, httprail's transport underneath."""
    http_client = httpx.AsyncClient(transport=pipeline.as_httpx_transport(**transport))
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key, http_client=http_client, max_retries=0
    )


def pipeline(*plugins: MiddlewarePlugin) -> Pipeline:
    return Pipeline(plugins, HttpxTerminal(HttpSettings(timeout_connect=1, timeout_read=5)))


def fast_retry(**options: Any) -> Retry:
    return Retry(**{"max_retries": 2, "backoff_base": 0.01, "backoff_max": 0.02, **options})


def causes(exc: BaseException | None) -> list[BaseException]:
    found: list[BaseException] = []
    while exc is not None:
        found.append(exc)
        exc = exc.__cause__
    return found


def kinds(exc: BaseException) -> Sequence[type[BaseException]]:
    return [type(e) for e in causes(exc)]


# -- (a) success ---------------------------------------------------------------------------------


async def test_a_chat_completion_succeeds(api: LocalOpenAI) -> None:
    async with sdk_over(pipeline(fast_retry()), api.base_url) as sdk:
        completion = await sdk.chat.completions.create(model=MODEL, messages=HELLO)
    assert completion.choices[0].message.content == "You said: hello there"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 6
    assert len(api.requests) == 1


# -- (b) 429 + retry-after-ms handled by httprail ------------------------------------------------


async def test_a_429_with_retry_after_ms_is_waited_out_by_httprail(api: LocalOpenAI) -> None:
    asked = {"retry-after-ms": "200"}
    api.then(error_reply(429, "Rate limit reached.", "requests", "rate_limit_exceeded", **asked))
    started = time.monotonic()
    async with sdk_over(pipeline(fast_retry()), api.base_url, idempotency_keys=True) as sdk:
        completion = await sdk.chat.completions.create(model=MODEL, messages=HELLO)
    assert completion.choices[0].message.content == "You said: hello there"
    first, second = api.requests  # exactly two: the 429 and the retry
    assert second.time - first.time >= 0.2  # the server's asked delay, not the 10 ms backoff
    assert time.monotonic() - started < 2
    # One SDK call, one key, reused by httprail's retry; the SDK itself did not retry.
    assert first.header("idempotency-key") == second.header("idempotency-key") is not None
    assert first.header("x-stainless-retry-count") == second.header("x-stainless-retry-count")


async def test_with_idempotency_keys_off_a_503_on_the_sdks_post_is_not_retried(
    api: LocalOpenAI,
) -> None:
    api.then(error_reply(503, "Overloaded.", "server_error", None))
    async with sdk_over(pipeline(fast_retry()), api.base_url, idempotency_keys=False) as sdk:
        with pytest.raises(openai.InternalServerError) as raised:
            await sdk.chat.completions.create(model=MODEL, messages=HELLO)
    assert raised.value.status_code == 503
    assert raised.value.message.startswith("Error code: 503")
    assert len(api.requests) == 1


async def test_a_429_is_retried_for_the_sdks_post_even_with_idempotency_keys_off(
    api: LocalOpenAI,
) -> None:
    api.then(error_reply(429, "Rate limit reached.", "requests", None, **{"retry-after-ms": "1"}))
    async with sdk_over(pipeline(fast_retry()), api.base_url, idempotency_keys=False) as sdk:
        completion = await sdk.chat.completions.create(model=MODEL, messages=HELLO)
    assert completion.choices[0].message.content == "You said: hello there"
    assert len(api.requests) == 2  # a 429 was refused unprocessed: safe to repeat


# -- (c) 401 -------------------------------------------------------------------------------------


async def test_a_401_is_the_sdks_authentication_error(api: LocalOpenAI) -> None:
    async with sdk_over(
        pipeline(fast_retry()), api.base_url, api_key="sk-wrong", idempotency_keys=True
    ) as sdk:
        with pytest.raises(openai.AuthenticationError) as raised:
            await sdk.chat.completions.create(model=MODEL, messages=HELLO)
    assert raised.value.status_code == 401
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["message"] == "Incorrect API key provided."
    assert len(api.requests) == 1


# -- (d) connection refused and timeouts ----------------------------------------------------------


async def test_connection_refused_is_the_sdks_connection_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    async with sdk_over(pipeline(fast_retry(max_retries=1)), url) as sdk:
        with pytest.raises(openai.APIConnectionError) as raised:
            await sdk.chat.completions.create(model=MODEL, messages=HELLO)
    assert not isinstance(raised.value, openai.APITimeoutError)
    chain = kinds(raised.value)
    # A refused connection was never sent, so even the POST was retried once.
    assert chain[1:4] == [httpx.ConnectError, MaxRetriesExceededError, ConnectError]
    retried = causes(raised.value)[2]
    assert isinstance(retried, MaxRetriesExceededError)
    assert len(retried.attempts) == 2


async def test_the_sdks_own_timeout_reaches_the_terminal(api: LocalOpenAI) -> None:
    api.then(Reply.slow(3.0))
    async with sdk_over(pipeline(fast_retry()), api.base_url, idempotency_keys=False) as sdk:
        with pytest.raises(openai.APITimeoutError) as raised:
            await sdk.chat.completions.create(model=MODEL, messages=HELLO, timeout=0.2)
    httpx_error, timeout = causes(raised.value)[1:3]
    assert type(httpx_error) is httpx.ReadTimeout
    assert isinstance(timeout, RequestTimeoutError)
    assert timeout.phase == "read"
    assert len(api.requests) == 1  # a POST that may have been processed is not repeated


async def test_a_total_deadline_is_the_sdks_timeout_error(api: LocalOpenAI) -> None:
    api.then(Reply.slow(3.0))
    async with sdk_over(pipeline(Timeout(0.5), fast_retry()), api.base_url) as sdk:
        with pytest.raises(openai.APITimeoutError) as raised:
            await sdk.chat.completions.create(model=MODEL, messages=HELLO)
    timeout = causes(raised.value)[2]
    assert isinstance(timeout, RequestTimeoutError)
    assert timeout.phase == "total"
    assert len(api.requests) == 1


# -- (e) streaming -------------------------------------------------------------------------------


async def collect(stream: AsyncIterator[Any]) -> list[str]:
    pieces: list[str] = []
    async for event in stream:
        if event.choices and event.choices[0].delta.content:
            pieces.append(event.choices[0].delta.content)
    return pieces


async def test_a_streamed_completion_streams_through(api: LocalOpenAI) -> None:
    async with sdk_over(pipeline(fast_retry()), api.base_url) as sdk:
        stream = await sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        async with stream:
            pieces = await collect(stream)
    assert pieces == ["You", " said:", " hello", " there"]
    assert len(api.requests) == 1


async def test_a_stream_arriving_event_by_event_is_seen_before_it_ends(api: LocalOpenAI) -> None:
    events = [chunk_event("one"), chunk_event(" two"), chunk_event(finish="stop"), "[DONE]"]
    api.then(Reply.sse(events, event_delay=0.2))
    async with sdk_over(pipeline(fast_retry()), api.base_url) as sdk:
        stream = await sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        async with stream:
            first = await stream.__anext__()
            first_at = time.monotonic()
            rest = await collect(stream)
            ended_at = time.monotonic()
    assert first.choices[0].delta.content == "one"
    # The first event was in hand while the other three (0.2 s apart) were still on their way:
    # nothing buffered the stream until it ended.
    assert ended_at - first_at >= 0.4
    assert rest == [" two"]


async def test_a_stream_dropped_midway_raises_in_the_sdk_after_the_chunks(
    api: LocalOpenAI,
) -> None:
    events = [chunk_event(word) for word in ("a", "b", "c", "d")]
    api.then(Reply.sse([*events, "[DONE]"], drop_after=2))
    received: list[str] = []

    async def consume(stream: openai.AsyncStream[Any]) -> None:
        async with stream:
            async for event in stream:
                received.append(event.choices[0].delta.content or "")

    async with sdk_over(pipeline(fast_retry()), api.base_url, idempotency_keys=True) as sdk:
        stream = await sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        with pytest.raises(openai.APIConnectionError) as raised:
            await consume(stream)
    assert received == ["a", "b"]
    assert isinstance(raised.value.__cause__, httpx.TransportError)  # ReadError-like
    assert len(api.requests) == 1  # a broken stream is reported, never replayed


# -- (f) an open breaker --------------------------------------------------------------------------


async def test_an_open_breaker_is_a_connection_error_caused_by_it(api: LocalOpenAI) -> None:
    api.then(error_reply(503, "Overloaded.", "server_error", None))
    breaker = CircuitBreaker(failure_threshold=1, cooldown=30)
    chain = pipeline(fast_retry(), breaker)
    async with sdk_over(chain, api.base_url, idempotency_keys=False) as sdk:
        with pytest.raises(openai.InternalServerError):
            await sdk.chat.completions.create(model=MODEL, messages=HELLO)
        with pytest.raises(openai.APIConnectionError) as raised:
            await sdk.chat.completions.create(model=MODEL, messages=HELLO)
    assert not isinstance(raised.value, openai.APITimeoutError)
    assert kinds(raised.value)[1:3] == [httpx.ConnectError, CircuitBreakerOpenError]
    assert len(api.requests) == 1  # the second call never left


# -- the default stack, lent by an AsyncClient ----------------------------------------------------


async def test_an_async_clients_default_stack_retries_a_503_for_the_sdk(api: LocalOpenAI) -> None:
    api.then(error_reply(503, "Overloaded.", "server_error", None))
    settings = HttpSettings(backoff_base=0.01, backoff_max=0.02)
    client = AsyncClient(plugins=None, settings=settings, provider="local")
    http_client = httpx.AsyncClient(transport=client.as_httpx_transport(idempotency_keys=True))
    sdk = openai.AsyncOpenAI(
        base_url=api.base_url, api_key=API_KEY, http_client=http_client, max_retries=0
    )
    async with sdk:
        completion = await sdk.chat.completions.create(model=MODEL, messages=HELLO)
    assert completion.choices[0].message.content == "You said: hello there"
    assert len(api.requests) == 2
    snapshot = client.metrics()
    assert sum(m.requests for m in snapshot.values()) == 1  # one logical call, two attempts


# -- the example of docs/openai-sdk.md ------------------------------------------------------------


def docs_example() -> str:
    """The first python block under "A complete example" in docs/openai-sdk.md."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "openai-sdk.md").read_text("utf-8")
    section = page.split("## A complete example", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


async def test_the_docs_example_runs_against_a_local_server(api: LocalOpenAI) -> None:
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(docs_example(), "docs/openai-sdk.md", "exec"), namespace)
    api.then(error_reply(429, "Slow down.", "requests", None, **{"retry-after-ms": "50"}))
    async with namespace["make_sdk"](base_url=api.base_url, api_key=API_KEY) as sdk:
        completion = await sdk.chat.completions.create(model=MODEL, messages=HELLO)
        stream = await sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        async with stream:
            pieces = await collect(stream)
    assert completion.choices[0].message.content == "You said: hello there"
    assert "".join(pieces) == "You said: hello there"
    assert len(api.requests) == 3  # the 429 was retried by the example's chain
