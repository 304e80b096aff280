"""Capped reading: decoding counts decoded bytes, in bounded pieces, exactly as httpx decodes."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from httprail import ConfigError, DecodeError, HttpSettings, ResponseTooLargeError, _fast
from httprail.terminals import _limits
from httprail.terminals._limits import (
    BodyTooLarge,
    CappedDecoder,
    declared_too_large,
    limit_of,
    read_limited,
)

URL = "http://example.test/"
TEXT = b"the quick brown fox " * 4000  # 80,000 bytes


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


class Chunks(httpx.AsyncByteStream):
    def __init__(self, body: bytes, size: int = 1000) -> None:
        self._parts = [body[i : i + size] for i in range(0, len(body), size)]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            yield part


def streamed(body: bytes, encoding: str | None = None, **headers: str) -> httpx.Response:
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    return httpx.Response(
        200, headers=headers, stream=Chunks(body), request=httpx.Request("GET", URL)
    )


def state(response: httpx.Response) -> dict[str, Any]:
    """What a response holds, less its (distinct) stream and request objects."""
    fields = dict(_fast._state(response))
    del fields["stream"], fields["_request"]
    return fields


ENCODED = [
    ("gzip", gzip.compress(TEXT)),
    ("deflate", zlib.compress(TEXT)),
    ("deflate", raw_deflate(TEXT)),
    ("deflate, gzip", gzip.compress(zlib.compress(TEXT))),
    ("identity", TEXT),
    ("x-unknown", TEXT),
    (None, TEXT),
]


@pytest.mark.parametrize(("encoding", "body"), ENCODED)
async def test_a_body_within_the_limit_reads_as_httpx_reads_it(
    encoding: str | None, body: bytes
) -> None:
    ours, theirs = streamed(body, encoding), streamed(body, encoding)
    await read_limited(ours, len(TEXT))
    await theirs.aread()
    assert ours.content == theirs.content == TEXT
    assert state(ours) == state(theirs)  # what aread() leaves, and no more


@pytest.mark.parametrize(("encoding", "body"), ENCODED)
async def test_one_byte_over_the_limit_raises_body_too_large_naming_it(
    encoding: str | None, body: bytes
) -> None:
    response = streamed(body, encoding)
    with pytest.raises(BodyTooLarge) as raised:
        await read_limited(response, len(TEXT) - 1)
    assert raised.value.limit == len(TEXT) - 1
    assert raised.value.request is response.request
    assert isinstance(raised.value, httpx.DecodingError)


def test_a_bomb_inflates_in_bounded_pieces_and_stops_just_past_the_limit() -> None:
    bomb = gzip.compress(bytes(50_000_000))  # ~50 KB
    response = streamed(bomb, "gzip")
    decoder = CappedDecoder(response, 3 * 1024 * 1024)
    sizes: list[int] = []
    with pytest.raises(BodyTooLarge):
        sizes.extend(len(piece) for piece in decoder.pieces(bomb))
    assert max(sizes) <= 1024 * 1024
    assert sum(sizes) == 3 * 1024 * 1024


def test_a_body_that_is_not_what_its_encoding_says_is_a_decoding_error() -> None:
    for encoding in ("gzip", "deflate"):
        decoder = CappedDecoder(streamed(b"", encoding), 1000)
        with pytest.raises(httpx.DecodingError) as raised:
            decoder.decode(b"\xff" * 20)
        assert not isinstance(raised.value, BodyTooLarge)
    wrong_check = zlib.compress(TEXT)[:-4] + b"\0\0\0\0"
    decoder = CappedDecoder(streamed(b"", "deflate"), 100_000)
    decoder.decode(wrong_check[:100])  # a valid start; the error is past the first chunk
    with pytest.raises(httpx.DecodingError):
        decoder.decode(wrong_check[100:])


class Held:
    """A decoder (as httpx's br/zstd ones) that gives all its output when flushed."""

    def __init__(self) -> None:
        self.data = b""

    def decode(self, data: bytes) -> bytes:
        self.data += data
        return b""

    def flush(self) -> bytes:
        return self.data * 2


def test_a_foreign_decoder_is_checked_after_each_call_and_its_flush_is_decoded_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_limits, "httpx_decoder", lambda encoding: Held())
    body = gzip.compress(TEXT)
    decoder = CappedDecoder(streamed(b"", "x-held, gzip"), 2 * len(TEXT))  # gzip undone first
    assert decoder.decode(body) == b""
    assert decoder.flush() == TEXT * 2
    decoder = CappedDecoder(streamed(b"", "x-held, gzip"), 2 * len(TEXT) - 1)
    decoder.decode(body)
    with pytest.raises(BodyTooLarge):
        decoder.flush()
    decoder = CappedDecoder(streamed(b"", "gzip, x-held"), len(TEXT))  # held, then gzip
    assert decoder.decode(body) == b""
    assert decoder.flush() == TEXT  # gzip decodes the first of the two members, as httpx does
    decoder = CappedDecoder(streamed(b"", "x-held"), 2 * len(body) - 1)
    decoder.decode(body)
    with pytest.raises(BodyTooLarge):
        decoder.flush()


def test_the_installed_httpx_decodes_only_gzip_and_deflate() -> None:
    assert _fast.httpx_decoder("gzip") is not None
    assert _fast.httpx_decoder("x-unknown") is None


async def test_a_stream_decodes_through_the_decoder_it_was_given() -> None:
    response = streamed(gzip.compress(TEXT), "gzip")
    _fast.use_decoder(response, CappedDecoder(response, 1000))
    with pytest.raises(BodyTooLarge):
        await response.aread()


async def test_a_response_read_already_is_only_measured() -> None:
    response = httpx.Response(200, content=TEXT, request=httpx.Request("GET", URL))
    await read_limited(response, len(TEXT))
    assert response.content == TEXT
    with pytest.raises(BodyTooLarge):
        await read_limited(response, len(TEXT) - 1)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Content-Length": "101"}, True),
        ({"Content-Length": "100"}, False),
        ({"Content-Length": "101", "Content-Encoding": "gzip"}, False),
        ({"Content-Length": "x"}, False),
        ({}, False),
    ],
)
def test_only_an_unencoded_declared_length_over_the_limit_is_refused_unread(
    headers: dict[str, str], expected: bool
) -> None:
    response = httpx.Response(200, headers=headers, stream=Chunks(b""))
    assert declared_too_large(response, 100) is expected


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [({}, 7), ({"httprail.max_body_bytes": None}, None), ({"httprail.max_body_bytes": 5}, 5)],
)
def test_the_extension_overrides_the_default_limit(
    extensions: dict[str, Any], expected: int | None
) -> None:
    assert limit_of(httpx.Request("GET", URL, extensions=extensions), 7) == expected


@pytest.mark.parametrize("value", [0, -3, 2.0, "5", True])
def test_an_extension_that_is_not_a_positive_int_or_none_is_refused_by_name(value: Any) -> None:
    request = httpx.Request("GET", URL, extensions={"httprail.max_body_bytes": value})
    with pytest.raises(ValueError, match=r"'httprail\.max_body_bytes' must be a positive int"):
        limit_of(request, 7)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("65536", 65536),
        ("64KiB", 65536),
        ("100 MiB", 100 * 1024 * 1024),
        ("1gib", 1 << 30),
        ("none", None),
        ("Unlimited", None),
    ],
)
def test_the_variable_takes_bytes_with_binary_units_or_none(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int | None
) -> None:
    monkeypatch.setenv("HTTP_MAX_BODY_BYTES", value)
    assert HttpSettings().max_body_bytes == expected


def test_the_default_limit_is_100_mib_and_none_in_code_lifts_it() -> None:
    assert HttpSettings().max_body_bytes == 100 * 1024 * 1024
    assert HttpSettings(max_body_bytes=None).max_body_bytes is None


@pytest.mark.parametrize("value", ["x", "0", "-5", "1.5", "10TB", str(2**40 + 1)])
def test_a_bad_value_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("HTTP_MAX_BODY_BYTES", value)
    with pytest.raises(ConfigError, match="HTTP_MAX_BODY_BYTES"):
        HttpSettings()


def test_a_provider_can_change_the_limit_but_not_lift_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROVIDERS__FILES__MAX_BODY_BYTES", "1GiB")
    assert HttpSettings().for_provider("files").max_body_bytes == 1 << 30
    monkeypatch.setenv("HTTP_PROVIDERS__FILES__MAX_BODY_BYTES", "none")
    with pytest.raises(ConfigError, match="cannot lift the limit"):
        HttpSettings()


def test_the_error_names_the_limit_and_the_setting_and_spares_the_upstream() -> None:
    error = ResponseTooLargeError(limit=65536, request=httpx.Request("GET", URL))
    assert isinstance(error, DecodeError)
    assert error.limit == 65536
    assert "65,536 bytes" in str(error)
    assert "HTTP_MAX_BODY_BYTES" in str(error)
    assert "httprail.max_body_bytes" in str(error)
    assert error.counts_against_upstream is False
    assert error.never_processed is False


async def test_an_error_body_that_is_a_compression_bomb_is_inflated_only_to_the_cap() -> None:
    """``read_capped`` (the body a StatusError keeps) decodes through the bounded decoder: a
    50 MB gzip bomb in a 503 costs about the cap, not a whole inflated chunk."""
    import gzip
    import tracemalloc

    from httprail.terminals import read_capped

    bomb = gzip.compress(b"\0" * 50_000_000)
    response = httpx.Response(
        503,
        headers={"Content-Encoding": "gzip"},
        stream=_Chunked([bomb[i : i + 16_384] for i in range(0, len(bomb), 16_384)]),
        request=httpx.Request("GET", "http://api.test/x"),
    )
    tracemalloc.start()
    try:
        capped = await read_capped(response, 64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert capped.content == b"\0" * (64 * 1024)
    assert capped.extensions["httprail.truncated"] is True
    assert peak < 8 * 1024 * 1024


async def test_an_error_body_read_already_is_kept_as_it_is() -> None:
    from httprail.terminals import read_capped

    response = httpx.Response(500, content=b"boom", request=httpx.Request("GET", "http://a.test"))
    capped = await read_capped(response, 3)
    assert capped.content == b"boo"
    assert capped.extensions["httprail.truncated"] is True
    whole = await read_capped(
        httpx.Response(500, content=b"boom", request=httpx.Request("GET", "http://a.test")), 10
    )
    assert (whole.content, whole.extensions["httprail.truncated"]) == (b"boom", False)


async def test_an_error_body_of_exactly_the_cap_is_kept_whole_and_not_marked_cut() -> None:
    from httprail.terminals import read_capped

    def error(body: bytes) -> httpx.Response:
        request = httpx.Request("GET", "http://a.test")
        return httpx.Response(500, stream=_Chunked([body[:2], body[2:]]), request=request)

    whole = await read_capped(error(b"boom"), 4)
    assert (whole.content, whole.extensions["httprail.truncated"]) == (b"boom", False)
    cut = await read_capped(error(b"boom!"), 4)
    assert (cut.content, cut.extensions["httprail.truncated"]) == (b"boom", True)


class _Chunked(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self):  # type: ignore[override]
        for chunk in self._chunks:
            yield chunk


@pytest.mark.parametrize("then", ["decode", "flush"])
def test_past_the_limit_what_fits_comes_out_first_and_the_refusal_never_goes_missing(
    then: str,
) -> None:
    """A stream's decoder hands out the bytes within the limit, then refuses at its next call
    (the chunk crossing the limit was lost whole: on aiohttp's big chunks, nothing at all);
    ``flush``, the last call of a stream, always raises a refusal still owed."""
    body = gzip.compress(b"z" * 100_000)
    decoder = CappedDecoder(streamed(b"", "gzip"), 1000)
    assert decoder.decode(body) == b"z" * 1000
    with pytest.raises(BodyTooLarge):
        getattr(decoder, then)(*([b""] if then == "decode" else []))
    with pytest.raises(BodyTooLarge):
        decoder.flush()
