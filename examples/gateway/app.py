"""The gateway: a FastAPI app over two typed services, configured only from the environment.

- ``catalog``: a paginated listing (``GET /items?page=N`` answers ``{"items": [...],
  "next_page": N + 1 | null}``) and an event stream (``GET /events``, SSE);
- ``quotes``: a flaky service (``GET /quote``).

Both come from ``HTTP_SERVICES__<NAME>__...`` variables (``ServiceRegistry.from_env``), read
when the app starts. Routes:

- ``GET /items``: every catalog item, page after page (``?limit=`` caps how many);
- ``GET /quote``: a quote, or 502/503/504 when the quotes service fails (503 with
  ``Retry-After`` while its circuit is open);
- ``GET /events``: the catalog's event stream, closed upstream as soon as the caller leaves;
- ``GET /health/live``, ``GET /health/ready``: liveness, and readiness per service.

Run it with ``uvicorn examples.gateway.app:app`` (the variables set), or ``python -m
examples.gateway`` which also starts two demo upstreams.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Query, Response
from httprail_fastapi import (
    add_failure_handlers,
    client_dep,
    health_router,
    httprail_lifespan,
    proxy_stream,
    respond,
    service_dep,
)
from pydantic import BaseModel

from httprail import AsyncClient, Failure, RequestError, Result, Success
from httprail.services import ServiceClient, ServiceRegistry, get


class Item(BaseModel):
    id: int
    name: str


class ItemPage(BaseModel):
    items: list[Item]
    next_page: int | None = None


class Quote(BaseModel):
    text: str


class Catalog(ServiceClient):
    """The paginated service."""

    @get("/items")
    async def page(self, page: int = 1) -> Result[ItemPage, RequestError]:
        raise NotImplementedError  # the decorator sends the request

    async def all_items(self, limit: int) -> Result[list[Item], RequestError]:
        """Every item, following ``next_page`` until it is null or ``limit`` items are in."""
        items: list[Item] = []
        number: int | None = 1
        while number is not None and len(items) < limit:
            match await self.page(page=number):
                case Success(found):
                    items.extend(found.items)
                    number = found.next_page
                case Failure(error):
                    return Failure(error)
        return Success(items[:limit])


class Quotes(ServiceClient):
    """The flaky service."""

    @get("/quote")
    async def random(self) -> Result[Quote, RequestError]:
        raise NotImplementedError  # the decorator sends the request


app = FastAPI(
    title="httprail gateway example",
    lifespan=httprail_lifespan(registry=ServiceRegistry.from_env),
)
add_failure_handlers(app)
app.include_router(health_router())

CatalogService = Annotated[Catalog, Depends(service_dep(Catalog, "catalog"))]
QuotesService = Annotated[Quotes, Depends(service_dep(Quotes, "quotes"))]
CatalogClient = Annotated[AsyncClient, Depends(client_dep("catalog"))]


@app.get("/items")
async def items(catalog: CatalogService, limit: Annotated[int, Query(ge=1)] = 1000) -> Response:
    return respond(await catalog.all_items(limit))


@app.get("/quote")
async def quote(quotes: QuotesService) -> Response:
    return respond(await quotes.random())


@app.get("/events")
async def events(catalog: CatalogClient) -> Response:
    return await proxy_stream(catalog, "GET", "/events")
