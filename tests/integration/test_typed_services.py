"""A typed service against a real server: what the server sees, and a body that does not fit
the model failing without its secret."""

from __future__ import annotations

import json

from pydantic import BaseModel

from httprail import AsyncClient, RequestError, ResponseValidationError, Result
from httprail.services import ServiceClient, get, post
from httprail.testing import ChaosServer, Reply

CANARY = "sk-canary-0f9e8d7c6b5a"


class Account(BaseModel):
    id: int
    owner: str


class NewAccount(BaseModel):
    owner: str


class Accounts(ServiceClient):
    @get("/accounts/{id}")
    async def get_account(self, id: str) -> Result[Account, RequestError]:
        raise NotImplementedError

    @post("/accounts")
    async def open_account(self, body: NewAccount) -> Result[Account, RequestError]:
        raise NotImplementedError


async def test_the_server_sees_encoded_ids_and_the_json_body() -> None:
    """``../admin`` and ``..`` stay one segment under /api/accounts; the body is the model."""
    async with ChaosServer() as server:
        server.script("/api/accounts", Reply.json({"id": 1, "owner": "ann"}))
        async with AsyncClient(f"{server.url}/api", plugins=[]) as client:
            accounts = Accounts(client)
            assert (await accounts.open_account(NewAccount(owner="ann"))).unwrap().id == 1
            await accounts.get_account("../admin")
            await accounts.get_account("..")
    paths = [r.path for r in server.requests]
    assert paths == ["/api/accounts", "/api/accounts/..%2Fadmin", "/api/accounts/%2E%2E"]
    assert json.loads(server.requests[0].body) == {"owner": "ann"}


async def test_a_body_that_does_not_fit_fails_without_showing_its_secret() -> None:
    """The validation Failure names paths and types; the canary in the body appears nowhere."""
    async with ChaosServer() as server:
        server.script("/accounts/7", Reply.json({"id": CANARY, "owner": {"token": CANARY}}))
        async with AsyncClient(server.url) as client:
            outcome = await Accounts(client).get_account("7")
    error = outcome.failure()
    assert isinstance(error, ResponseValidationError)
    assert str(error).startswith(
        "body does not fit Account: 2 problems: id (int_parsing); owner (string_type)"
    )
    shown = str(error) + repr(error) + str(error.errors) + str(error.args) + str(error.__cause__)
    assert CANARY not in shown
    assert server.count("/accounts/7") == 1  # not retried
