"""Dependencies that hand a route a client or a typed service from the app's lifespan.

Example:
    >>> Users = Annotated[UserService, Depends(service_dep(UserService, "user"))]  # doctest: +SKIP
    >>> @app.get("/users/{user_id}")  # doctest: +SKIP
    ... async def user(user_id: int, users: Users) -> Response:
    ...     return respond(await users.get_user(id=user_id))
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from httprail import AsyncClient, redact_text
from returns.result import Failure

from ._lifespan import Registry, state_of

__all__ = ["client_dep", "registry_dep", "service_dep"]

S = TypeVar("S")


def client_dep(name: str) -> Callable[[Request], Awaitable[AsyncClient]]:
    """A dependency giving the client called ``name`` (from ``clients=`` or the registry).

    An unknown name answers 500 (the app is misconfigured), with the known names.
    """

    async def client(request: Request) -> AsyncClient:
        return _client(request, name)

    return client


def service_dep(cls: type[S], name: str) -> Callable[[Request], Awaitable[S]]:
    """A dependency giving ``cls(client)`` over the client called ``name``, built once per app.

    ``cls`` is a typed service (``httprail.services.ServiceClient`` subclass) or anything
    built from one ``AsyncClient``.
    """

    async def service(request: Request) -> S:
        state = state_of(request)
        key = (cls, name)
        found: S | None = state.services.get(key)
        if found is None:
            found = state.services[key] = cls(_client(request, name))  # type: ignore[call-arg]
        return found

    return service


def registry_dep() -> Callable[[Request], Awaitable[Registry]]:
    """A dependency giving the app's service registry (500 when the lifespan has none)."""

    async def registry(request: Request) -> Registry:
        found = state_of(request).registry
        if found is None:
            raise HTTPException(500, detail="httprail_lifespan(registry=...) was not given")
        return found

    return registry


def _client(request: Request, name: str) -> AsyncClient:
    outcome = state_of(request).client(name)
    if isinstance(outcome, Failure):
        error: Any = outcome.failure()
        text = getattr(error, "message", str(error))
        raise HTTPException(
            500, detail={"error": type(error).__name__, "message": redact_text(text)}
        )
    client: AsyncClient = outcome.unwrap()
    return client
