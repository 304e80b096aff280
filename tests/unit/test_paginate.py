"""Pagination: four styles end where the service says, guards end what would not, and a
Failure is yielded once and ends the iteration."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from httprail import (
    AsyncClient,
    ConfigError,
    Failure,
    InvalidRequestError,
    PaginationError,
    RequestError,
    ResponseValidationError,
    Result,
    ServerStatusError,
    Success,
)
from httprail.services import (
    Cursor,
    LinkHeader,
    Offset,
    PageNumber,
    ServiceClient,
    collect,
    paginate,
    paginated,
)
from httprail.services._links import next_link, parse_links
from httprail.testing import MockTerminal

CANARY = "sk-canary-4471aa"


class Item(BaseModel):
    n: int


Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, seen: list[httpx.Request]) -> AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return AsyncClient("https://svc.test/api", plugins=[], terminal=MockTerminal(answer))


async def drain(pages: AsyncIterator[Result[object, RequestError]]) -> list[object]:
    return [outcome async for outcome in pages]


def numbers(total: int) -> Handler:
    """Pages of ``total`` items by ``page``/``limit``."""

    def handler(request: httpx.Request) -> httpx.Response:
        page, limit = int(request.url.params["page"]), int(request.url.params["limit"])
        start = (page - 1) * limit
        return httpx.Response(200, json=[{"n": n} for n in range(start, min(total, start + limit))])

    return handler


async def test_page_numbers_stop_on_a_short_page() -> None:
    """Pages 1, 2, 3 of size 2 over 5 items: every item once, three requests."""
    seen: list[httpx.Request] = []
    async with client_for(numbers(5), seen) as client:
        got = await collect(paginate(client, "/items", style=PageNumber(size=2), item=Item))
    assert got == Success([Item(n=n) for n in range(5)])
    assert [r.url.params["page"] for r in seen] == ["1", "2", "3"]


async def test_page_numbers_stop_on_an_empty_page_when_the_size_is_not_sent() -> None:
    """Without a size parameter only an empty page says the end."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        return httpx.Response(200, json={"data": [{"n": page}] if page <= 2 else []})

    style = PageNumber(size_param=None, items="data")
    async with client_for(handler, seen) as client:
        got = await collect(client.paginate("/items", style=style, item=Item))
    assert got.unwrap() == [Item(n=1), Item(n=2)]
    assert len(seen) == 3
    assert "limit" not in seen[0].url.params


async def test_offsets_advance_by_the_items_received_and_keep_caller_params() -> None:
    """Offset 0, 3, 6 with limit 3; the caller's own params ride along on every page."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        return httpx.Response(200, json={"results": {"items": list(range(offset, 7))[:3]}})

    style = Offset(size=3, items="results.items")
    async with client_for(handler, seen) as client:
        got = await collect(paginate(client, "/i", style=style, params={"q": "x"}))
    assert got.unwrap() == list(range(7))
    assert [(r.url.params["offset"], r.url.params["q"]) for r in seen] == [
        ("0", "x"),
        ("3", "x"),
        ("6", "x"),
    ]


def cursors(pages: dict[str | None, tuple[list[int], object]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        items, following = pages[request.url.params.get("cursor")]
        return httpx.Response(200, json={"data": items, "meta": {"next_cursor": following}})

    return handler


async def test_cursor_from_a_nested_field_until_it_is_null() -> None:
    """The cursor at ``meta.next_cursor`` is sent back as ``?cursor=`` until it is null."""
    seen: list[httpx.Request] = []
    handler = cursors({None: ([1, 2], "b"), "b": ([3], 7), "7": ([4], None)})
    async with client_for(handler, seen) as client:
        got = await collect(paginate(client, "/c", style=Cursor(next="meta.next_cursor")))
    assert got.unwrap() == [1, 2, 3, 4]
    assert [r.url.params.get("cursor") for r in seen] == [None, "b", "7"]


async def test_the_same_cursor_twice_ends_with_one_pagination_failure() -> None:
    """A service that hands out a cursor again would loop: the items, then one Failure."""
    seen: list[httpx.Request] = []
    handler = cursors({None: ([1], "a"), "a": ([2], "b"), "b": ([3], "a")})
    async with client_for(handler, seen) as client:
        got = await drain(paginate(client, "/c", style=Cursor(next="meta.next_cursor")))
    assert got[:3] == [Success(1), Success(2), Success(3)]
    assert len(got) == 4
    assert isinstance(got[3], Failure)
    assert isinstance(got[3].failure(), PaginationError)
    assert "same next cursor twice" in str(got[3].failure())
    assert len(seen) == 3


async def test_a_cursor_that_is_not_a_scalar_is_a_validation_failure() -> None:
    """A cursor object (not text or number) cannot be sent back: ResponseValidationError."""
    handler = cursors({None: ([1], {"token": CANARY})})
    async with client_for(handler, []) as client:
        got = await drain(paginate(client, "/c", style=Cursor(next="meta.next_cursor")))
    error = got[-1].failure()
    assert isinstance(error, ResponseValidationError)
    assert "meta.next_cursor (cursor_type)" in str(error)
    assert CANARY not in repr(error)


def linked(pages: dict[str, tuple[list[int], str | None]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        items, link = pages[str(request.url)]
        headers = {"Link": link} if link else {}
        return httpx.Response(200, json=items, headers=headers)

    return handler


async def test_link_header_next_is_followed_relative_and_absolute() -> None:
    """``rel="next"`` among other links, relative or absolute, is followed until absent."""
    seen: list[httpx.Request] = []
    handler = linked(
        {
            "https://svc.test/api/l": ([1], '<https://svc.test/x>; rel="prev", <l?p=2>; rel=next'),
            "https://svc.test/api/l?p=2": ([2], '</api/l?p=3>; rel="last next"; title="a, b"'),
            "https://svc.test/api/l?p=3": ([3], None),
        }
    )
    async with client_for(handler, seen) as client:
        got = await collect(paginate(client, "/l", style=LinkHeader(), item=int))
    assert got.unwrap() == [1, 2, 3]
    assert len(seen) == 3


async def test_a_next_link_to_another_origin_is_refused_with_the_credentials_kept() -> None:
    """A next link to another host is not followed (it would get the service's headers)."""
    seen: list[httpx.Request] = []
    handler = linked({"https://svc.test/api/l": ([1], "<https://evil.test/steal>; rel=next")})
    async with client_for(handler, seen) as client:
        got = await drain(
            paginate(client, "/l", style=LinkHeader(), headers={"Authorization": CANARY})
        )
    assert got[0] == Success(1)
    error = got[1].failure()
    assert isinstance(error, PaginationError)
    assert "another origin (https://evil.test)" in str(error)
    assert [r.url.host for r in seen] == ["svc.test"]


async def test_a_next_link_carrying_credentials_of_its_own_is_refused() -> None:
    """A same-origin next link with user information would have httpx send the upstream's
    choice as ``Authorization: Basic ...``: not followed, and the credentials not quoted."""
    seen: list[httpx.Request] = []
    link = "<https://user:hunter2@svc.test/api/l2>; rel=next"
    handler = linked({"https://svc.test/api/l": ([1], link)})
    async with client_for(handler, seen) as client:
        got = await drain(paginate(client, "/l", style=LinkHeader()))
    assert got[0] == Success(1)
    error = got[1].failure()
    assert isinstance(error, PaginationError)
    assert "carries credentials of its own" in str(error)
    assert "hunter2" not in str(error)
    assert [r.url.path for r in seen] == ["/api/l"]
    assert all("authorization" not in r.headers for r in seen)


def test_a_next_link_that_is_not_a_url_is_a_pagination_failure() -> None:
    """An unparsable next target is a Failure, not an exception."""
    found = next_link(["<http://[::1:bad>; rel=next"], httpx.URL("https://svc.test/"))
    assert isinstance(found, Failure)
    assert "not a URL" in str(found.failure())


async def test_a_next_link_back_to_a_visited_page_is_a_loop() -> None:
    """A next link to a page already read ends with PaginationError."""
    handler = linked(
        {
            "https://svc.test/api/l": ([1], "<l?p=2>; rel=next"),
            "https://svc.test/api/l?p=2": ([2], "</api/l>; rel=next"),
        }
    )
    async with client_for(handler, []) as client:
        got = await drain(paginate(client, "/l", style=LinkHeader()))
    assert got[:2] == [Success(1), Success(2)]
    assert "same next link twice" in str(got[2].failure())


async def test_max_items_stops_quietly_and_sends_no_further_page() -> None:
    """``max_items=3`` over pages of 2: three items, two requests, no Failure."""
    seen: list[httpx.Request] = []
    async with client_for(numbers(100), seen) as client:
        got = await drain(paginate(client, "/i", style=PageNumber(size=2), max_items=3))
    assert got == [Success({"n": 0}), Success({"n": 1}), Success({"n": 2})]
    assert len(seen) == 2


async def test_max_pages_with_more_announced_ends_with_a_failure() -> None:
    """A service still announcing pages after ``max_pages`` ends with PaginationError."""
    seen: list[httpx.Request] = []
    async with client_for(numbers(100), seen) as client:
        got = await drain(paginate(client, "/i", style=PageNumber(size=2), max_pages=2))
    assert got[:4] == [Success({"n": n}) for n in range(4)]
    assert "max_pages=2" in str(got[4].failure())
    assert len(got) == 5
    assert len(seen) == 2


async def test_the_default_max_pages_is_finite() -> None:
    """An endless service stops at 100 pages by default."""
    seen: list[httpx.Request] = []
    async with client_for(numbers(10**9), seen) as client:
        got = await drain(paginate(client, "/i", style=PageNumber(size=1)))
    assert len(seen) == 100
    assert isinstance(got[-1].failure(), PaginationError)


async def test_a_failed_page_is_yielded_once_and_ends_the_iteration() -> None:
    """Page 2 answers 503: page 1's items, then the ServerStatusError, then nothing."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["page"] == "2":
            return httpx.Response(503)
        return numbers(10)(request)

    async with client_for(handler, seen) as client:
        pages = paginate(client, "/i", style=PageNumber(size=2))
        got = await drain(pages)
        collected = await collect(paginate(client, "/i", style=PageNumber(size=2)))
    assert isinstance(collected.failure(), ServerStatusError)
    assert got[:2] == [Success({"n": 0}), Success({"n": 1})]
    assert isinstance(got[2].failure(), ServerStatusError)
    assert len(got) == 3


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"not json", "not valid JSON"),
        (b'{"other": []}', "data (missing)"),
        (b'{"data": {"n": 1}}', "data (list_type)"),
        (b'{"data": [{"n": 1}, {"n": "sk-canary-4471aa"}]}', "data.1.n (int_parsing)"),
    ],
)
async def test_a_page_that_does_not_fit_is_one_decode_failure_without_values(
    body: bytes, text: str
) -> None:
    """Bad JSON, no list where the items should be, or an item that does not fit: one
    Failure naming the path, never a value from the body."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    async with client_for(handler, []) as client:
        got = await drain(paginate(client, "/i", style=PageNumber(items="data"), item=Item))
    assert len(got) == 1
    assert text in str(got[0].failure())
    assert CANARY not in repr(got[0].failure())


@pytest.mark.parametrize(
    "make",
    [
        lambda: PageNumber(size=0),
        lambda: Offset(size=-1),
        lambda: paginate(None, "/", style=PageNumber(), max_pages=0),  # type: ignore[arg-type]
        lambda: paginate(None, "/", style=PageNumber(), max_items=0),  # type: ignore[arg-type]
        lambda: paginated("/", style=PageNumber(), max_pages=0),
        lambda: paginated("/", style=PageNumber(), max_items=True),  # type: ignore[arg-type]
    ],
)
def test_bad_guards_and_sizes_are_config_errors(make: Callable[[], object]) -> None:
    """A size or guard below 1 is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"must be an integer >= 1"):
        make()


class Catalog(ServiceClient):
    @paginated("/shops/{shop}/items", style=PageNumber(size=2), max_items=50)
    def items(
        self, shop: str, kind: str | None = None
    ) -> AsyncIterator[Result[Item, RequestError]]:
        raise NotImplementedError


async def test_a_typed_client_paginates_with_a_declared_method() -> None:
    """``@paginated`` fills the path, sends the query and validates each item."""
    seen: list[httpx.Request] = []
    async with client_for(numbers(3), seen) as client:
        got = await collect(Catalog(client).items("a/b", kind="tea"))
    assert got.unwrap() == [Item(n=0), Item(n=1), Item(n=2)]
    assert seen[0].url.raw_path.startswith(b"/api/shops/a%2Fb/items?")
    assert seen[0].url.params["kind"] == "tea"


async def test_a_typed_paginated_call_with_a_bad_argument_yields_one_failure() -> None:
    """An empty path value: one InvalidRequestError, nothing sent."""
    seen: list[httpx.Request] = []
    async with client_for(numbers(3), seen) as client:
        got = await drain(Catalog(client).items(""))
    assert len(got) == 1
    assert isinstance(got[0].failure(), InvalidRequestError)
    assert seen == []


def test_a_paginated_method_must_return_an_async_iterator_of_results() -> None:
    """Any other return annotation is a ConfigError naming the method."""
    with pytest.raises(ConfigError, match=r"Bad\.items: the return annotation must be Async"):

        class Bad(ServiceClient):
            @paginated("/items", style=LinkHeader())
            def items(self) -> list[Item]:  # type: ignore[type-var]
                raise NotImplementedError


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://a.test/2>; rel="next"', [("https://a.test/2", {"rel": "next"})]),
        ("<a>;rel=next;REL=prev", [("a", {"rel": "next"})]),
        (
            '<a>; title="x\\"y, z"; rel=next, <b>',
            [("a", {"title": 'x"y, z', "rel": "next"}), ("b", {})],
        ),
        ('junk "a,b", <c>; rel', [("c", {"rel": ""})]),
        ("<a>; rel=next junk, <b>", [("a", {"rel": "next"}), ("b", {})]),
        ("<unclosed", []),
        ('<a> ; rel = "next" , <b> , ', [("a", {"rel": "next"}), ("b", {})]),
        ('<a>; t="unterminated', [("a", {"t": "unterminated"})]),
    ],
)
def test_link_headers_parse_per_rfc_8288(header: str, expected: object) -> None:
    """Quoted params with commas and escapes, several links, junk skipped, first rel wins."""
    assert parse_links(header) == expected


@given(
    st.text(alphabet=st.sampled_from('<>;,="\\ \tarelnxt:/?.%@[]éab12'), max_size=60) | st.text()
)
def test_any_link_header_gives_a_result_or_none_never_an_exception(header: str) -> None:
    """Whatever the header says, next_link answers Success, Failure or None."""
    found = next_link([header], httpx.URL("https://svc.test/api/items?page=1"))
    assert found is None or isinstance(found, Success | Failure)
    if isinstance(found, Success):
        assert found.unwrap().host == "svc.test"
