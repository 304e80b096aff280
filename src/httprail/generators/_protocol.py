"""The ``Generator`` protocol (an AI provider) and ``GenerationStream``, a well-behaved stream."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Protocol, Self, TypeAlias, cast, runtime_checkable

from returns.result import Failure, Result

from .._closing import ClosesOnExit
from .._errors import RequestError
from ._types import GenerationRequest, GenerationResult, Usage

__all__ = ["GenerationStream", "Generator", "StreamItem", "StreamSource"]

StreamItem: TypeAlias = Result[str, RequestError]
"""One item of a generation stream: a piece of text, or the reason the stream ended early."""

StreamSource: TypeAlias = (
    Callable[["GenerationStream"], AsyncIterator[StreamItem]]
    | Callable[[], AsyncIterator[StreamItem]]
    | AsyncIterator[StreamItem]
)
"""What a :class:`GenerationStream` reads: a factory (taking the stream, or nothing) or an
async iterator."""


@runtime_checkable
class Generator(Protocol):
    """An AI provider: turns a :class:`GenerationRequest` into text.

    A generator encodes the request for its provider, sends it through an ``AsyncClient`` (and
    so through the client's middleware), and decodes the answer. It never raises for a failed
    call: every failure is a ``Failure(RequestError)``. ``isinstance(obj, Generator)`` checks
    that the attribute and both methods exist.

    Attributes:
        name: the provider's name, as used in stacks and entry points (``"openai-chat"``).
    """

    name: str

    async def generate(self, request: GenerationRequest) -> Result[GenerationResult, RequestError]:
        """The whole answer to ``request``, or why there is none."""
        ...

    def generate_stream(self, request: GenerationRequest) -> AsyncIterator[StreamItem]:
        """The answer as pieces of text; a failure is the last item (usually a GenerationStream).

        A stream is retried only before its first byte; one that breaks later ends with a
        single ``Failure``.
        """
        ...


class GenerationStream(ClosesOnExit, AsyncIterator[StreamItem]):
    """A stream of ``Success(text)`` pieces that ends with at most one ``Failure``.

    The producer is started on the first ``__anext__`` (never, if the stream is closed first).
    Whatever it does, a consumer sees: any number of ``Success`` items, then at most one
    ``Failure``, which is always the last item; after it the producer is closed. An exception
    from the producer (other than cancellation) becomes that final ``Failure``: a
    ``RequestError`` as it is, anything else wrapped in a ``RequestError``.

    The producer reports what it learns on the stream object: ``usage``, ``finish_reason`` and
    ``model`` are ``None`` until it sets them, and final once iteration has ended.

    Args:
        source: a factory called with this stream (so it can set ``usage`` and the rest) or
            with nothing, returning an async iterator of items; or that iterator itself.

    Example:
        >>> async def pieces(stream: GenerationStream) -> AsyncIterator[StreamItem]:
        ...     yield Success("Hel")
        ...     yield Success("lo")
        ...     stream.usage = Usage(input_tokens=3, output_tokens=2)
        >>> stream = GenerationStream(pieces)
        >>> [item.unwrap() async for item in stream]  # doctest: +SKIP
        ['Hel', 'lo']
        >>> stream.usage.total_tokens  # doctest: +SKIP
        5
    """

    def __init__(self, source: StreamSource) -> None:
        self._source: StreamSource | None = source
        self._iterator: AsyncIterator[StreamItem] | None = None
        self._done = False
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.model: str | None = None

    def __repr__(self) -> str:
        state = "done" if self._done else "open" if self._iterator is not None else "not started"
        return f"GenerationStream({state}, model={self.model!r}, usage={self.usage!r})"

    @property
    def done(self) -> bool:
        """Whether the stream has ended (exhausted, failed or closed)."""
        return self._done

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamItem:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await anext(self._open())
        except StopAsyncIteration:
            self._done = True
            raise
        except RequestError as error:
            return await self._fail(error)
        except Exception as exc:  # noqa: BLE001 - a producer's bug ends the stream as a value
            wrapped = RequestError(f"the generation stream failed: {type(exc).__name__}: {exc}")
            wrapped.__cause__ = exc
            return await self._fail(wrapped)
        except BaseException:
            self._done = True  # cancelled: the producer was interrupted and cannot resume
            raise
        if isinstance(item, Failure):
            await self._fail(item.failure())
        return item

    def _open(self) -> AsyncIterator[StreamItem]:
        if self._iterator is None:
            source, self._source = self._source, None
            self._iterator = _start(cast("StreamSource", source), self)
        return self._iterator

    async def _fail(self, error: RequestError) -> StreamItem:
        await self.aclose()
        return Failure(error)

    async def aclose(self) -> None:
        """End the stream and close the producer (idempotent); later reads end at once."""
        self._done = True
        self._source = None
        iterator, self._iterator = self._iterator, None
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


def _start(source: StreamSource, stream: GenerationStream) -> AsyncIterator[StreamItem]:
    """The iterator ``source`` stands for (calling a factory with the stream if it takes one)."""
    if not callable(source):
        return source
    try:
        inspect.signature(source).bind(stream)
    except TypeError:
        return cast("Callable[[], AsyncIterator[StreamItem]]", source)()
    except ValueError:  # no signature to inspect (some builtins): assume it takes the stream
        pass
    return cast("Callable[[GenerationStream], AsyncIterator[StreamItem]]", source)(stream)
