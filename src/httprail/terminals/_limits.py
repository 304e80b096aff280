"""The response size limit (``max_body_bytes``), counted on decoded bytes, for every terminal.

A body is counted as it is decoded, chunk by chunk: gzip and deflate are inflated with zlib's
``max_length``, so one small compressed chunk never expands past the limit in memory (a
``decompress()`` without it inflates a 1 MB gzip bomb to 1 GB in one call). Past the limit,
reading stops with :class:`BodyTooLarge`, an ``httpx.DecodingError`` (so a caller iterating a
stream sees an httpx error, as for any other broken body), which the error mapping turns into
:class:`~httprail.ResponseTooLargeError`.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator
from typing import Any

import httpx

from .._fast import httpx_decoder, keep_decoded, read_plain

__all__ = [
    "MAX_BODY_EXTENSION",
    "PIECE_BYTES",
    "BodyTooLarge",
    "CappedDecoder",
    "counted",
    "declared_fit",
    "declared_too_large",
    "decoded",
    "limit_of",
    "read_limited",
    "settle",
]

MAX_BODY_EXTENSION = "httprail.max_body_bytes"
"""The request extension that overrides ``max_body_bytes`` for one request (``None``: no limit)."""


class BodyTooLarge(httpx.DecodingError):
    """The body passed ``limit`` bytes (after decoding); raised by the terminals' readers."""

    def __init__(
        self, message: str = "", *, request: httpx.Request | None = None, limit: int = 0
    ) -> None:
        super().__init__(
            message or f"response body larger than {limit:,} bytes (max_body_bytes)",
            request=request,
        )
        self.limit = limit


def limit_of(request: httpx.Request, default: int | None) -> int | None:
    """The request's own limit (its ``httprail.max_body_bytes`` extension), else ``default``.

    Raises:
        ValueError: the extension is not a positive int or ``None``.
    """
    extensions = request.extensions
    if MAX_BODY_EXTENSION not in extensions:
        return default
    value = extensions[MAX_BODY_EXTENSION]
    if value is None or (type(value) is int and value > 0):
        return value
    raise ValueError(
        f"request extension {MAX_BODY_EXTENSION!r} must be a positive int or None, got {value!r}"
    )


def declared_too_large(response: httpx.Response, limit: int) -> bool:
    """Whether an unencoded response announces (``Content-Length``) more than ``limit`` bytes."""
    headers = response.headers
    if "content-encoding" in headers:
        return False
    length = headers.get("content-length", "")
    return length.isdigit() and int(length) > limit


def declared_fit(response: httpx.Response, limit: int) -> bool:
    """Whether the body is known to fit ``limit`` (its ``Content-Length``).

    Raises:
        BodyTooLarge: the declared length is over the limit (nothing is read).
    """
    length = response.headers.get("content-length", "")
    if not length.isdigit():
        return False
    if int(length) > limit:
        raise BodyTooLarge(request=response.request, limit=limit)
    return True


def settle(response: httpx.Response, body: bytes, limit: int | None, encoded: bool) -> None:
    """Make ``body``, read whole by a lean terminal, the response's content: over ``limit`` it
    is :class:`BodyTooLarge`; an encoded one is decoded as httpx does (the limit applied by the
    reader already), a plain one is taken as it is."""
    if limit is not None and len(body) > limit:
        raise BodyTooLarge(request=response.request, limit=limit)
    if encoded:
        response.stream = httpx.ByteStream(body)
        response.read()  # undoes content encodings, as httpx does (no limit)
    else:
        read_plain(response, body)


# The most one inflate step produces: a decoded body grows in pieces of at most this size, so
# memory holds the body so far plus one piece (one unbounded step would hold it twice over).
PIECE_BYTES = _STEP = 1024 * 1024


class _Inflate:
    """gzip or deflate (zlib-wrapped, or raw as some servers send it), inflated in pieces."""

    __slots__ = ("_first", "_zlib", "produced")

    def __init__(self, wbits: int, *, deflate: bool) -> None:
        self._zlib = zlib.decompressobj(wbits)
        self._first = deflate  # a first chunk that is not zlib-wrapped is retried as raw
        self.produced = 0

    def pieces(self, data: bytes, limit: int) -> Iterator[bytes]:
        while data:
            # One byte more than allowed says "too large"; never 0, which zlib takes as "no bound".
            room = max(min(limit - self.produced + 1, _STEP), 1)
            try:
                out = self._zlib.decompress(data, room)
            except zlib.error as exc:
                if not self._first:
                    raise httpx.DecodingError(str(exc)) from exc
                self._first = False
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._first = False
            self.produced += len(out)
            data = self._zlib.unconsumed_tail
            if out:
                yield out

    def flush(self) -> bytes:
        out = self._zlib.flush()  # all input was taken by decompress: only what it holds back
        self.produced += len(out)
        return out


class _Foreign:
    """An httpx decoder without an output bound (``br``, ``zstd``): checked after each call."""

    __slots__ = ("_decoder", "produced")

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder
        self.produced = 0

    def pieces(self, data: bytes, limit: int) -> Iterator[bytes]:
        out: bytes = self._decoder.decode(data)
        self.produced += len(out)
        if out:
            yield out

    def flush(self) -> bytes:
        out: bytes = self._decoder.flush()
        self.produced += len(out)
        return out


def _stage(encoding: str) -> _Inflate | _Foreign | None:
    if encoding == "gzip":
        return _Inflate(zlib.MAX_WBITS | 16, deflate=False)
    if encoding == "deflate":
        return _Inflate(zlib.MAX_WBITS, deflate=True)
    if encoding == "identity":
        return None
    foreign = httpx_decoder(encoding)
    return None if foreign is None else _Foreign(foreign)


class CappedDecoder:
    """httpx's content decoding (``decode``/``flush``) that stops past ``limit`` decoded bytes.

    Encodings httpx would not decode are passed through as httpx does. Each stage of a
    multi-encoded body is bounded by the same limit. :meth:`pieces` and :meth:`tail` give the
    output in pieces of at most ~1 MiB; ``decode`` and ``flush`` (httpx's interface, used
    for streams) join them.
    """

    __slots__ = ("_left", "_limit", "_refused", "_request", "_stages")

    def __init__(self, response: httpx.Response, limit: int) -> None:
        stages = []
        for value in response.headers.get_list("content-encoding", split_commas=True):
            stage = _stage(value.strip().lower())
            if stage is not None:
                stages.append(stage)
        stages.reverse()  # the last encoding applied is undone first
        self._stages = stages
        self._limit = limit
        self._left = limit
        self._request = response.request
        self._refused: BodyTooLarge | None = None

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(request=self._request, limit=self._limit)

    def _through(self, data: bytes, first: int) -> Iterator[bytes]:
        """``data`` decoded by the stages from ``first`` on, in pieces, each stage bounded."""
        if first == len(self._stages):
            fits = self._left
            self._left -= len(data)
            if self._left < 0:
                if fits:  # the part that fits, then the refusal
                    yield data[:fits]
                raise self._too_large()
            yield data
            return
        stage = self._stages[first]
        for piece in stage.pieces(data, self._limit):
            # the piece goes on first: the last step hands out what fits of it, then refuses
            yield from self._through(piece, first + 1)
            if stage.produced > self._limit:
                raise self._too_large()

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """``data`` (raw bytes) decoded, in pieces; raises once past the limit."""
        if data:
            yield from self._through(data, 0)

    def tail(self) -> Iterator[bytes]:
        """What the stages hold back at the end of the body, decoded, in pieces."""
        for index, stage in enumerate(self._stages):
            held = stage.flush()
            if held:
                yield from self._through(held, index + 1)
            if stage.produced > self._limit:
                raise self._too_large()

    def decode(self, data: bytes) -> bytes:
        """``data`` decoded; past the limit, what fits is handed out first and the refusal
        raised at the next call, ``flush`` at the latest (a stream's caller gets the same
        ``limit`` bytes on every terminal, then the error)."""
        refused = self._refused
        if refused is not None:
            raise refused
        out: list[bytes] = []
        try:
            out.extend(self.pieces(data))
        except BodyTooLarge as exc:
            if not out:
                raise
            self._refused = exc
        return b"".join(out)

    def flush(self) -> bytes:
        refused = self._refused
        if refused is not None:
            raise refused
        return b"".join(self.tail())


async def decoded(response: httpx.Response, decoder: CappedDecoder) -> AsyncGenerator[bytes, None]:
    """``response``'s raw body (not read yet) through ``decoder``, in pieces, its tail last."""
    async for chunk in response.aiter_raw():
        for piece in decoder.pieces(chunk):
            yield piece
    for piece in decoder.tail():
        yield piece


async def counted(
    chunks: AsyncIterable[bytes], limit: int, request: httpx.Request
) -> AsyncIterator[bytes]:
    """``chunks`` as they come; raises :class:`BodyTooLarge` once more than ``limit`` bytes came,
    after the part of the chunk that fits (every terminal hands out the same ``limit`` bytes,
    however its backend cuts the body into chunks)."""
    left = limit
    async for chunk in chunks:
        if len(chunk) > left:
            if left:
                yield chunk[:left]
            raise BodyTooLarge(request=request, limit=limit)
        left -= len(chunk)
        yield chunk


async def read_limited(response: httpx.Response, limit: int) -> None:
    """Read ``response``'s body, decoded, as ``aread()`` does, stopping past ``limit`` bytes.

    Raises:
        BodyTooLarge: the decoded body passed ``limit`` bytes (the response is closed).
    """
    if response.is_stream_consumed:  # read already (a response built with its content)
        if len(response.content) > limit:
            raise BodyTooLarge(request=response.request, limit=limit)
        return
    if declared_too_large(response, limit):
        raise BodyTooLarge(request=response.request, limit=limit)
    pieces = decoded(response, CappedDecoder(response, limit))
    keep_decoded(response, b"".join([piece async for piece in pieces]))
