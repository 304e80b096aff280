"""SSEParser follows the WHATWG event-stream rules; iter_sse turns a body into Results."""

from __future__ import annotations

import asyncio
import gzip
import math
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from httprail import (
    ConfigError,
    DecodeError,
    Failure,
    ProtocolError,
    ReadError,
    RequestError,
    RequestTimeoutError,
    Result,
    Success,
    TransportError,
)
from httprail.generators import SSEEvent, SSEParser, iter_sse

BOM = b"\xef\xbb\xbf"


def parse(*chunks: bytes, max_event_bytes: int = 1_048_576) -> list[SSEEvent]:
    """Every event of a stream fed as ``chunks``, then closed."""
    parser = SSEParser(max_event_bytes)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk).unwrap())
    events.extend(parser.close())
    return events


def datas(events: Sequence[SSEEvent]) -> list[str]:
    return [event.data for event in events]


# -- fields and dispatch ----------------------------------------------------------------------


def test_one_event_defaults_to_message() -> None:
    assert parse(b"data: hello\n\n") == [SSEEvent(event="message", data="hello")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert datas(parse(b"data: first\ndata: second\ndata:\ndata: fourth\n\n")) == [
        "first\nsecond\n\nfourth"
    ]


def test_comments_are_ignored_and_a_comment_only_block_dispatches_nothing() -> None:
    stream = b": keep-alive\n\n: note\ndata: x\n: between\ndata: y\n\n"
    assert datas(parse(stream)) == ["x\ny"]


def test_event_names_the_event_and_is_forgotten_after_dispatch() -> None:
    events = parse(b"event: add\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n")
    assert [(e.event, e.data) for e in events] == [("add", "1"), ("message", "2"), ("message", "3")]


def test_only_one_space_after_the_colon_is_removed() -> None:
    assert datas(parse(b"data:no space\n\ndata:  two spaces\n\ndata:\tTab\n\n")) == [
        "no space",
        " two spaces",
        "\tTab",
    ]


def test_a_field_without_colon_has_an_empty_value() -> None:
    # "data" alone appends an empty line: the event is dispatched with empty data.
    assert datas(parse(b"data\n\ndata\ndata\n\n")) == ["", "\n"]


def test_a_block_without_data_dispatches_nothing_and_forgets_its_name() -> None:
    events = parse(b"event: ping\n\nid: 1\n\nretry: 5\n\ndata: after\n\n")
    assert events == [SSEEvent(event="message", data="after", id="1", retry=None)]


def test_unknown_fields_and_a_colon_in_the_value_are_handled() -> None:
    events = parse(b"foo: bar\nDATA: upper-case is another field\ndata: a: b\n\n")
    assert datas(events) == ["a: b"]


def test_the_last_event_id_carries_over_until_changed_or_reset() -> None:
    parser = SSEParser()
    stream = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\nid\ndata: d\n\n"
    events = parser.feed(stream).unwrap()
    assert [(e.data, e.id) for e in events] == [("a", "1"), ("b", "1"), ("c", "2"), ("d", "")]
    assert parser.last_event_id == ""


def test_an_id_containing_nul_is_ignored() -> None:
    events = parse(b"id: 7\ndata: a\n\nid: bad\x00id\ndata: b\n\n")
    assert [e.id for e in events] == ["7", "7"]


def test_events_before_any_id_have_none() -> None:
    assert parse(b"data: x\n\n")[0].id is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"retry: 1500", 1500),
        (b"retry:0", 0),
        (b"retry: 15x0", None),
        (b"retry: -1", None),
        (b"retry: 1.5", None),
        (b"retry:", None),
        (b"retry:  10", None),  # the second space is part of the value
        ("retry: \u0661\u0662".encode(), None),  # Arabic-Indic digits are not ASCII digits
    ],
)
def test_retry_counts_only_when_all_ascii_digits(line: bytes, expected: int | None) -> None:
    parser = SSEParser()
    events = parser.feed(line + b"\ndata: x\n\ndata: y\n\n").unwrap()
    assert events[0].retry == expected
    assert events[1].retry is None  # retry belongs to the block that set it
    assert parser.retry == expected


def test_the_parser_keeps_the_latest_valid_retry() -> None:
    parser = SSEParser()
    parser.feed(b"retry: 100\n\nretry: junk\n\n").unwrap()
    assert parser.retry == 100


# -- line ends, BOM, chunking -----------------------------------------------------------------


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_every_line_end_works(end: bytes) -> None:
    stream = end.join([b"event: e", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert [(e.event, e.data) for e in parse(stream)] == [("e", "a\nb"), ("message", "c")]


def test_mixed_line_ends_in_one_stream() -> None:
    assert datas(parse(b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r")) == ["a\nb\nc", "d"]


def test_cr_ending_a_chunk_and_lf_starting_the_next_are_one_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r").unwrap() == []
    # Were the LF another line end, it would be an empty line and dispatch "a" alone.
    assert parser.feed(b"\ndata: b\r\n\r\n").unwrap() == [SSEEvent(data="a\nb")]


def test_cr_at_a_chunk_end_survives_an_empty_chunk() -> None:
    assert datas(parse(b"data: a\r", b"", b"\ndata: b\r", b"\n\r", b"\n")) == ["a\nb"]


def test_cr_at_a_chunk_end_then_cr_is_an_empty_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r").unwrap() == []
    assert datas(parser.feed(b"\r").unwrap()) == ["a"]


def test_an_lf_after_a_cr_is_skipped_only_right_after_it() -> None:
    assert datas(parse(b"data: a\r", b"data: b\n", b"\n")) == ["a\nb"]


def test_a_leading_bom_is_skipped() -> None:
    assert parse(BOM + b"data: x\n\n") == [SSEEvent(data="x")]


def test_a_bom_split_across_chunks_is_skipped() -> None:
    assert datas(parse(BOM[:1], BOM[1:2], BOM[2:] + b"data: x\n\n")) == ["x"]


def test_only_the_first_bom_is_skipped() -> None:
    # A BOM later in the stream is part of the field name, which is then unknown.
    assert datas(parse(BOM + b"data: a\n\n" + BOM + b"data: b\n\n")) == ["a"]
    assert datas(parse(BOM + BOM + b"data: a\n\n")) == []


def test_a_stream_fed_one_byte_at_a_time() -> None:
    stream = "event: note\r\ndata: héllo €\r\nid: 9\r\n\r\ndata: 🙂\n\n".encode()
    events = parse(*(stream[i : i + 1] for i in range(len(stream))))
    assert events == [
        SSEEvent(event="note", data="héllo €", id="9"),
        SSEEvent(event="message", data="🙂", id="9"),
    ]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert datas(parse(b"data: a\xffb\n\n")) == ["a\ufffdb"]


def test_events_come_out_as_soon_as_their_empty_line_arrives() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: one\n").unwrap() == []
    assert datas(parser.feed(b"\ndata: tw").unwrap()) == ["one"]
    assert datas(parser.feed(b"o\n\n").unwrap()) == ["two"]


# -- end of stream ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tail", [b"data: never\n", b"data: never", b"data: never\r", b"event: x\ndata: y"]
)
def test_an_unterminated_event_at_eof_is_discarded(tail: bytes) -> None:
    parser = SSEParser()
    assert datas(parser.feed(b"data: kept\n\n" + tail).unwrap()) == ["kept"]
    assert parser.close() == []


def test_after_close_the_parser_reads_a_new_stream_and_keeps_the_last_id() -> None:
    parser = SSEParser()
    parser.feed(b"id: 4\ndata: a\n\ndata: half").unwrap()
    parser.close()
    # The half line is gone, a BOM is allowed again, the last event id survives.
    assert parser.feed(BOM + b"data: b\n\n").unwrap() == [SSEEvent(data="b", id="4")]


# -- the size cap -----------------------------------------------------------------------------


def test_a_line_at_the_cap_is_fine() -> None:
    assert datas(parse(b"data: 1234\n\n", max_event_bytes=10)) == ["1234"]


def test_a_line_over_the_cap_is_a_decode_error_naming_the_cap() -> None:
    parser = SSEParser(max_event_bytes=10)
    outcome = parser.feed(b"data: 12345\n\n")
    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert isinstance(error, DecodeError)
    assert "10-byte cap" in str(error)
    assert "max_event_bytes" in str(error)
    assert "a line" in str(error)


def test_a_comment_line_over_the_cap_fails_too() -> None:
    assert isinstance(SSEParser(max_event_bytes=8).feed(b": " + b"x" * 20 + b"\n"), Failure)


def test_an_event_over_the_cap_fails_even_when_each_line_fits() -> None:
    parser = SSEParser(max_event_bytes=20)
    outcome = parser.feed(b"data: 123456\ndata: 123456\ndata: 123456\n\n")
    assert "an event" in str(outcome.failure())


def test_the_event_budget_restarts_after_each_dispatch() -> None:
    stream = b"data: 123456\n\n" * 5
    assert len(parse(stream, max_event_bytes=12)) == 5


def test_an_unterminated_line_over_the_cap_fails_before_it_ends() -> None:
    parser = SSEParser(max_event_bytes=16)
    assert parser.feed(b"data: " + b"x" * 10).unwrap() == []
    assert isinstance(parser.feed(b"x" * 10), Failure)  # no line end yet, but already too big


def test_a_leading_bom_does_not_count_against_the_cap() -> None:
    parser = SSEParser(max_event_bytes=8)
    assert parser.feed(BOM + b"data: 12").unwrap() == []
    assert datas(parser.feed(b"\n\n").unwrap()) == ["12"]


def test_a_failure_is_sticky_until_close() -> None:
    parser = SSEParser(max_event_bytes=8)
    first = parser.feed(b"data: too long\n\n").failure()
    assert parser.feed(b"data: ok\n\n").failure() is first
    parser.close()
    assert datas(parser.feed(b"data: ok\n\n").unwrap()) == ["ok"]


def test_feed_events_keeps_the_events_before_a_failure_in_the_same_chunk() -> None:
    chunk = b"data: a\n\ndata: b\n\ndata: far too long\n\n"
    parser = SSEParser(max_event_bytes=8)
    events, error = parser.feed_events(chunk)
    assert datas(events) == ["a", "b"]
    assert isinstance(error, DecodeError)
    assert isinstance(SSEParser(max_event_bytes=8).feed(chunk), Failure)


def test_bytes_like_chunks_are_accepted_and_text_is_a_failure() -> None:
    parser = SSEParser()
    assert parser.feed(bytearray(b"data: a\n")).unwrap() == []  # type: ignore[arg-type]
    assert datas(parser.feed(memoryview(b"\n")).unwrap()) == ["a"]  # type: ignore[arg-type]
    outcome = parser.feed("data: text\n\n")  # type: ignore[arg-type]
    assert "takes bytes, got str" in str(outcome.failure())
    assert datas(parser.feed(b"data: b\n\n").unwrap()) == ["b"]  # not sticky: nothing was read


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10", None])
def test_a_bad_cap_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_event_bytes"):
        SSEParser(bad)  # type: ignore[arg-type]


# -- property: chunking never changes the events ------------------------------------------------

_field_lines = st.one_of(
    st.sampled_from([b"data", b"data:", b"event:", b"id", b"retry: 10", b"retry: x", b": c"]),
    st.builds(
        lambda name, value: name + value,
        st.sampled_from([b"data: ", b"data:", b"event: ", b"id: ", b"retry:", b"x-", b":"]),
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
            max_size=8,
        ).map(lambda s: s.encode()),
    ),
    st.just(b""),  # an empty line: dispatch
    st.just(BOM),
)
_streams = st.builds(
    lambda bom, lines, ends: (
        (BOM if bom else b"") + b"".join(line + ends[i % len(ends)] for i, line in enumerate(lines))
    ),
    st.booleans(),
    st.lists(_field_lines, max_size=30),
    st.lists(st.sampled_from([b"\n", b"\r", b"\r\n"]), min_size=1, max_size=5),
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _run(chunks: list[bytes], cap: int) -> tuple[list[SSEEvent], bool, str | None, int | None]:
    parser = SSEParser(cap)
    events: list[SSEEvent] = []
    failed = False
    for chunk in chunks:
        got, error = parser.feed_events(chunk)
        events.extend(got)
        if error is not None:
            failed = True
            break
    else:
        events.extend(parser.close())
    return events, failed, parser.last_event_id, parser.retry


@settings(max_examples=300, deadline=None)
@given(
    stream=st.one_of(_streams, st.binary(max_size=200)),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    cap=st.sampled_from([1_048_576, 24]),
)
def test_any_split_into_chunks_gives_the_same_events(
    stream: bytes, cuts: list[int], cap: int
) -> None:
    whole = _run([stream], cap)
    split = _run(_split(stream, cuts), cap)
    assert split[:2] == whole[:2]
    if not whole[1]:
        assert split[2:] == whole[2:]


@settings(max_examples=100, deadline=None)
@given(stream=_streams)
def test_byte_by_byte_equals_whole(stream: bytes) -> None:
    assert _run([stream[i : i + 1] for i in range(len(stream))], 1_048_576) == _run(
        [stream], 1_048_576
    )


# -- iter_sse over an httpx.Response ------------------------------------------------------------


class ScriptedStream(httpx.AsyncByteStream):
    """A body that yields ``chunks`` and then raises ``error`` (if any); records closing."""

    def __init__(
        self,
        chunks: Sequence[bytes],
        error: BaseException | None = None,
        close_error: Exception | None = None,
    ) -> None:
        self.chunks = chunks
        self.error = error
        self.close_error = close_error
        self.closed = False
        self.served = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.served += 1
            yield chunk
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True
        if self.close_error is not None:
            raise self.close_error


REQUEST = httpx.Request("POST", "https://api.test/v1/chat")


def streamed(body: ScriptedStream, *, request: httpx.Request | None = REQUEST) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=body, request=request
    )


async def collect(response: httpx.Response, **kwargs: int) -> list[Result[SSEEvent, RequestError]]:
    return [item async for item in iter_sse(response, **kwargs)]


async def test_iter_sse_yields_each_event_and_closes_the_response() -> None:
    body = ScriptedStream([b"data: a\n", b"\nevent: e\ndata: b\n\n", b"data: partial"])
    response = streamed(body)
    items = await collect(response)
    assert items == [Success(SSEEvent(data="a")), Success(SSEEvent(event="e", data="b"))]
    assert body.closed
    assert response.is_closed


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (httpx.ReadError("connection reset"), ReadError),
        (httpx.RemoteProtocolError("incomplete chunked read"), ProtocolError),
        (httpx.ReadTimeout("timed out"), RequestTimeoutError),
    ],
)
async def test_a_broken_body_ends_with_exactly_one_mapped_failure(
    raised: Exception, kind: type[RequestError]
) -> None:
    body = ScriptedStream([b"data: one\n\n", b"data: two\n\ndata: cut"], error=raised)
    response = streamed(body)
    items = await collect(response)
    assert items[:2] == [Success(SSEEvent(data="one")), Success(SSEEvent(data="two"))]
    assert len(items) == 3
    failure = items[2]
    assert isinstance(failure, Failure)
    error = failure.failure()
    assert type(error) is kind
    assert error.request is REQUEST
    assert error.__cause__ is raised
    assert response.is_closed


async def test_an_event_over_the_cap_yields_the_earlier_events_then_one_decode_error() -> None:
    body = ScriptedStream([b"data: ok\n\ndata: " + b"x" * 100 + b"\n\n", b"data: never\n\n"])
    response = streamed(body)
    items = await collect(response, max_event_bytes=32)
    assert items[0] == Success(SSEEvent(data="ok"))
    assert len(items) == 2
    error = items[1].failure()
    assert isinstance(error, DecodeError)
    assert error.request is REQUEST
    assert "32-byte cap" in str(error)
    assert body.served == 1  # reading stopped at the failure
    assert response.is_closed


async def test_stopping_early_closes_the_response() -> None:
    body = ScriptedStream([b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"])
    response = streamed(body)
    events = iter_sse(response)
    first = await anext(events)
    assert first == Success(SSEEvent(data="1"))
    await events.aclose()
    assert response.is_closed
    assert body.closed


async def test_cancellation_while_reading_propagates_and_closes_the_response() -> None:
    body = ScriptedStream([b"data: 1\n\n"], error=asyncio.CancelledError())
    response = streamed(body)
    events = iter_sse(response)
    assert await anext(events) == Success(SSEEvent(data="1"))
    with pytest.raises(asyncio.CancelledError):
        await anext(events)
    assert response.is_closed
    assert body.closed


async def test_a_failure_to_close_after_stopping_early_is_not_raised() -> None:
    body = ScriptedStream([b"data: 1\n\n", b"data: 2\n\n"], close_error=httpx.CloseError("x"))
    response = streamed(body)
    events = iter_sse(response)
    assert await anext(events) == Success(SSEEvent(data="1"))
    await events.aclose()
    assert body.closed
    assert response.is_closed


async def test_a_failure_to_close_at_the_end_of_the_body_is_reported_last() -> None:
    # httpx closes the stream when the body ends and raises what closing raised.
    body = ScriptedStream([b"data: 1\n\n"], close_error=httpx.CloseError("close failed"))
    items = await collect(streamed(body))
    assert items[0] == Success(SSEEvent(data="1"))
    assert len(items) == 2
    assert type(items[1].failure()) is TransportError


async def test_a_response_without_request_still_reports_failures() -> None:
    response = streamed(ScriptedStream([b"data: 1\n"], error=httpx.ReadError("x")), request=None)
    items = await collect(response)
    error = items[-1].failure()
    assert isinstance(error, ReadError)
    assert error.request is None


async def test_content_encoding_is_undone_before_parsing() -> None:
    payload = gzip.compress(b"data: zipped\n\n")
    response = httpx.Response(
        200,
        headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
        stream=ScriptedStream([payload[:5], payload[5:]]),
        request=REQUEST,
    )
    assert await collect(response) == [Success(SSEEvent(data="zipped"))]


def test_a_bad_cap_raises_when_iter_sse_is_called() -> None:
    response = streamed(ScriptedStream([]))
    with pytest.raises(ConfigError, match="max_event_bytes"):
        iter_sse(response, max_event_bytes=0)


class TickingClock:
    """A clock that moves ``step`` seconds each time it is read (one read per chunk)."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def test_an_event_trickling_in_past_max_event_seconds_is_a_read_timeout() -> None:
    """One byte per second of an event that never ends: each byte would reset a read timeout;
    the event's own bound ends it, after the events that came whole."""
    trickle = [bytes([b]) for b in b'data: {"choices": [{"delta": {"content": "never ends'] * 3
    body = ScriptedStream([b"data: whole\n\n", *trickle])
    items = [
        item
        async for item in iter_sse(streamed(body), max_event_seconds=5, clock=TickingClock(1.0))
    ]
    assert items[0] == Success(SSEEvent(data="whole"))
    error = items[-1].failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "read"
    assert "unfinished after 5 s" in str(error)
    assert len(items) == 2
    assert body.served < 10  # stopped reading once the bound passed
    assert body.closed


async def test_keep_alive_comments_and_quick_events_never_reach_the_bound() -> None:
    """Comment lines finish at once (keep-alives between events), and each event that ends
    starts the count again: however long the stream, no timeout."""
    body = ScriptedStream([b": keep-alive\n", b"data: a", b"\n\n"] * 50)
    items = [
        item
        async for item in iter_sse(streamed(body), max_event_seconds=5, clock=TickingClock(1.0))
    ]
    assert items == [Success(SSEEvent(data="a"))] * 50


@pytest.mark.parametrize("seconds", [0, -1, math.inf, math.nan, "5", True])
def test_a_bad_event_time_bound_raises_when_iter_sse_is_called(seconds: object) -> None:
    with pytest.raises(ConfigError, match="max_event_seconds"):
        iter_sse(streamed(ScriptedStream([])), max_event_seconds=seconds)  # type: ignore[arg-type]
