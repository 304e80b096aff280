"""The default path's httpx objects, built directly, are the ones httpx's constructors build."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from httprail import _fast

names = st.sampled_from(["Accept", "accept", "X-A", "x-a", "Content-Type", "Set-Cookie", "Host"])
values = st.binary(max_size=12).filter(lambda v: b"\r" not in v and b"\n" not in v)
raw_headers = st.lists(st.tuples(names.map(str.encode), values), max_size=6)


def test_the_installed_httpx_gets_the_fast_constructors() -> None:
    assert _fast.FAST
    assert _fast.bodiless_request is _fast._fast_request
    assert _fast.response is _fast._fast_response
    assert _fast.read_plain is _fast._fast_read_plain
    assert _fast.header_items is _fast._fast_header_items


@given(raw=raw_headers)
def test_header_items_are_the_raw_headers_with_their_lowered_names(
    raw: list[tuple[bytes, bytes]],
) -> None:
    headers = httpx.Headers(raw)
    items = _fast._fast_header_items(headers)
    assert items == _fast._slow_header_items(headers)
    assert [(name, value) for name, _, value in items] == headers.raw


@pytest.mark.parametrize("method", ["GET", "get", "HEAD", "OPTIONS", "DELETE"])
@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("http://example.test/a", []),
        ("https://user:pw@example.test:8443/p?q=1#f", [("Accept", "*/*")]),
        ("http://[::1]:8080/v", [("X-A", "1"), ("x-a", "2")]),
        ("http://example.test/ä b", [("Host", "other.test"), ("User-Agent", "mine")]),
    ],
)
def test_a_bodiless_request_is_the_one_httpx_builds(
    method: str, url: str, headers: list[tuple[str, str]]
) -> None:
    target, given_headers = httpx.URL(url), httpx.Headers(headers)
    fast = _fast._fast_request(method, target, given_headers)
    assert _fast._state(fast) == _fast._state(_fast._slow_request(method, target, given_headers))
    reference = httpx.Request(method, target, headers=given_headers)
    assert (fast.method, fast.url, fast.headers.raw) == (
        reference.method,
        reference.url,
        reference.headers.raw,
    )
    assert fast.content == reference.content == b""
    fast.headers["Authorization"] = "Bearer x"  # each request has headers of its own
    assert "authorization" not in given_headers


@given(raw=raw_headers, status=st.sampled_from([200, 204, 301, 404, 503]))
def test_a_response_is_the_one_httpx_builds(raw: list[tuple[bytes, bytes]], status: int) -> None:
    request = httpx.Request("GET", "http://example.test/")
    stream = httpx.ByteStream(b'{"a": 1}')
    fast = _fast._fast_response(status, raw, stream, request, {"k": 1})
    slow = _fast._slow_response(status, raw, stream, request, {"k": 1})
    assert _fast._state(fast) == _fast._state(slow)
    assert fast.headers.multi_items() == slow.headers.multi_items()
    assert fast.headers.encoding == slow.headers.encoding


async def test_a_fast_response_reads_decodes_and_closes_as_httpx_does() -> None:
    request = httpx.Request("GET", "http://example.test/")
    raw = [(b"Content-Type", b"application/json; charset=utf-8"), (b"Content-Length", b"8")]
    response = _fast.response(200, raw, httpx.ByteStream(b'{"a": 1}'), request, {})
    assert await response.aread() == b'{"a": 1}'
    assert response.json() == {"a": 1}
    assert response.charset_encoding == "utf-8"
    assert response.request is request
    assert response.is_closed
    assert response.is_stream_consumed


@given(body=st.binary(max_size=64), raw=raw_headers)
def test_a_plain_body_is_left_as_read_leaves_it(
    body: bytes, raw: list[tuple[bytes, bytes]]
) -> None:
    request = httpx.Request("GET", "http://example.test/")
    plain = [(name, value) for name, value in raw if name.lower() != b"content-encoding"]
    fast = _fast._fast_response(200, plain, httpx.ByteStream(b""), request, {})
    slow = _fast._fast_response(200, plain, httpx.ByteStream(b""), request, {})
    _fast._fast_read_plain(fast, body)
    _fast._slow_read_plain(slow, body)
    assert _fast._state(fast) == _fast._state(slow)
    assert (fast.content, fast.num_bytes_downloaded) == (body, len(body))
    assert list(fast.iter_bytes()) == list(slow.iter_bytes())
    assert fast.text == slow.text


def test_a_future_httpx_with_other_attributes_falls_back_to_its_constructors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing_history(*args: object) -> httpx.Response:
        response = _fast_response(*args)  # type: ignore[arg-type]
        del response.history
        return response

    _fast_response = _fast._fast_response
    monkeypatch.setattr(_fast, "_fast_response", missing_history)
    assert _fast._agrees() is False

    def boom(*_args: object) -> httpx.Request:
        raise AttributeError("no _list here")

    _fast_request = _fast._fast_request
    monkeypatch.setattr(_fast, "_fast_response", _fast_response)
    monkeypatch.setattr(_fast, "_fast_request", boom)
    assert _fast._agrees() is False

    def unclosed(response: httpx.Response, body: bytes) -> None:
        _fast_read_plain(response, body)
        response.is_closed = False

    _fast_read_plain = _fast._fast_read_plain
    monkeypatch.setattr(_fast, "_fast_request", _fast_request)
    monkeypatch.setattr(_fast, "_fast_read_plain", unclosed)
    assert _fast._agrees() is False
    monkeypatch.setattr(_fast, "_fast_read_plain", _fast_read_plain)

    def names_as_given(headers: httpx.Headers) -> list[tuple[bytes, bytes, bytes]]:
        return [(k, k, v) for k, _, v in headers._list]  # names not lowered

    _fast_header_items = _fast._fast_header_items
    monkeypatch.setattr(_fast, "_fast_header_items", names_as_given)
    assert _fast._agrees() is False
    monkeypatch.setattr(_fast, "_fast_header_items", _fast_header_items)
    assert _fast._agrees() is True  # every piece back: they agree again


def test_a_success_built_by_its_slot_is_the_one_its_constructor_builds() -> None:
    """``success(value)`` is ``Success(value)``: equal, same type, same value, matched alike."""
    from returns.result import Success

    from httprail import _result

    assert _result.success is _result._success_by_slot
    value = httpx.Response(200)
    made = _result.success(value)
    assert type(made) is Success
    assert made == Success(value)
    assert made.unwrap() is value
    match made:
        case Success(inner):
            assert inner is value
        case _:  # pragma: no cover - the assertion above
            raise AssertionError(made)


def test_a_returns_that_keeps_its_value_elsewhere_gets_its_constructor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from httprail import _result

    monkeypatch.setattr(_result, "_SET_INNER", lambda made, value: None)
    assert _result._agrees() is False


@given(raw=raw_headers, status=st.sampled_from([200, 204, 404]))
def test_a_response_from_header_items_is_the_one_httpx_builds(
    raw: list[tuple[bytes, bytes]], status: int
) -> None:
    """``response_of`` (from kept header triples) builds what ``response`` builds from pairs."""
    request = httpx.Request("GET", "http://example.test/")
    stream = httpx.ByteStream(b"{}")
    items = [(name, name.lower(), value) for name, value in raw]
    fast = _fast._fast_response_of(status, items, stream, request, {"k": 1})
    slow = _fast._slow_response_of(status, items, stream, request, {"k": 1})
    assert _fast._state(fast) == _fast._state(slow)
    assert _fast._state(fast) == _fast._state(
        _fast._slow_response(status, raw, stream, request, {"k": 1})
    )
    fast.headers["X-New"] = "1"  # each response has headers of its own
    assert len(items) == len(raw)


@pytest.mark.parametrize("name", ["_fast_again", "_fast_response_of"])
def test_a_future_httpx_where_a_kept_items_constructor_differs_gets_httpx_constructors(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Should ``request_again`` or ``response_of`` set other attributes, httpx's are used."""
    original = getattr(_fast, name)

    def differing(*args: object) -> object:
        made = original(*args)
        made.extensions = {"other": 1}
        return made

    monkeypatch.setattr(_fast, name, differing)
    assert _fast._agrees() is False
