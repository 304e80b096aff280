"""OpenAIChat over real HTTP, against a local OpenAI-compatible server on 127.0.0.1.

The server is :class:`FakeOpenAI` below: a small Chat Completions implementation (plain JSON
and SSE streams, OpenAI-style error bodies, bearer-key check) on top of httprail's
``ChaosServer``, which records every request it receives. Tests can queue scripted replies
(errors, broken streams) that are answered before it behaves normally again. The clients use
httprail's default middleware stack (``plugins=None``), as an application would.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from httprail import (
    AsyncClient,
    ClientStatusError,
    ConfigError,
    DecodeError,
    Event,
    Failure,
    HttpSettings,
    InvalidRequestError,
    MaxRetriesExceededError,
    ProtocolError,
    ReadError,
    RequestError,
    Result,
    RetryEvent,
    ServerStatusError,
    Success,
    build_stack,
)
from httprail.generators import (
    GenerationRequest,
    GenerationStream,
    Message,
    ProviderFactory,
    Usage,
)
from httprail.testing import ChaosServer, RecordedRequest, Reply

from httprail_openai import OpenAIChat

API_KEY = "sk-test-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MODEL = "gpt-test"
SERVED_MODEL = f"{MODEL}-2025-01-01"


# -- the local OpenAI-compatible server ------------------------------------------------------


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> object:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_reply(status: int, message: str, type_: str, code: str | None, **headers: str) -> Reply:
    """An error answer with an OpenAI-style body (header names: ``_`` for ``-``)."""
    extra = {name.replace("_", "-"): value for name, value in headers.items()}
    return Reply.json(error_body(message, type_, code), status=status, headers=extra)


def chunk(content: str | None = None, *, finish: str | None = None, role: bool = False) -> str:
    """The ``data`` of one ``chat.completion.chunk`` event."""
    delta: dict[str, str] = {"role": "assistant"} if role else {}
    if content is not None:
        delta["content"] = content
    return json.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": SERVED_MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def usage_chunk(prompt: int, completion: int) -> str:
    """The final chunk sent with ``stream_options.include_usage``: no choices, the usage."""
    return json.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "model": SERVED_MODEL,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
    )


class FakeOpenAI:
    """A Chat Completions endpoint at ``/v1/chat/completions`` of a running ``ChaosServer``.

    It answers ``"You said: <last user message>"``, one word per stream chunk, counts tokens
    as words, honours ``max_tokens`` (``finish_reason="length"``), checks the bearer key (401
    ``invalid_api_key`` otherwise) and the body (400 otherwise). :meth:`then` queues scripted
    replies answered first.
    """

    path = "/v1/chat/completions"

    def __init__(self, server: ChaosServer) -> None:
        self.server = server
        self._queued: deque[Reply] = deque()
        self._lock = threading.Lock()
        server.route(self.path, self._answer)

    @property
    def base_url(self) -> str:
        """The API's base URL (``http://127.0.0.1:<port>/v1``)."""
        return f"{self.server.url}/v1"

    def then(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order, before behaving normally."""
        with self._lock:
            self._queued.extend(replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests the endpoint received."""
        return self.server.requests_for(self.path)

    def bodies(self) -> list[Any]:
        """The JSON bodies the endpoint received."""
        return [json.loads(r.body) for r in self.requests]

    def _answer(self, request: RecordedRequest) -> Reply:
        with self._lock:
            if self._queued:
                return self._queued.popleft()
        if request.header("authorization") != f"Bearer {API_KEY}":
            return error_reply(
                401,
                "Incorrect API key provided: sk-wr***ng. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        try:
            body = json.loads(request.body)
        except ValueError:
            return error_reply(
                400, "We could not parse the JSON body.", "invalid_request_error", None
            )
        problem = self._problem(body)
        if problem is not None:
            return error_reply(400, problem, "invalid_request_error", None)
        return self._complete(body)

    @staticmethod
    def _problem(body: object) -> str | None:
        if not isinstance(body, dict):
            return "The body must be an object."
        if not isinstance(body.get("model"), str):
            return "you must provide a model parameter"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty array"
        return None

    @staticmethod
    def _complete(body: Mapping[str, Any]) -> Reply:
        messages: Sequence[Mapping[str, str]] = body["messages"]
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        words = f"You said: {last_user}".split()
        finish = "stop"
        limit = body.get("max_tokens")
        if isinstance(limit, int) and limit < len(words):
            words, finish = words[:limit], "length"
        pieces = [word if i == 0 else f" {word}" for i, word in enumerate(words)]
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        if body.get("stream"):
            events = [chunk("", role=True), *(chunk(p) for p in pieces), chunk(finish=finish)]
            if body.get("stream_options", {}).get("include_usage"):
                events.append(usage_chunk(prompt_tokens, len(pieces)))
            return Reply.sse([*events, "[DONE]"])
        return Reply.json(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": SERVED_MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(pieces)},
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(pieces),
                    "total_tokens": prompt_tokens + len(pieces),
                },
            }
        )


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A running local OpenAI-compatible server (its own ChaosServer, stopped afterwards)."""
    with ChaosServer() as server:
        yield FakeOpenAI(server)


@pytest.fixture
async def client(fake_openai: FakeOpenAI) -> AsyncIterator[AsyncClient]:
    """A client with httprail's default middleware stack and the right key."""
    async with AsyncClient(fake_openai.base_url, headers=AUTH) as client:
        yield client


@pytest.fixture
def chat(client: AsyncClient) -> OpenAIChat:
    return OpenAIChat(client, model=MODEL)


async def collect(
    stream: GenerationStream,
) -> tuple[list[str], list[RequestError]]:
    """Every piece of text and every failure a stream yields, in order."""
    pieces: list[str] = []
    failures: list[RequestError] = []
    async with stream:
        async for item in stream:
            assert not failures, "nothing may follow a Failure"
            if isinstance(item, Success):
                pieces.append(item.unwrap())
            else:
                failures.append(item.failure())
    return pieces, failures


def expect_failure(outcome: Result[Any, RequestError]) -> RequestError:
    assert isinstance(outcome, Failure), outcome
    error = outcome.failure()
    assert isinstance(error, RequestError)
    return error


PROMPT = GenerationRequest.from_prompt("hello there", system="Be brief.")


# -- plain completions -----------------------------------------------------------------------


async def test_generate_returns_the_text_model_usage_and_finish_reason(
    chat: OpenAIChat, fake_openai: FakeOpenAI
) -> None:
    outcome = await chat.generate(PROMPT)

    assert isinstance(outcome, Success), outcome
    result = outcome.unwrap()
    assert result.text == "You said: hello there"
    assert result.model == SERVED_MODEL
    assert result.usage == Usage(input_tokens=4, output_tokens=4)
    assert result.finish_reason == "stop"
    (sent,) = fake_openai.bodies()
    assert sent == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there"},
        ],
    }


async def test_the_request_fields_reach_the_server(
    client: AsyncClient, fake_openai: FakeOpenAI
) -> None:
    """Typed fields, extra_body and the request's extra are sent; the request's model wins."""
    chat = OpenAIChat(client, model=MODEL, extra_body={"user": "u-1", "temperature": 1.5})
    request = GenerationRequest(
        messages=(Message.user("one two three four"),),
        model="other-model",
        max_tokens=2,
        temperature=0.25,
        stop=("\n\n",),
        extra={"seed": 7},
    )
    outcome = await chat.generate(request)

    assert isinstance(outcome, Success), outcome
    assert outcome.unwrap().text == "You said:"
    assert outcome.unwrap().finish_reason == "length"
    (sent,) = fake_openai.bodies()
    assert sent == {
        "model": "other-model",
        "messages": [{"role": "user", "content": "one two three four"}],
        "user": "u-1",
        "temperature": 0.25,
        "max_tokens": 2,
        "stop": ["\n\n"],
        "seed": 7,
    }
    (received,) = fake_openai.requests
    assert received.header("content-type") == "application/json"
    assert (received.header("idempotency-key") or "").startswith("httprail-openai-")


async def test_an_invalid_request_is_refused_without_sending(
    chat: OpenAIChat, fake_openai: FakeOpenAI
) -> None:
    outcome = await chat.generate(GenerationRequest(messages=(Message("robot", "hi"),)))

    error = expect_failure(outcome)
    assert isinstance(error, InvalidRequestError)
    assert "role" in str(error)
    assert fake_openai.requests == []


async def test_malformed_json_is_a_decode_error(chat: OpenAIChat, fake_openai: FakeOpenAI) -> None:
    fake_openai.then(Reply(headers=(("content-type", "application/json"),), body=b"{not json"))

    error = expect_failure(await chat.generate(PROMPT))

    assert isinstance(error, DecodeError)
    assert "not valid JSON" in str(error)


async def test_a_completion_without_choices_is_a_decode_error_naming_them(
    chat: OpenAIChat, fake_openai: FakeOpenAI
) -> None:
    fake_openai.then(Reply.json({"id": "x", "object": "chat.completion", "choices": []}))

    error = expect_failure(await chat.generate(PROMPT))

    assert isinstance(error, DecodeError)
    assert "choices[0]" in str(error)


# -- errors and retries ----------------------------------------------------------------------


async def test_a_429_with_retry_after_ms_is_retried_after_that_delay(
    fake_openai: FakeOpenAI,
) -> None:
    """The default stack waits the 200 ms the server asks for, then the retry succeeds."""
    fake_openai.then(
        error_reply(
            429,
            "Rate limit reached for requests",
            "requests",
            "rate_limit_exceeded",
            retry_after_ms="200",
        )
    )
    events: list[Event] = []
    async with AsyncClient(fake_openai.base_url, headers=AUTH, observers=[events.append]) as c:
        outcome = await OpenAIChat(c, model=MODEL).generate(PROMPT)

    assert isinstance(outcome, Success), outcome
    first, second = fake_openai.requests
    gap = second.time - first.time
    assert gap >= 0.2, f"the retry came after {gap:.3f}s"
    # The wait was the server's, not the stack's own (random) backoff.
    retries = [e for e in events if isinstance(e, RetryEvent)]
    assert [(e.delay, e.delay_source) for e in retries] == [(0.2, "retry-after-ms")]
    # One Idempotency-Key per call (it is what lets Retry repeat a POST), the same on its retry.
    assert first.header("idempotency-key") == second.header("idempotency-key")
    assert first.header("idempotency-key") is not None


async def test_a_401_is_not_retried_and_carries_the_provider_message(
    fake_openai: FakeOpenAI,
) -> None:
    wrong_key = {"Authorization": "Bearer sk-wrong"}
    async with AsyncClient(fake_openai.base_url, headers=wrong_key) as client:
        outcome = await OpenAIChat(client, model=MODEL).generate(PROMPT)

    error = expect_failure(outcome)
    assert isinstance(error, ClientStatusError)
    assert error.status_code == 401
    assert error.response.status_code == 401
    assert "Incorrect API key provided" in str(error)
    assert "type=invalid_request_error" in str(error)
    assert "code=invalid_api_key" in str(error)
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(
    ("type_", "code"),
    [("insufficient_quota", "insufficient_quota"), ("insufficient_quota", None)],
    ids=["code", "type-only"],
)
async def test_a_429_out_of_quota_is_not_retried(
    chat: OpenAIChat, fake_openai: FakeOpenAI, type_: str, code: str | None
) -> None:
    """Waiting does not bring quota back: one request, even though the server asks to wait."""
    fake_openai.then(
        error_reply(429, "You exceeded your current quota.", type_, code, retry_after_ms="10")
    )

    error = expect_failure(await chat.generate(PROMPT))

    assert isinstance(error, ClientStatusError)
    assert error.status_code == 429
    assert "You exceeded your current quota." in str(error)
    assert "insufficient_quota" in str(error)
    assert len(fake_openai.requests) == 1


async def test_running_out_of_retries_keeps_the_provider_message_of_each_attempt(
    fake_openai: FakeOpenAI,
) -> None:
    overloaded = error_reply(
        503, "The engine is currently overloaded.", "server_error", None, retry_after_ms="1"
    )
    fake_openai.then(overloaded, overloaded)
    settings = HttpSettings(max_retries=1)
    async with AsyncClient(fake_openai.base_url, headers=AUTH, settings=settings) as client:
        outcome = await OpenAIChat(client, model=MODEL).generate(PROMPT)

    error = expect_failure(outcome)
    assert isinstance(error, MaxRetriesExceededError)
    assert len(error.attempts) == 2
    for attempt in error.attempts:
        assert isinstance(attempt, ServerStatusError)
        assert "The engine is currently overloaded. (type=server_error)" in str(attempt)
    assert error.__cause__ is error.last
    assert len(fake_openai.requests) == 2


# -- streams ---------------------------------------------------------------------------------


async def test_generate_stream_yields_the_text_and_records_usage(
    chat: OpenAIChat, fake_openai: FakeOpenAI
) -> None:
    stream = chat.generate_stream(PROMPT)

    pieces, failures = await collect(stream)

    assert failures == []
    assert pieces == ["You", " said:", " hello", " there"]
    assert stream.usage == Usage(input_tokens=4, output_tokens=4)
    assert stream.finish_reason == "stop"
    assert stream.model == SERVED_MODEL
    (sent,) = fake_openai.bodies()
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert fake_openai.requests[0].header("accept") == "text/event-stream"


async def test_a_stream_dropped_after_two_chunks_ends_with_one_failure_and_no_retry(
    chat: OpenAIChat, fake_openai: FakeOpenAI
) -> None:
    fake_openai.then(Reply.sse([chunk("Hello"), chunk(" world"), chunk("!")], drop_after=2))

    pieces, failures = await collect(chat.generate_stream(PROMPT))

    assert pieces == ["Hello", " world"]
    (failure,) = failures
    assert isinstance(failure, ReadError | ProtocolError), failure
    assert len(fake_openai.requests) == 1


async def test_a_stream_refused_before_it_starts_is_retried(
    chat: OpenAIChat, fake_openai: FakeOpenAI
) -> None:
    """Retries happen before the response headers: a 429 there is retried like any call."""
    fake_openai.then(
        error_reply(
            429, "Rate limit reached", "requests", "rate_limit_exceeded", retry_after_ms="1"
        )
    )

    pieces, failures = await collect(chat.generate_stream(PROMPT))

    assert failures == []
    assert "".join(pieces) == "You said: hello there"
    assert len(fake_openai.requests) == 2


async def test_an_error_status_before_the_stream_is_one_decoded_failure(
    chat: OpenAIChat, fake_openai: FakeOpenAI
) -> None:
    fake_openai.then(
        error_reply(400, "Invalid value for 'temperature'.", "invalid_request_error", None)
    )

    pieces, failures = await collect(chat.generate_stream(PROMPT))

    assert pieces == []
    (failure,) = failures
    assert isinstance(failure, ClientStatusError)
    assert failure.status_code == 400
    assert "Invalid value for 'temperature'." in str(failure)
    assert len(fake_openai.requests) == 1


async def test_a_stream_chunk_that_is_not_json_ends_the_stream_with_a_decode_error(
    chat: OpenAIChat, fake_openai: FakeOpenAI
) -> None:
    fake_openai.then(Reply.sse([chunk("Hello"), "{oops", chunk(" never seen"), "[DONE]"]))

    pieces, failures = await collect(chat.generate_stream(PROMPT))

    assert pieces == ["Hello"]
    (failure,) = failures
    assert isinstance(failure, DecodeError)
    assert "not valid JSON" in str(failure)


async def test_a_provider_error_inside_the_stream_ends_it_with_the_provider_message(
    chat: OpenAIChat, fake_openai: FakeOpenAI
) -> None:
    overloaded = json.dumps(error_body("The server had an error.", "server_error", None))
    fake_openai.then(Reply.sse([chunk("Hel"), overloaded, chunk("lo")]))

    pieces, failures = await collect(chat.generate_stream(PROMPT))

    assert pieces == ["Hel"]
    (failure,) = failures
    assert type(failure) is RequestError
    assert "The server had an error. (type=server_error)" in str(failure)


async def test_a_stream_left_early_is_closed_and_the_client_stays_usable(
    chat: OpenAIChat, fake_openai: FakeOpenAI
) -> None:
    fake_openai.then(Reply.sse([chunk("a"), chunk("b"), chunk("c"), "[DONE]"], event_delay=0.05))
    stream = chat.generate_stream(PROMPT)
    async with stream:
        async for item in stream:
            assert item == Success("a")
            break

    outcome = await chat.generate(PROMPT)

    assert isinstance(outcome, Success), outcome
    assert len(fake_openai.requests) == 2


async def test_a_stream_that_is_never_iterated_sends_nothing(
    chat: OpenAIChat, fake_openai: FakeOpenAI
) -> None:
    stream = chat.generate_stream(PROMPT)
    await stream.aclose()

    assert fake_openai.requests == []


async def test_an_invalid_stream_request_is_one_failure_without_sending(
    chat: OpenAIChat, fake_openai: FakeOpenAI
) -> None:
    pieces, failures = await collect(chat.generate_stream(GenerationRequest(messages=())))

    assert pieces == []
    (failure,) = failures
    assert isinstance(failure, InvalidRequestError)
    assert "messages" in str(failure)
    assert fake_openai.requests == []


# -- a provider stack declared only in TOML --------------------------------------------------

STACK_FILE = """
[providers.local]
base_url = "{base_url}"
api_key_env = "LOCAL_OPENAI_KEY"
stack = ["logging", "retry", "circuit_breaker", "auth", "openai-chat"]
settings = {{ backoff_base = 0.01, backoff_max = 0.05 }}

[providers.local.options.circuit_breaker]
failure_threshold = 3

[providers.local.options.openai-chat]
model = "{model}"
"""


def stack_file(tmp_path: Path, fake_openai: FakeOpenAI, text: str = STACK_FILE) -> Path:
    path = tmp_path / "httprail.toml"
    path.write_text(text.format(base_url=fake_openai.base_url, model=MODEL))
    return path


async def test_a_provider_declared_only_in_toml_works_end_to_end(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    path = stack_file(tmp_path, fake_openai)
    env = {"LOCAL_OPENAI_KEY": API_KEY}
    async with build_stack(path, "local", environ=env) as stack:
        names = [p.name for p in stack.pipeline.plugins]
        assert names == ["logging", "retry", "circuit_breaker", "auth"]
        assert isinstance(stack.generator, OpenAIChat)

        outcome = await stack.generator.generate(PROMPT)
        assert isinstance(outcome, Success), outcome
        assert outcome.unwrap().text == "You said: hello there"

        fake_openai.then(error_reply(503, "overloaded", "server_error", None))
        outcome = await stack.generator.generate(PROMPT)
        assert isinstance(outcome, Success), outcome  # retried by the declared retry stage

        pieces, failures = await collect(stack.generator.generate_stream(PROMPT))
        assert "".join(pieces) == "You said: hello there"
        assert failures == []
    seen = fake_openai.requests
    assert len(seen) == 4  # 1 + (503, then success) + 1 stream
    assert {r.header("authorization") for r in seen} == {f"Bearer {API_KEY}"}


@pytest.mark.parametrize(
    ("typo", "fixed", "named"),
    [
        ('"retyr"', '"retry"', "unknown plugin 'retyr'"),
        ('"openai-chta"', '"openai-chat"', "unknown plugin 'openai-chta'"),
        ('"circuit_breakr"', '"circuit_breaker"', "unknown plugin 'circuit_breakr'"),
        ("failure_treshold = 3", "failure_threshold = 3", "unknown option 'failure_treshold'"),
        ('modle = "{model}"', 'model = "{model}"', "unknown option 'modle'"),
        ("backoff_bse = 0.01", "backoff_base = 0.01", "settings.backoff_bse: unknown setting"),
        ('failure_threshold = "3"', "failure_threshold = 3", "option 'failure_threshold'"),
    ],
)
def test_a_typo_in_any_plugin_name_or_option_is_a_config_error_naming_it(
    tmp_path: Path, fake_openai: FakeOpenAI, typo: str, fixed: str, named: str
) -> None:
    text = STACK_FILE.replace(fixed, typo, 1)
    assert text != STACK_FILE
    path = stack_file(tmp_path, fake_openai, text)
    with pytest.raises(ConfigError) as caught:
        build_stack(path, "local", environ={"LOCAL_OPENAI_KEY": API_KEY})
    message = str(caught.value)
    assert message.startswith(f"{path}: provider 'local'"), message
    assert named in message, message
    assert fake_openai.requests == []


async def test_a_provider_factory_from_the_stack_file_serves_each_model(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    path = stack_file(tmp_path, fake_openai)
    env = {"LOCAL_OPENAI_KEY": API_KEY}
    async with ProviderFactory.from_config(path, environ=env) as providers:
        assert providers.keys() == ("local",)
        default = (await providers.get("local")).unwrap()
        other = (await providers.get("local", model="other-model")).unwrap()
        assert (await default.generate(PROMPT)).unwrap().text == "You said: hello there"
        assert (await other.generate(PROMPT)).unwrap().text == "You said: hello there"
        missing = await providers.get("remote")
    assert isinstance(missing, Failure)
    assert str(missing.failure()) == "no provider 'remote'; known: local"
    models = [body["model"] for body in fake_openai.bodies()]
    assert models == [MODEL, "other-model"]


async def test_an_event_trickling_in_ends_at_the_read_timeout_not_never() -> None:
    """A server that sends one whole chunk, then an event one byte at a time and never ends it:
    every byte would reset the read timeout, so the event itself is bounded by it. The
    pieces that came, then one read-timeout Failure, within the read timeout (0.3 s), where
    the stream used to stay open for as long as the server went on."""
    import asyncio
    import time

    from httprail import RequestTimeoutError

    whole = json.dumps({"model": MODEL, "choices": [{"delta": {"content": "hi"}}]})

    handlers: list[asyncio.Task[Any]] = []

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        event = f"data: {whole}\n\n".encode()
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        try:
            for _ in range(200):  # 10 s of one byte per 50 ms, never a line end
                writer.write(b"1\r\nx\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = HttpSettings(timeout_read=0.3, max_retries=0)
    try:
        async with AsyncClient(f"http://127.0.0.1:{port}/v1", settings=settings) as client:
            chat = OpenAIChat(client, model=MODEL)
            started = time.monotonic()
            items = [
                item async for item in chat.generate_stream(GenerationRequest.from_prompt("x"))
            ]
            elapsed = time.monotonic() - started
    finally:
        server.close()
        for handler in handlers:  # the trickle goes on after the client left: stopped here
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
    assert items[0] == Success("hi")
    error = items[-1].failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "read"
    assert len(items) == 2
    assert elapsed < 5  # a hang guard: the bound is 0.3 s of unfinished event
