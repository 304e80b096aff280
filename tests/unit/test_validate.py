"""The smuggling checks: what may go on the wire in a method, a header or a URL."""

from __future__ import annotations

import httpx
import pytest

from httprail._validate import (
    SendCheck,
    as_origin,
    header_problem,
    headers_problem,
    method_problem,
    url_problem,
)

SECRET = "sk-live-0123456789"


@pytest.mark.parametrize("char", ["\r", "\n", "\x00", "\x01", "\x08", "\x0b", "\x1f", "\x7f"])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_a_header_value_with_a_control_character_is_refused_without_quoting_it(
    char: str, as_bytes: bool
) -> None:
    """CR, LF, NUL and every other control character but HTAB in a value are named with their
    header and position; the value is not (reqwest's own refusal quoted it)."""
    value = f"{SECRET}{char}Content-Length: 0"
    name = "Authorization"
    problem = (
        header_problem(name.encode(), value.encode()) if as_bytes else header_problem(name, value)
    )
    assert problem is not None
    assert "'Authorization'" in problem
    assert f"position {len(SECRET)}" in problem
    assert SECRET not in problem


@pytest.mark.parametrize(
    "value", ["a\tb", "caf\xe9", "caf\u00e9".encode(), b"\xe2\x82\xac", " x ~"]
)
def test_a_header_value_with_a_tab_or_other_text_passes(value: str | bytes) -> None:
    """HTAB, spaces, latin-1 and UTF-8 text are field content (RFC 9110 5.5): sent as given."""
    assert header_problem("X-Note", value) is None


@pytest.mark.parametrize(
    ("char", "shown"), [("\x01", "0x01"), ("\x7f", "0x7F"), ("\x1b", "0x1B"), ("\r", "CR")]
)
def test_the_refused_control_character_is_named(char: str, shown: str) -> None:
    assert (
        header_problem("X-A", f"ab{char}")
        == f"the value of header 'X-A' contains {shown} at position 2"
    )


@pytest.mark.parametrize(
    ("name", "shown"),
    [("X\r\nY", "CR"), (b"X\nY", "LF"), ("X\x00", "NUL"), ("X A", "a space"), ("X:A", "a colon")],
)
def test_a_header_name_that_is_not_a_token_is_refused(name: str | bytes, shown: str) -> None:
    """A header name must be an HTTP token; the message names the bad character."""
    problem = header_problem(name, "v")
    assert problem is not None
    assert shown in problem


def test_an_empty_header_name_and_unusual_characters_are_described() -> None:
    """An empty name is refused; other characters are shown by code point, never raw."""
    assert header_problem("", "v") == "the header name is empty"
    assert header_problem("X\x7f", "v") == "the header name 'X...' contains 0x7F at position 1"
    assert header_problem("Xé", "v") == "the header name 'X...' contains U+00E9 at position 1"
    long = "A" * 50 + "\r"
    problem = header_problem(long, "v")
    assert problem is not None
    assert repr("A" * 40 + "...") in problem


def test_good_headers_methods_and_urls_pass() -> None:
    """Ordinary values, non-ASCII values and extension methods can be sent."""
    assert header_problem("X-Message", "café") is None
    assert header_problem(b"X-Message", b"caf\xe9") is None
    assert headers_problem([("A", "1"), (b"B", b"2")]) is None
    assert method_problem("GET") is None
    assert method_problem("PROPFIND") is None
    assert url_problem("http://example.test/a%0d%0a?q=1") is None
    assert url_problem(httpx.URL("http://example.test/")) is None


@pytest.mark.parametrize("method", ["GET\r\nX", "G T", b"GET\n", ""])
def test_a_method_that_is_not_a_token_is_refused(method: str | bytes) -> None:
    """CR, LF, spaces or nothing at all in a method: refused."""
    assert method_problem(method) is not None


@pytest.mark.parametrize("char", ["\r", "\n", "\x00", "\x1b"])
def test_a_url_string_with_a_control_character_is_refused(char: str) -> None:
    """A URL string holds no control character."""
    problem = url_problem(f"http://example.test/a{char}b")
    assert problem is not None
    assert "position 21" in problem


def test_headers_problem_reports_the_first_bad_pair() -> None:
    """The first refused header is the one reported."""
    problem = headers_problem([("A", "1"), ("B", "x\ny"), ("C\r", "z")])
    assert problem == "the value of header 'B' contains LF at position 1"


def test_send_check_checks_method_then_url_then_headers() -> None:
    """A whole request is checked: method, URL and every header."""
    ok = httpx.Request("GET", "http://example.test/", headers={"X-A": "1"})
    assert SendCheck().problem(ok) is None
    bad_method = httpx.Request("GET\r\n", "http://example.test/")
    assert SendCheck().problem(bad_method) == "the method 'GET...' contains CR at position 3"
    bad_header = httpx.Request("GET", "http://example.test/", headers={"X-A": "v\r\nB: c"})
    assert SendCheck().problem(bad_header) == "the value of header 'X-A' contains CR at position 1"


def test_send_check_remembers_what_passed_and_still_refuses_what_changed() -> None:
    """A repeated request passes from the cache; a changed header, method or URL is checked."""
    check = SendCheck()
    url = httpx.URL("http://example.test/")
    good = httpx.Request("GET", url, headers={"X-A": "1"})
    assert check.problem(good) is None
    assert check.problem(good) is None
    assert check.problem(httpx.Request("GET", url, headers={"X-A": "1"})) is None
    bad = httpx.Request("GET", url, headers={"X-A": "1\r\n"})
    assert check.problem(bad) == "the value of header 'X-A' contains CR at position 1"
    assert check.problem(httpx.Request("PROP FIND", url)) is not None
    assert check.problem(httpx.Request("PROPFIND", url)) is None
    assert check.problem(good) is None


def test_send_check_between_hosts_checks_each_header_once_and_refuses_a_changed_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests taking turns between hosts (each its own URL object and Host header) check
    each header item the first two times it is seen, then find it; each URL is checked on its
    text, made once per URL object; a bad header among known ones is still refused, every
    time."""
    from httprail import _cache, _validate

    checked: list[object] = []
    made: list[object] = []
    header_check, text_of = _validate.header_problem, _cache.url_text
    monkeypatch.setattr(
        _validate, "header_problem", lambda n, v: checked.append(n) or header_check(n, v)
    )
    monkeypatch.setattr(_validate, "url_text", lambda u: made.append(u) or text_of(u))
    monkeypatch.setattr(_cache, "_texts", {})
    monkeypatch.setattr(httpx.URL, "__str__", lambda u: made.append(str) or _URL_STR(u))
    check = SendCheck()
    urls = [httpx.URL(f"http://h{i}.test/") for i in range(3)]
    requests = [httpx.Request("GET", url, headers={"X-A": "1"}) for url in urls]
    for _ in range(4):
        for request in requests:
            assert check.problem(request) is None
    # 3 Host headers twice each, and X-A twice (its tuple is equal everywhere)
    assert len(checked) == 3 * 2 + 2
    # every URL change is checked (12), on a text made the first two times per URL (6)
    assert len([u for u in made if u is not str]) == 12
    assert made.count(str) == 3 * 2
    checked.clear()
    bad = httpx.Request("GET", urls[0], headers={"X-A": "1", "X-B": "2\n"})
    for _ in range(3):
        assert check.problem(bad) == "the value of header 'X-B' contains LF at position 1"
        assert check.problem(requests[1]) is None
    assert checked.count(b"X-B") == 3


_URL_STR = httpx.URL.__str__


def test_send_check_refuses_a_url_holding_a_control_character() -> None:
    """Defence in depth: a URL that somehow holds a control character is refused too."""
    request = httpx.Request("GET", "http://example.test/")

    class Sneaky(httpx.URL):
        def __str__(self) -> str:
            return "http://example.test/\r\n"

    request.url = Sneaky("http://example.test/")
    assert SendCheck().problem(request) == "the URL contains CR at position 20"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://api.example.com", "https://api.example.com"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
        (httpx.URL("https://a.test"), "https://a.test"),
        ("ftp://a.test", None),
        ("https://a.test/path", None),
        ("https://a.test/?q=1", None),
        ("https://a.test/#top", None),
        ("https://user:pw@a.test", None),
        ("https://", None),
        ("http://[::1", None),  # not a URL at all
        (42, None),
    ],
)
def test_as_origin_takes_only_a_bare_origin(value: object, expected: str | None) -> None:
    origin = as_origin(value)
    assert (None if origin is None else str(origin)) == expected
