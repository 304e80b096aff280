"""Every public class a user configures, given any value for any one argument, is either built
or refuses with a ``ConfigError`` that names the argument: never a ``TypeError``,
``AttributeError`` or ``ValueError`` from deep inside, and never a wrong value accepted now
that breaks the first request later (a number where a function belongs, one string where a
collection of strings belongs: ``methods="POST"`` would be the methods P, O, S and T).

Property-based: hypothesis draws the argument and the value; the other arguments keep their
defaults (or a valid value where there is none).
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import types
import typing
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from returns.result import Failure, Success

from httprail import (
    AsyncClient,
    Client,
    ConfigError,
    HttpSettings,
    InvalidRequestError,
    Pipeline,
    PluginRegistry,
    RequestError,
    generators,
    load_stack_file,
    services,
    state,
    terminals,
)
from httprail import middleware as stages
from httprail.testing import MockTerminal


def _terminal() -> MockTerminal:
    return MockTerminal(lambda request: httpx.Response(200))


def _pipeline() -> Pipeline:
    return Pipeline([], _terminal())


# The classes a user builds and configures, each with a valid value for every argument that
# has no default.
CONFIGURED: dict[type, dict[str, Callable[[], object]]] = {
    AsyncClient: {},
    Client: {},
    Pipeline: {"plugins": list, "terminal": _terminal},
    PluginRegistry: {},
    HttpSettings: {},
    stages.ApiKeyAuth: {"key": lambda: "k"},
    stages.BasicAuth: {"username": lambda: "u", "password": lambda: "p"},
    stages.BearerAuth: {"token": lambda: "t"},
    stages.Bulkhead: {"max_concurrent": lambda: 2},
    stages.CircuitBreaker: {},
    stages.Hedge: {},
    stages.Logging: {},
    stages.Metrics: {},
    stages.OpenTelemetry: {},
    stages.RateLimiter: {"rate": lambda: 10.0},
    stages.Redirects: {},
    stages.RequestId: {},
    stages.Retry: {},
    stages.RetryBudget: {},
    stages.Timeout: {"seconds": lambda: 1.0},
    terminals.AiohttpTerminal: {},
    terminals.CurlTerminal: {},
    terminals.HttpxTerminal: {},
    terminals.PyreqwestTerminal: {},
    terminals.MultiTerminal: {"backends": lambda: [terminals.Backend(_terminal())]},
    terminals.Backend: {"terminal": _terminal},
    terminals.PipelineTransport: {"pipeline": _pipeline},
    terminals.Httpx2PipelineTransport: {"pipeline": _pipeline},
    services.BalancerOptions: {},
    services.HealthCheck: {},
    services.ServiceRegistry: {"services": dict},
    services.ServiceConfig: {"base_url": lambda: "http://svc.test"},
    services.Offset: {},
    services.PageNumber: {},
    services.LinkHeader: {},
    services.Cursor: {},
    state.MemoryStore: {},
    generators.SSEParser: {},
    generators.ProviderFactory: {},
}

# Not here: ``GenerationRequest``, a record that generators check when asked to send it
# (``problems()``: a typed ``Failure``, tests/unit/test_generator_types.py); and
# ``ProviderOverrides``, a pydantic model read through ``HttpSettings(providers=...)``
# and stack files, which turn its ``ValidationError`` into a ``ConfigError`` naming the
# ``HTTP_PROVIDERS__<NAME>__...`` variable (tests/unit/test_settings.py); built directly, it
# raises pydantic's ``ValidationError``, which names the field.


def _arguments(cls: type) -> list[str]:
    signature = inspect.signature(cls)
    return [
        name
        for name, parameter in signature.parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]


CASES = [(cls, name) for cls in CONFIGURED for name in _arguments(cls)]

HOSTILE = st.one_of(
    st.sampled_from([int, str, list, dict, type("Plain", (), {}), list[int]]),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.binary(max_size=6),
    st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none()), max_size=3),
    st.tuples(st.integers(), st.text(max_size=3)),
    st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.text(max_size=3)), max_size=2),
    st.sets(st.integers(min_value=0, max_value=700), max_size=3),
    st.sampled_from([object(), 1j, math.inf, -math.inf, "GET", "POST", "500", b"GET", (), []]),
)


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # a hint that does not resolve here: no hint
        return {}


def _wants_callable(hint: Any) -> bool:
    """Whether every value the hint allows, but ``None``, is a callable."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return bool(args) and all(_wants_callable(a) for a in args)
    return typing.get_origin(hint) is collections.abc.Callable


def _wants_strings(hint: Any) -> bool:
    """Whether the hint is a collection of strings (``Collection[str]``, ``Iterable[str]``)."""
    origin = typing.get_origin(hint)
    collection = origin in (
        collections.abc.Collection,
        collections.abc.Iterable,
        collections.abc.Sequence,
        collections.abc.Set,
        frozenset,
        set,
        list,
        tuple,
    )
    return collection and typing.get_args(hint)[:1] == (str,)


def _wants_text(hint: Any) -> bool:
    """Whether the hint is ``str`` (or ``str | None``): a name, a path, a prefix."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(hint) if a is not type(None)] == [str]
    return hint is str


def _build(cls: type, name: str, value: object) -> object:
    kwargs = {arg: make() for arg, make in CONFIGURED[cls].items() if arg != name}
    kwargs[name] = value
    return cls(**kwargs)


@pytest.mark.parametrize(("cls", "name"), CASES, ids=[f"{c.__name__}.{n}" for c, n in CASES])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=HOSTILE)
def test_any_value_is_built_or_refused_by_name(cls: type, name: str, value: object) -> None:
    refused: str | None = None
    try:
        _build(cls, name, value)
    except ConfigError as exc:
        refused = str(exc)
    if refused is not None:
        assert name in refused, (cls, name, refused)
        return
    hint = _hints(cls).get(name)
    if hint is not None and value is not None and _wants_callable(hint):
        assert callable(value), f"{cls.__name__}({name}={value!r}) accepted a non-callable"
    if hint is not None and _wants_strings(hint):
        assert not isinstance(value, str | bytes), (
            f"{cls.__name__}({name}={value!r}) took one string as a collection of its letters"
        )
    if hint is not None and value is not None and _wants_text(hint):
        assert isinstance(value, str), f"{cls.__name__}({name}={value!r}) took a non-string"


def test_every_case_is_known() -> None:
    """The cases above cover every argument of every class (none was skipped by accident)."""
    assert len(CASES) > 150
    assert {cls for cls, _ in CASES} == set(CONFIGURED)


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: stages.Retry(methods="POST"), "Retry(methods=...)"),
        (lambda: stages.Hedge(methods="GET"), "Hedge(methods=...)"),
        (lambda: stages.Redirects(strip_headers="x-api-key"), "Redirects(strip_headers=...)"),
        (lambda: stages.Retry(retry_statuses=503), "Retry(retry_statuses=...)"),
        (lambda: stages.Retry(sleep=1.0), "Retry(sleep=...)"),
        (lambda: stages.Timeout(5, clock=0), "Timeout(clock=...)"),
        (lambda: stages.Metrics(buckets=None), "Metrics(buckets=...)"),
        (lambda: stages.Logging(min_level=["info"]), "Logging(min_level=...)"),
        (lambda: terminals.HttpxTerminal(settings={"timeout_total": 5}), "(settings=...)"),
        (lambda: AsyncClient(plugins=stages.Retry()), "AsyncClient(plugins=...)"),
        (lambda: AsyncClient(settings=True), "AsyncClient(settings=...)"),
        (lambda: stages.default_plugins(True), "default_plugins(settings=...)"),
        (lambda: services.endpoint(None), "endpoint(spec=...)"),  # type: ignore[arg-type]
        (lambda: services.endpoint("GET /x", response=5), "response=..."),
        (lambda: services.paginated("/x", style={}), "paginated(style=...)"),  # type: ignore[arg-type]
        (
            lambda: services.paginate(AsyncClient(), "/x", style=services.Offset(), item="x"),
            "paginate(item=...)",
        ),
    ],
)
def test_common_mistakes_are_refused_when_built(build: Callable[[], object], named: str) -> None:
    """The mistakes a user makes (one string or one status for a collection, a number for a
    function, a dict for settings) are refused at once, naming the argument."""
    with pytest.raises(ConfigError) as caught:
        build()
    assert named in str(caught.value)


REQUEST_OPTIONS = [
    "params",
    "headers",
    "cookies",
    "content",
    "data",
    "files",
    "json",
    "timeout",
    "tags",
    "raw_status",
    "stream",
    "extensions",
    "max_body_bytes",
]


@pytest.mark.parametrize("option", ["method", "url", "model", "send", *REQUEST_OPTIONS])
@settings(max_examples=30, deadline=None)
@given(value=HOSTILE)
async def test_any_request_argument_gives_a_result(option: str, value: object) -> None:
    """A call's arguments, whatever their type, give a ``Success`` or a typed ``Failure``
    (``InvalidRequestError`` for what cannot be built, or a ``DecodeError`` of the answer for
    a ``model`` it does not fit): ``request`` and ``get_json`` never raise."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"a": 1})

    with warnings.catch_warnings():
        # httpx's own advice for data=<bytes or text> ("use content=") is httpx's to give
        warnings.filterwarnings("ignore", "Use 'content=", DeprecationWarning)
        outcome = await _call(option, value, answer)
    if isinstance(outcome, Failure):
        assert isinstance(outcome.failure(), RequestError)
        assert isinstance(outcome.failure(), InvalidRequestError) or len(seen) == 1
    else:
        assert isinstance(outcome, Success)
        assert len(seen) == 1


async def _call(
    option: str, value: object, answer: Callable[[httpx.Request], httpx.Response]
) -> object:
    async with AsyncClient("http://h.test", plugins=[], terminal=MockTerminal(answer)) as client:
        if option == "method":
            outcome = await client.request(value, "/x")  # type: ignore[arg-type]
        elif option == "url":
            outcome = await client.request("GET", value)  # type: ignore[arg-type]
        elif option == "model":  # get_json's: a model that is not a type is refused unsent
            outcome = await client.get_json("/x", model=value)
        elif option == "send":  # what is given to send (and Pipeline.send): not a request
            outcome = await client.send(value)  # type: ignore[arg-type]
            direct = await client.pipeline.send(value)  # type: ignore[arg-type]
            assert isinstance(direct, Failure)
            assert isinstance(direct.failure(), InvalidRequestError)
        else:
            outcome = await client.request("POST", "/x", **{option: value})  # type: ignore[arg-type]
    return outcome


@pytest.mark.parametrize("path", ["stack\x00.toml", 5, None])
def test_a_stack_file_path_that_cannot_be_a_path_is_a_config_error(path: object) -> None:
    """A path with a NUL byte (``ValueError`` from the OS layer) or of another type."""
    with pytest.raises(ConfigError):
        load_stack_file(path)  # type: ignore[arg-type]
