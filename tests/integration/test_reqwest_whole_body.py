"""The reqwest terminal reads a plain answer's body with its head, in ``_open``.

A body that is not streamed, not encoded, of a declared length within the body limit, on a
final non-error status, is read as soon as the head is in (pyreqwest's read-ahead brought it
along) and comes back as a ``ReadWhole`` stream, which ``send`` does not read again. Every
other answer takes the general road (``_read``). Both must give the same outcomes: the
conformance suite runs all answers on both; these tests pin which road is taken and what a
cancel or a limit does on the new one. Against a real ``ChaosServer``.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from httprail import HttpSettings, ResponseTooLargeError, StatusError
from httprail._context import EXTENSION_KEY, RequestContext
from httprail.terminals import PyreqwestTerminal
from httprail.terminals._gated import ReadWhole
from httprail.terminals._limits import MAX_BODY_EXTENSION
from httprail.testing import ChaosServer, Fault, Reply

pytest.importorskip("pyreqwest")

Factory = Callable[..., PyreqwestTerminal]


@pytest.fixture
async def make_terminal() -> AsyncIterator[Factory]:
    made: list[PyreqwestTerminal] = []

    def make(**settings: object) -> PyreqwestTerminal:
        terminal = PyreqwestTerminal(HttpSettings(**settings))  # type: ignore[arg-type]
        made.append(terminal)
        return terminal

    yield make
    for terminal in made:
        await terminal.aclose()


def get(url: str, *, stream: bool = False) -> httpx.Request:
    request = httpx.Request("GET", url)
    request.extensions[EXTENSION_KEY] = RequestContext(stream=stream)
    return request


async def test_a_plain_answer_comes_read_with_its_head(
    chaos_server: ChaosServer, make_terminal: Factory
) -> None:
    """Body, headers, version and elapsed as on the general road; the slot is free again."""
    chaos_server.script("/ok", Reply.json({"id": 7}, headers={"x-tag": "a"}))
    terminal = make_terminal()
    response = (await terminal.send(get(chaos_server.url_for("/ok")))).unwrap()
    assert type(response.stream) is ReadWhole
    assert response.json() == {"id": 7}
    assert response.headers["x-tag"] == "a"
    assert response.headers["content-length"] == str(len(response.content))
    assert response.extensions["http_version"] == b"HTTP/1.1"
    assert response.is_closed
    assert response.elapsed.total_seconds() > 0
    assert terminal._gate.active == 0
    assert len(chaos_server.requests) == 1


@pytest.mark.parametrize(
    ("reply", "stream", "own_limit", "body"),
    [
        pytest.param(
            Reply(headers=(("content-encoding", "gzip"),), body=gzip.compress(b"zipped" * 50)),
            False,
            None,
            b"zipped" * 50,
            id="encoded",
        ),
        pytest.param(Reply.json({"a": 1}), False, 10_000, b'{"a":1}', id="own-limit"),
        pytest.param(Reply.sse(["x", "y"]), False, None, b"data: x\n\ndata: y\n\n", id="no-length"),
        pytest.param(Reply.json({"a": 1}), True, None, b'{"a":1}', id="streamed"),
    ],
)
async def test_other_answers_are_read_on_the_general_road(
    chaos_server: ChaosServer,
    make_terminal: Factory,
    reply: Reply,
    stream: bool,
    own_limit: int | None,
    body: bytes,
) -> None:
    """Encoded, with the request's own body limit, without a declared length, or streamed:
    not read in ``_open``; the body is the same."""
    chaos_server.script("/other", reply)
    request = get(chaos_server.url_for("/other"), stream=stream)
    if own_limit is not None:
        request.extensions[MAX_BODY_EXTENSION] = own_limit
    terminal = make_terminal()
    response = (await terminal.send(request)).unwrap()
    assert type(response.stream) is not ReadWhole
    content = b"".join([chunk async for chunk in response.aiter_bytes()]) if stream else None
    await response.aclose()
    assert (content if stream else response.content) == body
    assert terminal._gate.active == 0


async def test_an_error_status_keeps_its_capped_body(
    chaos_server: ChaosServer, make_terminal: Factory
) -> None:
    """A 404 is a ``StatusError`` with the body, read by ``send`` as for every terminal."""
    chaos_server.script("/missing", Reply.status(404, body=b"no such thing"))
    error = (await make_terminal().send(get(chaos_server.url_for("/missing")))).failure()
    assert isinstance(error, StatusError)
    assert error.status_code == 404
    assert error.response.content == b"no such thing"


@pytest.mark.parametrize("own", [False, True])
async def test_a_declared_body_over_the_limit_is_refused(
    chaos_server: ChaosServer, make_terminal: Factory, own: bool
) -> None:
    """Over ``max_body_bytes`` (or the request's own limit): ``ResponseTooLargeError`` naming
    the limit, on either road; the slot is free again."""
    chaos_server.script("/big", Reply(body=b"x" * 100))
    terminal = make_terminal(max_body_bytes=1_000_000 if own else 10)
    request = get(chaos_server.url_for("/big"))
    if own:
        request.extensions[MAX_BODY_EXTENSION] = 10
    error = (await terminal.send(request)).failure()
    assert isinstance(error, ResponseTooLargeError)
    assert error.limit == 10
    assert terminal._gate.active == 0


async def test_a_cancel_while_the_body_comes_propagates_and_frees_the_connection(
    chaos_server: ChaosServer, make_terminal: Factory
) -> None:
    """The head promised 100 bytes and only part came: the read in ``_open`` waits. A cancel
    there ends the caller's task with ``CancelledError``; the slot is free and the next
    request on the same terminal is answered."""
    chaos_server.script("/stall", Reply.fail(Fault.HANG_BODY))
    chaos_server.script("/ok", Reply.json({"ok": True}))
    terminal = make_terminal()
    task = asyncio.ensure_future(terminal.send(get(chaos_server.url_for("/stall"))))
    for _ in range(200):
        if chaos_server.requests:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # the head is in; the body's read waits
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert terminal._gate.active == 0
    response = (await terminal.send(get(chaos_server.url_for("/ok")))).unwrap()
    assert response.json() == {"ok": True}


async def test_a_body_cut_short_is_a_typed_failure(
    chaos_server: ChaosServer, make_terminal: Factory
) -> None:
    """Fewer bytes than the declared length, then the close: a ``Failure``, never a raise."""
    chaos_server.script("/cut", Reply.fail(Fault.TRUNCATE))
    terminal = make_terminal()
    outcome = await terminal.send(get(chaos_server.url_for("/cut")))
    assert outcome.failure().counts_against_upstream
    assert terminal._gate.active == 0
