"""Generation types are pure frozen values; a GenerationStream ends with at most one Failure."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import httprail.generators
from httprail import Failure, ReadError, RequestError, Result, Success
from httprail.generators import (
    GenerationRequest,
    GenerationResult,
    GenerationStream,
    Generator,
    Message,
    Usage,
    _types,
)

Item = Result[str, RequestError]


# -- the pure types ---------------------------------------------------------------------------


def test_types_module_imports_nothing_but_the_standard_library() -> None:
    tree = ast.parse(Path(_types.__file__).read_text())
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import of {node.module!r} in _types.py"
            assert node.module is not None
            imported.append(node.module)
    assert imported  # the walk found the imports
    allowed = set(sys.stdlib_module_names) | {"__future__"}
    assert [name for name in imported if name.split(".")[0] not in allowed] == []


def test_generators_exports_exactly_the_promised_names() -> None:
    assert httprail.generators.__all__ == [
        "GenerationRequest",
        "GenerationResult",
        "GenerationStream",
        "Generator",
        "Message",
        "ProviderFactory",
        "SSEEvent",
        "SSEParser",
        "StackGenerator",
        "Usage",
        "iter_sse",
    ]


@pytest.mark.parametrize(
    ("make", "role"),
    [(Message.system, "system"), (Message.user, "user"), (Message.assistant, "assistant")],
)
def test_message_constructors_set_the_role(make: object, role: str) -> None:
    message = make("hi")  # type: ignore[operator]
    assert message == Message(role, "hi")
    assert message.role in Message.ROLES


def test_values_are_frozen_and_slotted() -> None:
    values: list[object] = [
        Message.user("x"),
        Usage(),
        GenerationRequest.from_prompt("x"),
        GenerationResult(text="t", model="m"),
    ]
    for value in values:
        assert not hasattr(value, "__dict__")
        field = dataclasses.fields(value)[0].name  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, None)


def test_usage_totals_its_tokens() -> None:
    assert Usage().total_tokens == 0
    assert Usage(input_tokens=12, output_tokens=30).total_tokens == 42


def test_from_prompt_builds_the_messages_and_passes_the_fields() -> None:
    request = GenerationRequest.from_prompt(
        "Name a colour", system="Be brief", model="m1", max_tokens=5, temperature=0.2, stop=(".",)
    )
    assert request.messages == (Message.system("Be brief"), Message.user("Name a colour"))
    assert (request.model, request.max_tokens, request.temperature, request.stop) == (
        "m1",
        5,
        0.2,
        (".",),
    )
    assert GenerationRequest.from_prompt("hi").messages == (Message.user("hi"),)


def test_request_defaults() -> None:
    request = GenerationRequest((Message.user("x"),))
    assert (request.model, request.max_tokens, request.temperature, request.stop) == (
        None,
        None,
        None,
        (),
    )
    assert dict(request.extra) == {}
    with pytest.raises(TypeError):
        request.extra["k"] = "v"  # type: ignore[index]


def test_a_request_cannot_change_through_what_it_was_built_from() -> None:
    messages = [Message.user("x")]
    stop = ["END"]
    extra: dict[str, object] = {"top_p": 0.9}
    request = GenerationRequest(messages, stop=stop, extra=extra)  # type: ignore[arg-type]
    messages.append(Message.user("y"))
    stop.append("STOP")
    extra["top_p"] = 0.1
    assert request.messages == (Message.user("x"),)
    assert request.stop == ("END",)
    assert dict(request.extra) == {"top_p": 0.9}
    with pytest.raises(TypeError):
        request.extra["top_p"] = 1  # type: ignore[index]


def test_a_valid_request_has_no_problems() -> None:
    request = GenerationRequest.from_prompt(
        "x", system="s", model="m", max_tokens=1, temperature=0, stop=("\n",), extra={"a": 1}
    )
    assert request.problems() == ()
    assert GenerationRequest((Message("tool", "result"),)).problems() == ()


@pytest.mark.parametrize(
    ("request_", "mentions"),
    [
        (GenerationRequest(()), "messages is empty"),
        (GenerationRequest([]), "messages is empty"),  # type: ignore[arg-type]
        (GenerationRequest("hello"), "messages must be a tuple"),  # type: ignore[arg-type]
        (GenerationRequest(("hello",)), "messages[0] must be a Message"),  # type: ignore[arg-type]
        (GenerationRequest((Message("robot", "x"),)), "messages[0].role 'robot'"),
        (GenerationRequest((Message(["user"], "x"),)), "is not one of"),  # type: ignore[arg-type]
        (GenerationRequest((Message.user("a"), Message("user", 5))), "messages[1].content"),  # type: ignore[arg-type]
        (GenerationRequest.from_prompt("x", model=""), "model must be"),
        (GenerationRequest.from_prompt("x", model="  "), "model must be"),
        (GenerationRequest.from_prompt("x", max_tokens=0), "max_tokens"),
        (GenerationRequest.from_prompt("x", max_tokens=True), "max_tokens"),
        (GenerationRequest.from_prompt("x", max_tokens=2.0), "max_tokens"),  # type: ignore[arg-type]
        (GenerationRequest.from_prompt("x", temperature=-0.1), "temperature"),
        (GenerationRequest.from_prompt("x", temperature=float("nan")), "temperature"),
        (GenerationRequest.from_prompt("x", temperature=False), "temperature"),
        (GenerationRequest.from_prompt("x", temperature="hot"), "temperature"),  # type: ignore[arg-type]
        (GenerationRequest.from_prompt("x", stop="END"), "stop must be"),  # type: ignore[arg-type]
        (GenerationRequest.from_prompt("x", stop=("",)), "stop must be"),
        (GenerationRequest.from_prompt("x", extra={1: "a"}), "extra must be"),  # type: ignore[dict-item]
        (GenerationRequest.from_prompt("x", extra=None), "extra must be"),  # type: ignore[arg-type]
    ],
)
def test_problems_name_what_is_wrong(request_: GenerationRequest, mentions: str) -> None:
    problems = request_.problems()
    assert len(problems) == 1
    assert mentions in problems[0]


def test_problems_lists_every_problem() -> None:
    request = GenerationRequest((Message("x", "y"),), model="", max_tokens=0, temperature=-1)
    assert len(request.problems()) == 4


def test_the_generator_protocol_checks_the_shape() -> None:
    class Complete:
        name = "complete"

        async def generate(
            self, request: GenerationRequest
        ) -> Result[GenerationResult, RequestError]:
            return Success(GenerationResult(text="", model="m"))

        def generate_stream(self, request: GenerationRequest) -> AsyncIterator[Item]:
            return GenerationStream(lambda: _items([]))

    class NoStream:
        name = "no-stream"

        async def generate(
            self, request: GenerationRequest
        ) -> Result[GenerationResult, RequestError]:
            return Success(GenerationResult(text="", model="m"))

    class NoName:
        async def generate(
            self, request: GenerationRequest
        ) -> Result[GenerationResult, RequestError]:
            return Success(GenerationResult(text="", model="m"))

        def generate_stream(self, request: GenerationRequest) -> AsyncIterator[Item]:
            return GenerationStream(lambda: _items([]))

    assert isinstance(Complete(), Generator)
    assert not isinstance(NoStream(), Generator)
    assert not isinstance(NoName(), Generator)


# -- GenerationStream -------------------------------------------------------------------------


async def _items(items: list[Item]) -> AsyncIterator[Item]:
    for item in items:
        yield item


class Producer:
    """A producer whose progress and closing the tests can see."""

    def __init__(self, items: list[Item], *, raise_after: BaseException | None = None) -> None:
        self.items = items
        self.raise_after = raise_after
        self.calls = 0
        self.yielded = 0
        self.closed = False

    async def run(self, stream: GenerationStream) -> AsyncIterator[Item]:
        self.calls += 1
        try:
            for item in self.items:
                self.yielded += 1
                yield item
            stream.usage = Usage(input_tokens=3, output_tokens=len(self.items))
            stream.finish_reason = "stop"
            stream.model = "m-1"
            if self.raise_after is not None:
                raise self.raise_after
        finally:
            self.closed = True


async def drain(stream: GenerationStream) -> list[Item]:
    return [item async for item in stream]


async def test_a_stream_yields_the_pieces_and_exposes_what_the_producer_set() -> None:
    producer = Producer([Success("Hel"), Success("lo")])
    stream = GenerationStream(producer.run)
    assert (stream.usage, stream.finish_reason, stream.model) == (None, None, None)
    assert await drain(stream) == [Success("Hel"), Success("lo")]
    assert stream.usage == Usage(input_tokens=3, output_tokens=2)
    assert (stream.finish_reason, stream.model) == ("stop", "m-1")
    assert stream.done
    assert producer.closed
    assert await drain(stream) == []  # an ended stream stays ended


async def test_a_zero_argument_factory_and_a_ready_iterator_work_too() -> None:
    assert await drain(GenerationStream(lambda: _items([Success("a")]))) == [Success("a")]
    assert await drain(GenerationStream(_items([Success("b")]))) == [Success("b")]


async def test_a_factory_without_an_inspectable_signature_is_given_the_stream() -> None:
    class Opaque:
        @property
        def __signature__(self) -> None:
            raise ValueError("no signature found")

        def __call__(self, stream: GenerationStream) -> AsyncIterator[Item]:
            self.stream = stream
            return _items([Success("opaque")])

    factory = Opaque()
    stream = GenerationStream(factory)
    assert await drain(stream) == [Success("opaque")]
    assert factory.stream is stream


async def test_the_producer_starts_on_the_first_read_only() -> None:
    producer = Producer([Success("x")])
    stream = GenerationStream(producer.run)
    assert producer.calls == 0
    assert "not started" in repr(stream)
    assert await anext(stream) == Success("x")
    assert producer.calls == 1
    assert "open" in repr(stream)


async def test_closing_before_reading_never_starts_the_producer() -> None:
    producer = Producer([Success("x")])
    stream = GenerationStream(producer.run)
    await stream.aclose()
    assert await drain(stream) == []
    assert producer.calls == 0


async def test_nothing_after_a_failure_is_seen_and_the_producer_is_closed() -> None:
    error = ReadError("connection broke")
    producer = Producer([Success("a"), Failure(error), Success("b"), Failure(ReadError("2nd"))])
    stream = GenerationStream(producer.run)
    assert await drain(stream) == [Success("a"), Failure(error)]
    assert producer.yielded == 2
    assert producer.closed
    assert stream.done
    assert "done" in repr(stream)


async def test_a_request_error_raised_by_the_producer_is_the_final_failure() -> None:
    error = ReadError("broke")
    stream = GenerationStream(Producer([Success("a")], raise_after=error).run)
    items = await drain(stream)
    assert items == [Success("a"), Failure(error)]


async def test_any_other_exception_from_the_producer_becomes_one_request_error() -> None:
    bug = KeyError("choices")
    items = await drain(GenerationStream(Producer([Success("a")], raise_after=bug).run))
    assert items[0] == Success("a")
    assert len(items) == 2
    error = items[1].failure()
    assert type(error) is RequestError
    assert "KeyError" in str(error)
    assert error.__cause__ is bug


async def test_a_factory_that_raises_gives_one_failure() -> None:
    def factory(stream: GenerationStream) -> AsyncIterator[Item]:
        raise ValueError("bad setup")

    items = await drain(GenerationStream(factory))
    assert len(items) == 1
    assert "bad setup" in str(items[0].failure())


async def test_cancellation_propagates_and_ends_the_stream() -> None:
    producer = Producer([Success("a")], raise_after=asyncio.CancelledError())
    stream = GenerationStream(producer.run)
    assert await anext(stream) == Success("a")
    with pytest.raises(asyncio.CancelledError):
        await anext(stream)
    assert stream.done
    assert producer.closed
    assert await drain(stream) == []


async def test_aclose_mid_stream_closes_the_producer_and_is_idempotent() -> None:
    producer = Producer([Success("a"), Success("b"), Success("c")])
    stream = GenerationStream(producer.run)
    assert await anext(stream) == Success("a")
    await stream.aclose()
    await stream.aclose()
    assert producer.closed
    assert producer.yielded == 1
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_async_with_closes_the_stream() -> None:
    producer = Producer([Success("a"), Success("b")])
    async with GenerationStream(producer.run) as stream:
        assert await anext(stream) == Success("a")
    assert producer.closed
    assert stream.done


async def test_an_iterator_without_aclose_can_be_closed() -> None:
    class Bare:
        def __aiter__(self) -> Bare:
            return self

        async def __anext__(self) -> Item:
            return Success("again")

    stream = GenerationStream(Bare())
    assert await anext(stream) == Success("again")
    await stream.aclose()
    assert await drain(stream) == []


_results = st.lists(
    st.one_of(
        st.text(max_size=3).map(Success),
        st.text(max_size=3).map(lambda text: Failure(RequestError(text))),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(items=_results)
def test_at_most_one_failure_and_it_is_last(items: list[Item]) -> None:
    produced = asyncio.run(drain(GenerationStream(_items(items))))
    failures = [i for i, item in enumerate(produced) if isinstance(item, Failure)]
    assert len(failures) <= 1
    if failures:
        assert failures[0] == len(produced) - 1
    first_failure = next((i for i, item in enumerate(items) if isinstance(item, Failure)), None)
    expected = items if first_failure is None else items[: first_failure + 1]
    assert produced == expected
