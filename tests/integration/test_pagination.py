"""Pagination against a real server: three styles through the default stack, a flaky page
retried by the same stack, and a next link to another origin refused."""

from __future__ import annotations

from urllib.parse import parse_qs

from httprail import AsyncClient, HttpSettings, PaginationError
from httprail.services import Cursor, LinkHeader, PageNumber, collect, paginate
from httprail.testing import ChaosServer, RecordedRequest, Reply

FAST = HttpSettings(backoff_base=0.01, backoff_max=0.02)


def pages(request: RecordedRequest) -> Reply:
    query = parse_qs(request.query)
    page, limit = int(query["page"][0]), int(query["limit"][0])
    first = (page - 1) * limit
    return Reply.json({"items": list(range(first, min(7, first + limit)))})


async def test_three_styles_read_every_item_once_over_the_default_stack() -> None:
    """Page numbers, a cursor and Link headers each deliver all items in order."""
    async with ChaosServer() as server:
        server.route("/pages", pages)
        server.script(
            "/cursor",
            Reply.json({"data": [0, 1], "meta": {"next": "c2"}}),
            Reply.json({"data": [2], "meta": {"next": None}}),
        )
        server.script(
            "/linked",
            Reply.json([0], headers={"Link": '</linked?p=2>; rel="next"'}),
            Reply.json([1], headers={"Link": f'<{server.url}/linked?p=3>; rel="next"'}),
            Reply.json([2]),
        )
        async with AsyncClient(server.url, settings=FAST) as client:
            numbered = await collect(
                paginate(client, "/pages", style=PageNumber(size=3, items="items"), item=int)
            )
            cursor = await collect(client.paginate("/cursor", style=Cursor(next="meta.next")))
            linked = await collect(client.paginate("/linked", style=LinkHeader()))
    assert numbered.unwrap() == list(range(7))
    assert cursor.unwrap() == [0, 1, 2]
    assert linked.unwrap() == [0, 1, 2]
    assert [r.query for r in server.requests_for("/cursor")] == ["", "cursor=c2"]
    assert [r.query for r in server.requests_for("/linked")] == ["", "p=2", "p=3"]


async def test_a_flaky_page_is_retried_by_the_clients_stack() -> None:
    """Page 2's first answer is a 503: the default Retry resends it and paging goes on."""
    async with ChaosServer() as server:
        server.script(
            "/feed",
            Reply.json({"data": [1], "next_cursor": "b"}),
            Reply.status(503),
            Reply.json({"data": [2], "next_cursor": None}),
        )
        async with AsyncClient(server.url, settings=FAST) as client:
            got = await collect(client.paginate("/feed", style=Cursor()))
    assert got.unwrap() == [1, 2]
    assert server.count("/feed") == 3


async def test_a_next_link_to_another_origin_sends_nothing_there() -> None:
    """A next link to a second server is refused: that server receives no request."""
    async with ChaosServer() as server, ChaosServer() as elsewhere:
        server.script("/l", Reply.json([1], headers={"Link": f"<{elsewhere.url}/x>; rel=next"}))
        async with AsyncClient(server.url, headers={"Authorization": "Bearer t0k3n"}) as client:
            got = [o async for o in client.paginate("/l", style=LinkHeader())]
    assert got[0].unwrap() == 1
    assert isinstance(got[1].failure(), PaginationError)
    assert elsewhere.count() == 0
