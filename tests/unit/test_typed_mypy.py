"""mypy --strict sees a typed service's calls as written, with no mypy plugin: the call's
``Result[User, RequestError]``, the value and error through ``match`` class patterns, and a
wrong argument type as an error."""

from __future__ import annotations

import re
from pathlib import Path

from mypy import api

SOURCE = """
from __future__ import annotations

from pydantic import BaseModel

from httprail import AsyncClient, Failure, RequestError, Result, StatusError, Success
from httprail.services import ServiceClient, endpoint, get, post


class User(BaseModel):
    id: int
    name: str


class NewUser(BaseModel):
    name: str


class Users(ServiceClient):
    @get("/users/{id}")
    async def get_user(self, id: int) -> Result[User, RequestError]:
        raise NotImplementedError

    @post("/users")
    async def create_user(self, body: NewUser) -> Result[User, RequestError]:
        raise NotImplementedError

    @get("/users")
    async def list_users(self, page: int = 1) -> Result[list[User], RequestError]:
        raise NotImplementedError

    find = endpoint("GET /users/{id}", response=User)


async def use(client: AsyncClient) -> str:
    users = Users(client)
    outcome = await users.get_user(7)
    reveal_type(outcome)  # 1
    reveal_type(outcome.map(lambda user: user.name))  # 2
    reveal_type(await users.list_users(page=2))  # 3
    reveal_type(await users.find(id=1))  # 4
    reveal_type(await users.create_user(NewUser(name="a")))  # 5
    match outcome:
        case Success(User() as user):
            reveal_type(user)  # 6
            return user.name
        case Failure(StatusError(status_code=404) as missing):
            reveal_type(missing)  # 7
        case Failure(RequestError() as error):
            reveal_type(error)  # 8
    await users.get_user("seven")
    await users.create_user({"name": "a"})
    return ""
"""

EXPECTED_TYPES = [
    "returns.result.Result[snippet.User, httprail._errors.RequestError]",
    "returns.result.Result[builtins.str, httprail._errors.RequestError]",
    "returns.result.Result[builtins.list[snippet.User], httprail._errors.RequestError]",
    "returns.result.Result[snippet.User, httprail._errors.RequestError]",
    "returns.result.Result[snippet.User, httprail._errors.RequestError]",
    "snippet.User",
    "httprail._errors.StatusError",
    "httprail._errors.RequestError",
]


def test_mypy_strict_sees_the_declared_types_without_a_plugin(tmp_path: Path) -> None:
    """Revealed types are the declared ones; a str for an int id and a dict for a model body
    are errors (mypy run with ``--strict`` and no config, so no returns or pydantic plugin)."""
    (tmp_path / "snippet.py").write_text(SOURCE, encoding="utf-8")
    (tmp_path / "none.ini").write_text("[mypy]\n", encoding="utf-8")
    stdout, stderr, _ = api.run(
        [
            "--strict",
            "--config-file",
            str(tmp_path / "none.ini"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--hide-error-context",
            "--no-pretty",
            str(tmp_path / "snippet.py"),
        ]
    )
    revealed = re.findall(r'Revealed type is "(.+?)"', stdout)
    # mypy prints list[...] and str as builtins.* in some versions and bare in others
    normal = [re.sub(r"\bbuiltins\.", "", t) for t in revealed]
    assert normal == [re.sub(r"\bbuiltins\.", "", t) for t in EXPECTED_TYPES], stdout + stderr
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, stdout
    assert 'incompatible type "str"; expected "int"' in errors[0]
    assert 'incompatible type "dict[str, str]"; expected "NewUser"' in errors[1]
