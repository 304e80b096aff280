"""Typed service clients: endpoints declared on a class, calls that return typed Results.

```python
class Users(ServiceClient):
    @get("/users/{id}")
    async def get_user(self, id: int) -> Result[User, RequestError]: ...

    @post("/users")
    async def create_user(self, body: NewUser) -> Result[User, RequestError]: ...

users = Users(client)  # any AsyncClient: its base URL, stack and settings serve every call
match await users.get_user(7): ...
```

The decorators keep the method's signature as written, so type checkers see
``get_user(id: int) -> Coroutine[..., Result[User, RequestError]]``; the body (``...``) is never
run. When the class is created each declared method is read once: the names in the path
template must be parameters of the method, the return annotation must be ``Result[T, E]``
(``E`` a base of ``RequestError``), anything else is a ``ConfigError`` naming the method.
How the parameters travel: see :func:`get`.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    TypeVar,
    Unpack,
    cast,
    get_args,
    get_origin,
    overload,
)
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError
from returns.result import Failure, Result, Success

from .._args import need
from .._decode import decode_json, model_name, model_problem, validation_problems
from .._errors import ConfigError, InvalidRequestError, RequestError

if TYPE_CHECKING:
    from .._client import AsyncClient, RequestOptions

__all__ = [
    "BoundEndpoint",
    "DeclaredEndpoint",
    "ServiceClient",
    "delete",
    "endpoint",
    "get",
    "patch",
    "post",
    "put",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Result[Any, Any]]])

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_QUERY_MODEL_NAMES = frozenset({"query", "params"})
_SLOT = "__httprail_endpoint__"


class ServiceClient:
    """Base class of a typed client for one service, built on an :class:`~httprail.AsyncClient`.

    Declare endpoints with :func:`get`, :func:`post`, :func:`put`, :func:`patch`, :func:`delete`
    (or :func:`endpoint`) and :func:`~httprail.services.paginated`; build it over a client
    (``Users(client)``): every call goes through that client's base URL, stack and settings.
    The client stays the caller's to close.
    """

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        frame = sys._getframe(1)
        while frame.f_back is not None and frame.f_code.co_name == "__init_subclass__":
            frame = frame.f_back
        local = {**frame.f_locals, **vars(cls), cls.__name__: cls}
        for name, value in vars(cls).items():
            slot = getattr(value, _SLOT, None)
            if isinstance(slot, _Slot):
                slot.compile(cls, name, local)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client!r})"


@dataclass(frozen=True, slots=True)
class _Route:
    """``METHOD /path/{name}`` taken apart, checked once."""

    method: str
    template: str
    names: tuple[str, ...]

    @classmethod
    def parse(cls, method: str, template: str, where: str) -> _Route:
        method = method.upper()
        if method not in _METHODS:
            raise ConfigError(f"{where}: unknown HTTP method {method!r}")
        names = tuple(_PLACEHOLDER.findall(template))
        bad = [n for n in names if not n.isidentifier()]
        if bad or "{" in _PLACEHOLDER.sub("", template) or "}" in _PLACEHOLDER.sub("", template):
            raise ConfigError(f"{where}: path template {template!r} has a malformed placeholder")
        return cls(method, template, names)

    def path(self, values: Mapping[str, Any], where: str) -> Result[str, RequestError]:
        """The template filled in; each value percent-encoded as one path segment's text (a
        ``/`` cannot add a segment, a value of ``.`` or ``..`` cannot climb out of the path)."""
        segments = []
        for segment in self.template.split("/"):
            if "{" not in segment:
                segments.append(segment)
                continue
            parts = _PLACEHOLDER.split(segment)  # literal, name, literal, name, ..., literal
            for index in range(1, len(parts), 2):
                text = _text(values[parts[index]])
                if text == "":
                    problem = f"{where}: path parameter {parts[index]!r} is empty"
                    return Failure(InvalidRequestError(problem))
                parts[index] = quote(text, safe="")
            filled = "".join(parts)
            segments.append(filled.replace(".", "%2E") if filled.strip(".") == "" else filled)
        return Success("/".join(segments))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    kind: str  # "path" | "query" | "query_model" | "body"
    adapter: TypeAdapter[Any]


@dataclass(frozen=True, slots=True)
class _Call:
    """What one call sends: the path, the query, the JSON body (or ``None``), the options."""

    path: str
    query: dict[str, Any]
    body: Any
    has_body: bool


def _bind(
    route: _Route, params: tuple[_Param, ...], arguments: Mapping[str, Any], where: str
) -> Result[_Call, RequestError]:
    """Validate the arguments with pydantic and place them: path, query or JSON body."""
    dumped: dict[str, Any] = {}
    query: dict[str, Any] = {}
    body: Any = None
    has_body = False
    for param in params:
        try:
            value = param.adapter.validate_python(arguments[param.name])
        except ValidationError as exc:
            kinds = ", ".join(sorted({str(p["type"]) for p in validation_problems(exc)}))
            return Failure(InvalidRequestError(f"{where}: argument {param.name!r} ({kinds})"))
        if param.kind == "body":
            body, has_body = param.adapter.dump_python(value, mode="json", by_alias=True), True
        elif param.kind == "query_model":
            if value is not None:
                query.update(
                    param.adapter.dump_python(value, mode="json", by_alias=True, exclude_none=True)
                )
        else:
            plain = param.adapter.dump_python(value, mode="json")
            if param.kind == "path":
                dumped[param.name] = plain
            elif plain is not None:
                query[param.name] = plain
    return route.path(dumped, where).map(lambda path: _Call(path, query, body, has_body))


def _decoded(outcome: Result[httpx.Response, RequestError], response: Any) -> Result[Any, Any]:
    """The response as the declared type: the body validated, ``None``, or the response."""
    if response is httpx.Response:
        return outcome
    if response is None or response is type(None):
        return outcome.map(lambda _: None)
    return outcome.bind(lambda answer: decode_json(answer, response))


def _options(
    call: _Call, defaults: Mapping[str, Any], options: Mapping[str, Any]
) -> dict[str, Any]:
    """The client options of one call: declared defaults, then the caller's, then what the
    arguments say (query parameters added to ``params``, the body as ``json``)."""
    merged: dict[str, Any] = {**defaults, **options}
    if "headers" in defaults and "headers" in options:
        merged["headers"] = {**dict(defaults["headers"] or {}), **dict(options["headers"] or {})}
    if "params" in defaults and "params" in options:
        merged["params"] = _query(defaults["params"], options["params"])
    if call.query:
        merged["params"] = _query(merged.get("params"), call.query)
    if call.has_body:
        merged["json"] = call.body
    return merged


def _query(first: Any, then: Any) -> Any:
    """``then``'s query parameters added to ``first``'s (a key in ``then`` replaces its
    values; repeated keys kept), as the client adds a call's to its own; what httpx cannot read
    is passed on as it is, for the client to refuse."""
    try:
        query = httpx.QueryParams(first)
    except (TypeError, ValueError, AttributeError, LookupError):
        return first
    try:
        return query.merge(then)
    except (TypeError, ValueError, AttributeError, LookupError):
        return then


async def _send(
    client: AsyncClient,
    route: _Route,
    call: _Call,
    defaults: Mapping[str, Any],
    options: Mapping[str, Any],
) -> Result[httpx.Response, RequestError]:
    return await client.request(route.method, call.path, **_options(call, defaults, options))


class _Slot:
    """A declared method: its route and options at decoration, its plan at class creation."""

    def __init__(self, func: Callable[..., Any], route: _Route, options: Mapping[str, Any]):
        self.func = func
        self.route = route
        self.options = dict(options)
        self.where = func.__qualname__
        self.signature = inspect.signature(func)
        self.params: tuple[_Param, ...] = ()
        self.response: Any = None
        self.options_name: str | None = None
        self.compiled = False

    def compile(self, owner: type, name: str, local: Mapping[str, Any]) -> None:
        self.where = f"{owner.__name__}.{name}"
        try:
            hints = _hints(self.func, local)
        except (NameError, TypeError, AttributeError, SyntaxError) as exc:
            raise ConfigError(f"{self.where}: cannot read its annotations: {exc}") from None
        self.response = self._response(hints.get("return", inspect.Parameter.empty))
        self.params = self._params(hints)
        self.compiled = True

    def _response(self, annotation: Any) -> Any:
        args = get_args(annotation)
        if get_origin(annotation) is not Result or len(args) != 2:
            raise ConfigError(
                f"{self.where}: the return annotation must be Result[Model, RequestError], "
                f"got {model_name(annotation)}"
            )
        error = args[1]
        if not (isinstance(error, type) and issubclass(RequestError, error)):
            raise ConfigError(
                f"{self.where}: the error type of Result[...] must be RequestError or a base "
                f"of it, got {model_name(error)}"
            )
        return args[0]

    def _params(self, hints: Mapping[str, Any]) -> tuple[_Param, ...]:
        found: list[_Param] = []
        listed = list(self.signature.parameters.values())[1:]  # after self
        names = {p.name for p in listed if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        missing = [n for n in self.route.names if n not in names]
        if missing:
            raise ConfigError(
                f"{self.where}: path parameter {{{missing[0]}}} of {self.route.template!r} is "
                "not a parameter of the method"
            )
        bodies = []
        for param in listed:
            if param.kind is param.VAR_POSITIONAL:
                raise ConfigError(f"{self.where}: *{param.name} is not supported")
            if param.kind is param.VAR_KEYWORD:
                self.options_name = param.name  # **options: passed on to the client
                continue
            annotation = hints.get(param.name, Any)
            is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
            if param.name in self.route.names:
                kind = "path"
            elif is_model and param.name in _QUERY_MODEL_NAMES:
                kind = "query_model"
            elif param.name == "body" or is_model:
                kind = "body"
                bodies.append(param.name)
            else:
                kind = "query"
            found.append(_Param(param.name, kind, TypeAdapter(annotation)))
        if len(bodies) > 1:
            raise ConfigError(f"{self.where}: more than one body parameter: {', '.join(bodies)}")
        return tuple(found)

    def arguments(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[dict[str, Any], Mapping[str, Any]]:
        if not self.compiled:
            raise ConfigError(f"{self.where} is declared outside a ServiceClient subclass")
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        options = bound.arguments.pop(self.options_name, {}) if self.options_name else {}
        return bound.arguments, options


def _hints(func: Callable[..., Any], local: Mapping[str, Any]) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(func, func.__globals__, dict(local), include_extras=False)


def _declare(method: str, path: str, options: Mapping[str, Any]) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        slot = _Slot(func, _Route.parse(method, path, func.__qualname__), options)

        async def call(*args: Any, **kwargs: Any) -> Result[Any, Any]:
            arguments, extra = slot.arguments(args, kwargs)
            service: ServiceClient = arguments["self"]
            bound = _bind(slot.route, slot.params, arguments, slot.where)
            if isinstance(bound, Failure):
                return bound
            sent = await _send(service.client, slot.route, bound.unwrap(), slot.options, extra)
            return _decoded(sent, slot.response)

        return cast("F", _wrapped(call, func, slot))

    return decorate


def _wrapped(call: Callable[..., Any], func: Callable[..., Any], slot: _Slot) -> Any:
    """``call`` dressed as ``func`` (name, doc, ``__wrapped__``), carrying its declaration."""
    functools.update_wrapper(call, func)
    setattr(call, _SLOT, slot)
    return call


def get(path: str, **options: Unpack[RequestOptions]) -> Callable[[F], F]:
    """Declare a ``GET`` endpoint on a :class:`ServiceClient` method.

    Parameters named in the path template (``/users/{id}``) fill it, each percent-encoded as
    one segment; a parameter named ``body``, or annotated with a pydantic model, is the JSON
    body (one at most); a pydantic model named ``query`` or ``params`` is expanded into query
    parameters; every other parameter is a query parameter (``None`` left out). Arguments are
    validated against their annotations first (``Failure(InvalidRequestError)`` naming the
    argument, no value). A ``**options: Unpack[RequestOptions]`` parameter passes per-call
    client options on (``headers``, ``timeout``, ...); ``options`` here are defaults for every
    call. The return annotation's ``Result[T, ...]`` says what the body is read as: a model or
    any type pydantic validates, ``None`` (body ignored) or ``httpx.Response`` (as it came).
    """
    return _declare("GET", path, options)


def post(path: str, **options: Unpack[RequestOptions]) -> Callable[[F], F]:
    """Declare a ``POST`` endpoint (see :func:`get`)."""
    return _declare("POST", path, options)


def put(path: str, **options: Unpack[RequestOptions]) -> Callable[[F], F]:
    """Declare a ``PUT`` endpoint (see :func:`get`)."""
    return _declare("PUT", path, options)


def patch(path: str, **options: Unpack[RequestOptions]) -> Callable[[F], F]:
    """Declare a ``PATCH`` endpoint (see :func:`get`)."""
    return _declare("PATCH", path, options)


def delete(path: str, **options: Unpack[RequestOptions]) -> Callable[[F], F]:
    """Declare a ``DELETE`` endpoint (see :func:`get`)."""
    return _declare("DELETE", path, options)


class DeclaredEndpoint(Generic[T]):
    """An endpoint declared as a class attribute: ``get_user = endpoint("GET /users/{id}",
    response=User)``. Called on an instance with keyword arguments: the template's names fill
    the path, ``body=`` is the JSON body, ``query=`` a mapping or model of query parameters,
    any other keyword a query parameter; returns ``Result[T, RequestError]``."""

    def __init__(self, spec: str, response: Any, options: Mapping[str, Any]) -> None:
        need(isinstance(spec, str), "endpoint", "spec", "a str such as 'GET /users/{id}'", spec)
        if response is not httpx.Response:
            problem = model_problem(response)
            if problem is not None:
                raise ConfigError(f"endpoint {spec!r}: response=...: {problem}")
        method, _, path = spec.strip().partition(" ")
        if not path.strip().startswith("/"):
            raise ConfigError(f"endpoint {spec!r}: expected 'METHOD /path', such as 'GET /users'")
        self.route = _Route.parse(method, path.strip(), f"endpoint {spec!r}")
        self.response = response
        self.options = dict(options)
        self.where = f"endpoint {spec!r}"

    def __set_name__(self, owner: type, name: str) -> None:
        self.where = f"{owner.__name__}.{name}"

    @overload
    def __get__(self, instance: None, owner: type) -> DeclaredEndpoint[T]: ...
    @overload
    def __get__(self, instance: ServiceClient, owner: type) -> BoundEndpoint[T]: ...
    def __get__(self, instance: ServiceClient | None, owner: type) -> Any:
        return self if instance is None else BoundEndpoint(self, instance.client)

    async def call(
        self, client: AsyncClient, /, *, body: Any = None, query: Any = None, **values: Any
    ) -> Result[T, RequestError]:
        """Send it with ``client`` (what a bound endpoint does with its service's client)."""
        missing = [n for n in self.route.names if n not in values]
        if missing:
            raise TypeError(f"{self.where}() missing path argument {missing[0]!r}")
        params = {k: v for k, v in values.items() if k not in self.route.names}
        if isinstance(query, BaseModel):
            query = query.model_dump(mode="json", by_alias=True, exclude_none=True)
        params.update(query or {})
        path = self.route.path({n: values[n] for n in self.route.names}, self.where)
        if isinstance(path, Failure):
            return path
        if isinstance(body, BaseModel):
            body = body.model_dump(mode="json", by_alias=True)
        query = {k: v for k, v in params.items() if v is not None}
        call = _Call(path.unwrap(), query, body, body is not None)
        sent = await _send(client, self.route, call, self.options, {})
        return _decoded(sent, self.response)


class BoundEndpoint(Generic[T]):
    """A :class:`DeclaredEndpoint` read from a service: awaitable with keyword arguments."""

    __slots__ = ("client", "endpoint")

    def __init__(self, endpoint: DeclaredEndpoint[T], client: AsyncClient) -> None:
        self.endpoint = endpoint
        self.client = client

    async def __call__(
        self, *, body: Any = None, query: Any = None, **values: Any
    ) -> Result[T, RequestError]:
        return await self.endpoint.call(self.client, body=body, query=query, **values)


@overload
def endpoint(
    spec: str, *, response: type[T], **options: Unpack[RequestOptions]
) -> DeclaredEndpoint[T]: ...
@overload
def endpoint(
    spec: str, *, response: None = None, **options: Unpack[RequestOptions]
) -> DeclaredEndpoint[httpx.Response]: ...
def endpoint(spec: str, *, response: Any = None, **options: Unpack[RequestOptions]) -> Any:
    """An endpoint as a class attribute of a :class:`ServiceClient`:
    ``get_user = endpoint("GET /users/{id}", response=User)``; ``await users.get_user(id=7)``
    returns ``Result[User, RequestError]``. Without ``response`` the result is the response
    itself. ``options`` are client options for every call (``headers``, ``timeout``, ...).
    A malformed spec is a ``ConfigError`` at once."""
    return DeclaredEndpoint(spec, httpx.Response if response is None else response, options)
