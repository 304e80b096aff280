"""``OpenAIChat``: the Chat Completions API as an httprail generator."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any

import httpx
from httprail import (
    AsyncClient,
    ConfigError,
    DecodeError,
    Failure,
    ProtocolError,
    RequestError,
    Result,
    StatusError,
    Success,
)
from httprail.generators import (
    GenerationRequest,
    GenerationResult,
    GenerationStream,
    SSEEvent,
    iter_sse,
)
from httprail.middleware import NO_RETRY_EXTENSION
from httprail.terminals import read_capped

from ._codec import StreamChunk, decode_chunk, decode_completion, encode_chat, extra_problem
from ._provider_errors import is_insufficient_quota, parse_provider_error, with_provider_detail

__all__ = ["OpenAIChat"]

_MAX_ERROR_BODY = 64 * 1024
_DONE = "[DONE]"
_END = StreamChunk()  # the stream's end: `data: [DONE]`


class OpenAIChat:
    """Chat completions from OpenAI or any server speaking its API, plain or streamed.

    The generator only encodes requests and decodes answers: ``client`` carries the base URL,
    the credentials (``headers`` or an auth stage) and the middleware stack every call goes
    through. Each call sends an ``Idempotency-Key`` header (one per call, the same on every
    retry), which is what lets ``Retry`` repeat these POSTs. A 429 saying
    ``insufficient_quota`` is never retried: waiting does not bring quota back.

    Provider error bodies (``{"error": {"message", "type", "code"}}``) are read into the
    ``StatusError``'s message, keeping its class, ``response`` and ``status_code``.

    Args:
        client: the client to send through, e.g. ``AsyncClient("https://api.openai.com/v1",
            headers={"Authorization": f"Bearer {key}"})``.
        model: the model used when a request names none.
        path: the Chat Completions path, relative to the client's base URL.
        max_event_bytes: the largest SSE event (or line) accepted from a stream.
        extra_body: fields added to every request body (a request's own fields win).

    Raises:
        ConfigError: an option is invalid; the message names it.

    Example:
        >>> chat = OpenAIChat(client, model="gpt-4o-mini")  # doctest: +SKIP
        >>> match await chat.generate(GenerationRequest.from_prompt("Hi")):  # doctest: +SKIP
        ...     case Success(result):
        ...         print(result.text, result.usage)
        ...     case Failure(error):
        ...         print("failed:", error)
    """

    name = "openai-chat"

    def __init__(
        self,
        client: AsyncClient,
        *,
        model: str,
        path: str = "/chat/completions",
        max_event_bytes: int = 1_048_576,
        extra_body: Mapping[str, object] | None = None,
    ) -> None:
        if not isinstance(client, AsyncClient):
            raise ConfigError(
                f"OpenAIChat(client=...) must be an httprail.AsyncClient, "
                f"got {type(client).__name__}"
            )
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"OpenAIChat(model=...) must be a non-empty string, got {model!r}")
        if (
            not isinstance(path, str)
            or not path.strip()
            or any(ch.isspace() or ch == "\x00" for ch in path)
        ):
            raise ConfigError(
                f"OpenAIChat(path=...) must be a non-empty URL path without spaces, got {path!r}"
            )
        if (
            isinstance(max_event_bytes, bool)
            or not isinstance(max_event_bytes, int)
            or max_event_bytes < 1
        ):
            raise ConfigError(
                f"OpenAIChat(max_event_bytes=...) must be an int >= 1, got {max_event_bytes!r}"
            )
        body: Mapping[str, object] = {} if extra_body is None else extra_body
        problem = extra_problem(body)
        if problem is not None:
            raise ConfigError(f"OpenAIChat(extra_body=...) {problem}")
        self.model = model
        self.path = path
        self.max_event_bytes = max_event_bytes
        # A JSON round trip is a deep copy: later changes to the caller's dict do not leak in.
        self.extra_body: Mapping[str, object] = MappingProxyType(json.loads(json.dumps(body)))
        self._client = client

    def __repr__(self) -> str:
        return f"OpenAIChat(model={self.model!r}, path={self.path!r})"

    async def generate(self, request: GenerationRequest) -> Result[GenerationResult, RequestError]:
        """One chat completion.

        Returns:
            The text, model, usage and finish reason; or ``Failure(InvalidRequestError)`` for
            a request that cannot be sent (nothing is sent), the pipeline's failure (provider
            error detail added to a ``StatusError``), or ``Failure(DecodeError)`` for an
            answer that is not a chat completion.
        """
        encoded = encode_chat(
            request, default_model=self.model, extra_body=self.extra_body, stream=False
        )
        if isinstance(encoded, Failure):
            return encoded
        body = encoded.unwrap()
        built = self._build(body, stream=False)
        if isinstance(built, Failure):
            return built
        outcome = await self._client.send(built.unwrap())
        if isinstance(outcome, Failure):
            return Failure(with_provider_detail(outcome.failure()))
        response = outcome.unwrap()
        if response.status_code >= 400:  # a client built with raw_status=True
            return Failure(with_provider_detail(StatusError.from_response(response)))
        return decode_completion(response, model=body["model"])

    def generate_stream(self, request: GenerationRequest) -> GenerationStream:
        """A streamed chat completion: the text as it arrives, one ``Success`` per piece.

        The stream ends after ``data: [DONE]``, or at the end of the body once a chunk gave the
        ``finish_reason`` (a body that ends before either is cut short: ``ProtocolError``, so
        an answer cut clean is not taken for a whole one). Failures end it too,
        as exactly one final ``Failure``: a request that cannot be sent, an error answer before
        the stream starts (retried by the stack like any call), a broken body (never retried:
        the text already yielded cannot be taken back), a chunk that is not JSON
        (``DecodeError``) or a provider error sent inside the stream. After iteration the
        returned stream's ``usage``, ``finish_reason`` and ``model`` hold what the provider
        reported.

        Example:
            >>> stream = chat.generate_stream(GenerationRequest.from_prompt("Hi"))  # doctest: +SKIP
            >>> async for piece in stream:  # doctest: +SKIP
            ...     print(piece.unwrap(), end="")
        """
        return GenerationStream(lambda stream: self._produce(request, stream))

    def _build(self, body: dict[str, Any], *, stream: bool) -> Result[httpx.Request, RequestError]:
        headers = {
            "Accept": "text/event-stream" if stream else "application/json",
            "Idempotency-Key": f"httprail-openai-{uuid.uuid4().hex}",
        }
        built = self._client.build_request(
            "POST", self.path, json=body, headers=headers, stream=stream
        )
        if isinstance(built, Success):
            built.unwrap().extensions[NO_RETRY_EXTENSION] = is_insufficient_quota
        return built

    async def _produce(
        self, request: GenerationRequest, stream: GenerationStream
    ) -> AsyncIterator[Result[str, RequestError]]:
        encoded = encode_chat(
            request, default_model=self.model, extra_body=self.extra_body, stream=True
        )
        if isinstance(encoded, Failure):
            yield encoded
            return
        built = self._build(encoded.unwrap(), stream=True)
        if isinstance(built, Failure):
            yield built
            return
        http_request = built.unwrap()
        outcome = await self._client.send(http_request)
        if isinstance(outcome, Failure):
            yield Failure(with_provider_detail(outcome.failure()))
            return
        response = outcome.unwrap()
        events: AsyncIterator[Result[SSEEvent, RequestError]] | None = None
        try:
            problem = await _not_a_stream(response)
            if problem is not None:
                yield Failure(problem)
                return
            events = iter_sse(
                response,
                max_event_bytes=self.max_event_bytes,
                # an event whose bytes trickle in is bounded as a silent read is
                max_event_seconds=_read_timeout(http_request, self._client.settings.timeout_read),
            )
            async for item in events:
                if isinstance(item, Failure):
                    yield item
                    return
                piece = _read_event(item.unwrap(), http_request)
                if piece is None:
                    continue
                if isinstance(piece, Failure):
                    yield piece
                    return
                chunk = piece.unwrap()
                if chunk is _END:
                    return
                if chunk.model is not None and stream.model is None:
                    stream.model = chunk.model
                if chunk.usage is not None:
                    stream.usage = chunk.usage
                if chunk.finish_reason is not None:
                    stream.finish_reason = chunk.finish_reason
                if chunk.text:
                    yield Success(chunk.text)
            if stream.finish_reason is None:  # the body ended with the answer unfinished
                yield Failure(
                    ProtocolError(
                        "the stream ended before the answer finished (no finish_reason and no "
                        "[DONE]): what came may be cut short",
                        request=http_request,
                    )
                )
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()
            await response.aclose()


def _read_timeout(request: httpx.Request, default: float) -> float | None:
    """The request's own read timeout (``timeout=`` of the call), else ``default``."""
    timeouts = request.extensions.get("timeout")
    if isinstance(timeouts, dict) and "read" in timeouts:
        read = timeouts["read"]
        return float(read) if isinstance(read, int | float) and read > 0 else None
    return default


def _read_event(
    event: SSEEvent, request: httpx.Request
) -> Result[StreamChunk, RequestError] | None:
    """What one SSE event means: a chunk, the end (``_END``), a failure, or nothing (``None``)."""
    if event.event == "error":
        return Failure(_error_event(event.data, request))
    if event.event != "message":
        return None  # pings and other named events carry no completion data
    if event.data == _DONE:
        return Success(_END)
    return decode_chunk(event.data, request)


async def _not_a_stream(response: httpx.Response) -> RequestError | None:
    """Why a successful response cannot be read as an SSE stream, or ``None``."""
    if response.status_code >= 400:  # a client built with raw_status=True
        capped = await read_capped(response, _MAX_ERROR_BODY)
        return with_provider_detail(StatusError.from_response(capped))
    content_type = response.headers.get("content-type", "")
    if content_type and not content_type.lower().startswith("text/event-stream"):
        return DecodeError(
            f"expected a text/event-stream answer, got content-type {content_type!r}",
            request=response.request,
        )
    return None


def _error_event(data: str, request: httpx.Request) -> RequestError:
    """The error an ``event: error`` SSE event reports."""
    try:
        detail = parse_provider_error(json.loads(data))
    except (ValueError, RecursionError):
        detail = None
    if detail is not None:
        text = detail.describe()
    else:
        text = " ".join(data.split()) or "no detail"
        text = text if len(text) <= 200 else text[:197] + "..."
    return RequestError(f"provider error in the stream: {text}", request=request)
