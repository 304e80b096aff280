"""Typed service clients: declared endpoints build the right requests, decode into the
declared types, and refuse bad declarations when the class is created."""

from __future__ import annotations

import json
import re
from typing import Unpack

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field

from httprail import (
    AsyncClient,
    ClientStatusError,
    ConfigError,
    InvalidRequestError,
    RequestError,
    ResponseValidationError,
    Result,
    Success,
)
from httprail._client import RequestOptions
from httprail.services import ServiceClient, delete, endpoint, get, patch, post, put
from httprail.testing import MockTerminal

CANARY = "sk-canary-7d1f0c2e9b"


class User(BaseModel):
    id: int
    name: str


class NewUser(BaseModel):
    name: str


class Filter(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    status: str | None = None
    per_page: int = Field(default=10, alias="per-page")


class Users(ServiceClient):
    @get("/users/{id}")
    async def get_user(self, id: int) -> Result[User, RequestError]:
        raise NotImplementedError

    @get("/files/{name}.json")
    async def get_file(self, name: str) -> Result[dict[str, int], RequestError]:
        raise NotImplementedError

    @post("/users", headers={"X-Service": "users"})
    async def create_user(
        self, body: NewUser, **options: Unpack[RequestOptions]
    ) -> Result[User, RequestError]:
        raise NotImplementedError

    @get("/users")
    async def list_users(
        self, page: int = 1, limit: int = 50, tag: str | None = None
    ) -> Result[list[User], RequestError]:
        raise NotImplementedError

    @get("/search")
    async def search(self, query: Filter) -> Result[httpx.Response, RequestError]:
        raise NotImplementedError

    @put("/users/{id}")
    async def replace(self, id: int, body: dict[str, str]) -> Result[None, RequestError]:
        raise NotImplementedError

    @patch("/users/{id}/flags/{flag}")
    async def flag(self, id: int, flag: bool) -> Result[None, RequestError]:
        raise NotImplementedError

    @delete("/users/{id}")
    async def remove(self, id: int) -> Result[None, RequestError]:
        raise NotImplementedError

    find = endpoint("GET /users/{id}", response=User)
    raw = endpoint("POST /raw/{key}")


Seen = list[httpx.Request]


@pytest.fixture
def seen() -> Seen:
    return []


@pytest.fixture
def users(seen: Seen) -> Users:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/users" and request.method == "GET":
            return httpx.Response(200, json=[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        if request.url.path.startswith("/api/files/"):
            return httpx.Response(200, json={"size": 3})
        if request.url.path == "/api/users/404":
            return httpx.Response(404, json={"detail": "no"})
        if request.url.path == "/api/users/666":
            return httpx.Response(200, json={"id": "x", "name": CANARY, "token": CANARY})
        return httpx.Response(200, json={"id": 7, "name": "ann"})

    client = AsyncClient("https://svc.test/api", plugins=[], terminal=MockTerminal(answer))
    return Users(client)


async def test_path_params_fill_the_template_and_the_body_model_is_json(
    users: Users, seen: Seen
) -> None:
    """A path parameter fills its placeholder; a model parameter is the JSON body."""
    assert await users.get_user(7) == Success(User(id=7, name="ann"))
    assert (await users.create_user(NewUser(name="ann"))).unwrap().id == 7
    assert str(seen[0].url) == "https://svc.test/api/users/7"
    assert seen[1].method == "POST"
    assert json.loads(seen[1].content) == {"name": "ann"}
    assert seen[1].headers["X-Service"] == "users"


async def test_other_parameters_are_query_params_and_none_is_left_out(
    users: Users, seen: Seen
) -> None:
    """Parameters not in the template are query parameters (defaults sent, None dropped)."""
    listed = await users.list_users(page=2)
    assert listed.unwrap() == [User(id=1, name="a"), User(id=2, name="b")]
    assert seen[0].url.params == httpx.QueryParams({"page": "2", "limit": "50"})


async def test_a_query_model_is_expanded_with_its_aliases(users: Users, seen: Seen) -> None:
    """A pydantic model named ``query`` becomes query parameters under its aliases."""
    outcome = await users.search(Filter(status="active"))
    assert isinstance(outcome.unwrap(), httpx.Response)
    assert seen[0].url.params == httpx.QueryParams({"status": "active", "per-page": "10"})


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("../admin", "/api/files/..%2Fadmin.json"),
        ("a/b", "/api/files/a%2Fb.json"),
        ("ü ?#", "/api/files/%C3%BC%20%3F%23.json"),
    ],
)
async def test_path_values_are_percent_encoded(
    users: Users, seen: Seen, value: str, path: str
) -> None:
    """A ``/``, ``?``, ``#`` or non-ASCII text in a value stays inside its segment."""
    assert (await users.get_file(value)).unwrap() == {"size": 3}
    assert seen[0].url.raw_path.decode() == path


@pytest.mark.parametrize(("value", "segment"), [("..", "%2E%2E"), (".", "%2E")])
async def test_a_dot_segment_value_cannot_climb_out_of_the_path(
    value: str, segment: str, seen: Seen
) -> None:
    """An id of ``..`` or ``.`` is sent encoded, so the URL does not collapse to a parent."""

    class Files(ServiceClient):
        @get("/files/{name}")
        async def read(self, name: str) -> Result[httpx.Response, RequestError]:
            raise NotImplementedError

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    files = Files(AsyncClient("https://svc.test/api", plugins=[], terminal=MockTerminal(answer)))
    assert isinstance(await files.read(value), Success)
    assert seen[0].url.raw_path.decode() == f"/api/files/{segment}"


async def test_an_empty_path_value_is_refused_before_sending(users: Users, seen: Seen) -> None:
    """An empty path parameter would address another resource: InvalidRequestError, no call."""
    outcome = await users.get_file("")
    assert isinstance(outcome.failure(), InvalidRequestError)
    assert "'name' is empty" in str(outcome.failure())
    assert seen == []


async def test_arguments_are_validated_and_the_error_names_the_argument_only(
    users: Users, seen: Seen
) -> None:
    """An argument that does not fit its annotation is a Failure naming it, not its value."""
    outcome = await users.get_user(CANARY)  # type: ignore[arg-type]
    error = outcome.failure()
    assert isinstance(error, InvalidRequestError)
    assert "Users.get_user: argument 'id' (int_parsing)" in str(error)
    assert CANARY not in str(error) + repr(error)
    assert seen == []


async def test_a_body_that_does_not_fit_is_a_validation_failure_without_values(
    users: Users,
) -> None:
    """A response that does not fit the model: ResponseValidationError, paths and types only."""
    error = (await users.get_user(666)).failure()
    assert isinstance(error, ResponseValidationError)
    assert "id (int_parsing)" in str(error)
    assert error.errors == ({"loc": ("id",), "type": "int_parsing"},)
    assert CANARY not in str(error) + repr(error) + str(error.errors) + str(error.args)
    assert error.__cause__ is None
    assert error.counts_against_upstream is False


async def test_request_failures_pass_through_untouched(users: Users) -> None:
    """A 404 stays the client's ClientStatusError."""
    assert isinstance((await users.get_user(404)).failure(), ClientStatusError)


async def test_result_none_ignores_the_body_and_bools_are_lowercase(
    users: Users, seen: Seen
) -> None:
    """``Result[None, ...]`` succeeds with None; PUT/PATCH/DELETE send what they declare."""
    assert await users.replace(3, {"name": "b"}) == Success(None)
    assert await users.flag(3, True) == Success(None)
    assert await users.remove(3) == Success(None)
    assert [(r.method, r.url.path) for r in seen] == [
        ("PUT", "/api/users/3"),
        ("PATCH", "/api/users/3/flags/true"),
        ("DELETE", "/api/users/3"),
    ]
    assert json.loads(seen[0].content) == {"name": "b"}


async def test_call_options_reach_the_client_and_merge_with_declared_ones(
    users: Users, seen: Seen
) -> None:
    """``**options`` pass headers per call; the declared headers stay."""
    await users.create_user(NewUser(name="a"), headers={"X-Trace": "1"}, params={"dry": "1"})
    assert seen[0].headers["X-Service"] == "users"
    assert seen[0].headers["X-Trace"] == "1"
    assert seen[0].url.params["dry"] == "1"


async def test_endpoint_attribute_fills_path_query_and_body(users: Users, seen: Seen) -> None:
    """``endpoint("GET /users/{id}", response=User)``: keyword arguments, typed result."""
    assert (await users.find(id=7, tag="x", gone=None)).unwrap() == User(id=7, name="ann")
    raw = await users.raw(key="a/b", body=NewUser(name="z"), query=Filter(status="s"))
    assert isinstance(raw.unwrap(), httpx.Response)
    assert seen[0].url.raw_path == b"/api/users/7?tag=x"
    assert seen[1].url.raw_path == b"/api/raw/a%2Fb?status=s&per-page=10"
    assert json.loads(seen[1].content) == {"name": "z"}
    assert Users.find.route.names == ("id",)


async def test_endpoint_refuses_an_empty_path_value_and_a_missing_one(users: Users) -> None:
    """An empty path value is a Failure; a missing one a TypeError, like any missing argument."""
    assert isinstance((await users.raw(key="")).failure(), InvalidRequestError)
    with pytest.raises(TypeError, match="missing path argument 'key'"):
        await users.raw()


def test_local_models_resolve_from_the_defining_scope() -> None:
    """Annotations naming classes local to a function are resolved at class creation."""

    class Thing(BaseModel):
        n: int

    class Things(ServiceClient):
        @get("/things/{n}")
        async def one(self, n: int) -> Result[Thing, RequestError]:
            raise NotImplementedError

    assert Things.one.__name__ == "one"


def test_a_base_with_its_own_init_subclass_still_reads_local_annotations() -> None:
    """A ServiceClient base that overrides __init_subclass__ passes its subclasses through."""

    class Base(ServiceClient):
        def __init_subclass__(cls, **kwargs: object) -> None:
            super().__init_subclass__(**kwargs)

    class Local(BaseModel):
        n: int

    class Sub(Base):
        @get("/x/{n}")
        async def one(self, n: int) -> Result[Local, RequestError]:
            raise NotImplementedError

    assert Sub.one.__wrapped__.__name__ == "one"  # type: ignore[attr-defined]


def _declare(body: str) -> None:
    namespace: dict[str, object] = {}
    source = (
        "from httprail import Result, RequestError\n"
        "from httprail.services import ServiceClient, get, post, endpoint\n"
        "from pydantic import BaseModel\n"
        "class M(BaseModel):\n    n: int\n" + body
    )
    exec(compile(source, "<declared>", "exec"), namespace)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "class S(ServiceClient):\n    @get('/u/{uid}')\n"
            "    async def one(self, id: int) -> Result[M, RequestError]: ...\n",
            "S.one: path parameter {uid} of '/u/{uid}' is not a parameter of the method",
        ),
        (
            "class S(ServiceClient):\n    @get('/u')\n    async def one(self) -> M: ...\n",
            "S.one: the return annotation must be Result[Model, RequestError], got M",
        ),
        (
            "class S(ServiceClient):\n    @get('/u')\n"
            "    async def one(self) -> Result[M, str]: ...\n",
            "S.one: the error type of Result[...] must be RequestError or a base of it, got str",
        ),
        (
            "class S(ServiceClient):\n    @post('/u')\n"
            "    async def one(self, a: M, body: M) -> Result[M, RequestError]: ...\n",
            "S.one: more than one body parameter: a, body",
        ),
        (
            "class S(ServiceClient):\n    @post('/u')\n"
            "    async def one(self, *a: int) -> Result[M, RequestError]: ...\n",
            "S.one: *a is not supported",
        ),
        (
            "class S(ServiceClient):\n    @get('/u')\n"
            "    async def one(self) -> Result[Missing, RequestError]: ...\n",
            "S.one: cannot read its annotations: name 'Missing' is not defined",
        ),
        (
            "class S(ServiceClient):\n    @get('/u/{a b}')\n"
            "    async def one(self) -> Result[M, RequestError]: ...\n",
            "malformed placeholder",
        ),
        (
            "class S(ServiceClient):\n    @get('/u/{a')\n"
            "    async def one(self) -> Result[M, RequestError]: ...\n",
            "malformed placeholder",
        ),
        ("one = endpoint('FETCH /u', response=M)\n", "unknown HTTP method 'FETCH'"),
        ("one = endpoint('/u', response=M)\n", "expected 'METHOD /path'"),
    ],
)
def test_bad_declarations_are_config_errors_naming_the_method(body: str, message: str) -> None:
    """Each declaration mistake is a ConfigError at class creation naming the method."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        _declare(body)


async def test_a_declared_method_outside_a_service_client_is_a_config_error() -> None:
    """The decorators need the ServiceClient base to read the declaration."""

    class Plain:
        client = None

        @get("/x")
        async def one(self) -> Result[User, RequestError]:
            raise NotImplementedError

    with pytest.raises(ConfigError, match="outside a ServiceClient subclass"):
        await Plain().one()


def test_repr_shows_the_service_and_its_client(users: Users) -> None:
    """repr names the service class and its client."""
    assert repr(users).startswith("Users(AsyncClient(")


def test_query_parameters_of_defaults_options_and_arguments_keep_repeated_keys() -> None:
    """A typed call adds its arguments' query to the caller's ``params`` as the client adds a
    call's to its own: repeated keys kept, a later key replacing (``dict()`` lost repeats and
    refused a query string)."""
    from httprail.services._typed import _query

    assert str(_query([("a", "1"), ("a", "2")], {"b": "3"})) == "a=1&a=2&b=3"
    assert str(_query("a=1&a=2", {"a": "9"})) == "a=9"
    assert str(_query(None, "x=1&x=2")) == "x=1&x=2"
    assert _query(5, {"b": "3"}) == 5  # unreadable: passed on for the client to refuse
    assert _query({"a": "1"}, [""]) == [""]
