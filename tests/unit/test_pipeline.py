"""Pipeline: order, freezing, validation, request/response plugins and event wiring."""

from __future__ import annotations

import httpx
import pytest

from httprail import (
    BreakerEvent,
    CircuitState,
    ConfigError,
    Failure,
    InvalidRequestError,
    Next,
    Outcome,
    Pipeline,
    RequestError,
    RequestResponsePlugin,
    Result,
    Success,
    get_context,
)
from httprail._events import emit
from httprail.testing import MockTerminal

URL = "https://api.test/x"


class Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        self.log.append(f"{self.name}:in")
        outcome = await call_next(request)
        self.log.append(f"{self.name}:out")
        return outcome


def ok_terminal() -> MockTerminal:
    return MockTerminal(lambda request: httpx.Response(200, text="ok"))


async def test_first_plugin_is_outermost() -> None:
    log: list[str] = []
    pipeline = Pipeline([Recorder("a", log), Recorder("b", log)], ok_terminal())
    outcome = await pipeline.send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert log == ["a:in", "b:in", "b:out", "a:out"]
    assert repr(pipeline) == "Pipeline(a → b → mock)"


async def test_empty_chain_goes_straight_to_the_terminal() -> None:
    terminal = ok_terminal()
    outcome = await Pipeline([], terminal).send(httpx.Request("GET", URL))
    assert outcome.unwrap().text == "ok"
    assert len(terminal.requests) == 1


def test_pipeline_is_frozen() -> None:
    pipeline = Pipeline([], ok_terminal())
    with pytest.raises(AttributeError, match="frozen"):
        pipeline._plugins = ()  # type: ignore[misc]
    assert not hasattr(pipeline, "add")
    assert isinstance(pipeline.plugins, tuple)


@pytest.mark.parametrize("bad", [object(), "retry", 42])
def test_non_plugins_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"plugins\[0\]"):
        Pipeline([bad], ok_terminal())  # type: ignore[list-item]


def test_terminal_as_middleware_is_refused() -> None:
    with pytest.raises(ConfigError, match="terminal, not a middleware"):
        Pipeline([ok_terminal()], ok_terminal())  # type: ignore[list-item]


def test_non_terminal_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a terminal plugin"):
        Pipeline([], object())  # type: ignore[arg-type]


def test_uncallable_observer_is_refused() -> None:
    with pytest.raises(ConfigError, match="observer"):
        Pipeline([], ok_terminal(), observers=[42])  # type: ignore[list-item]


class AddHeader(RequestResponsePlugin):
    name = "add_header"

    async def process_request(self, request: httpx.Request) -> Result[httpx.Request, RequestError]:
        request.headers["x-added"] = "1"
        return Success(request)

    async def process_response(
        self, response: httpx.Response, request: httpx.Request
    ) -> Result[httpx.Response, RequestError]:
        response.headers["x-seen"] = "yes"
        return Success(response)


class Refuse(RequestResponsePlugin):
    name = "refuse"

    async def process_request(self, request: httpx.Request) -> Result[httpx.Request, RequestError]:
        return Failure(InvalidRequestError("refused", request=request))


async def test_request_response_plugin_changes_both_ways() -> None:
    terminal = ok_terminal()
    outcome = await Pipeline([AddHeader()], terminal).send(httpx.Request("GET", URL))
    assert terminal.requests[0].headers["x-added"] == "1"
    assert outcome.unwrap().headers["x-seen"] == "yes"


async def test_request_response_plugin_failure_short_circuits() -> None:
    terminal = ok_terminal()
    outcome = await Pipeline([Refuse(), AddHeader()], terminal).send(httpx.Request("GET", URL))
    assert isinstance(outcome.failure(), InvalidRequestError)
    assert terminal.requests == []


async def test_failure_from_below_passes_process_response_untouched() -> None:
    terminal = MockTerminal(lambda request: httpx.Response(500))
    outcome = await Pipeline([AddHeader()], terminal).send(httpx.Request("GET", URL))
    assert "x-seen" not in outcome.failure().response.headers  # type: ignore[attr-defined]


async def test_base_request_response_plugin_is_a_no_op() -> None:
    outcome = await Pipeline([RequestResponsePlugin()], ok_terminal()).send(
        httpx.Request("GET", URL)
    )
    assert outcome.unwrap().status_code == 200


class Watcher:
    name = "watcher"

    def __init__(self) -> None:
        self.events: list[object] = []

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        return await call_next(request)

    def on_event(self, event: object) -> None:
        self.events.append(event)


async def test_stages_with_on_event_and_extra_observers_receive_events() -> None:
    watcher = Watcher()
    extra: list[object] = []
    event = BreakerEvent("u", CircuitState.CLOSED, CircuitState.OPEN, "test")

    def emitter(request: httpx.Request) -> httpx.Response:
        emit(get_context(request).observers, event)
        return httpx.Response(200)

    pipeline = Pipeline([watcher], MockTerminal(emitter), observers=[extra.append])
    await pipeline.send(httpx.Request("GET", URL))
    assert watcher.events == [event]
    assert extra == [event]


async def test_a_failing_observer_is_skipped() -> None:
    seen: list[object] = []

    def broken(event: object) -> None:
        raise RuntimeError("boom")

    event = BreakerEvent("u", CircuitState.CLOSED, CircuitState.OPEN, "test")
    emit((broken, seen.append), event)  # type: ignore[arg-type]
    assert seen == [event]


async def test_find_and_close() -> None:
    watcher = Watcher()
    terminal = ok_terminal()
    async with Pipeline([watcher], terminal) as pipeline:
        assert pipeline.find(Watcher) is watcher
        assert pipeline.find(MockTerminal) is terminal
        assert pipeline.find(AddHeader) is None
        assert pipeline.terminal is terminal
    assert terminal.closed
