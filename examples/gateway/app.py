"""The gateway: a FastAPI app over two typed services, configured only from the environment.

- ``catalog``: a paginated listing (``GET /items?page=N`` answers ``{"items": [...]}``, an
  empty list after the last page) and an event stream (``GET /events``, SSE);
- ``quotes``: a flaky service (``GET /quote``).

Both come from ``HTTP_SERVICES__<NAME>__...`` variables (``ServiceRegistry.from_env``), read
when the app starts. Routes:

- ``GET /items``: every catalog item, page after page (``httprail.services.paginate``;
  ``?limit=`` caps how many);
- ``GET /quote``: a quote, or 502/503/504 when the quotes service fails (503 with
  ``Retry-After`` while its circuit is open);
- ``GET /events``: the catalog's event stream, closed upstream as soon as the caller leaves;
- ``GET /health/live``, ``GET /health/ready``: liveness, and readiness per service.

Run it with ``uvicorn examples.gateway.app:app`` (the variables set), or ``python -m
examples.gateway`` which also starts two demo upstreams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, ClassVar

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

from httprail import AsyncClient, RequestError, Result
from httprail.services import PageNumber, ServiceClient, ServiceRegistry, collect, get, paginate


class Item(BaseModel):
    id: int
    name: str


class Quote(BaseModel):
    text: str


class Catalog(ServiceClient):
    """The paginated service: ``GET /items?page=N`` answers ``{"items": [...], ...}``, an empty
    list after the last page."""

    PAGES: ClassVar[PageNumber] = PageNumber(size_param=None, items="items")

    def all_items(self, limit: int) -> AsyncIterator[Result[Item, RequestError]]:
        """Every item, page after page (each validated as ``Item``), at most ``limit``."""
        return paginate(self.client, "/items", style=self.PAGES, item=Item, max_items=limit)


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
    return respond(await collect(catalog.all_items(limit)))


@app.get("/quote")
async def quote(quotes: QuotesService) -> Response:
    return respond(await quotes.random())


@app.get("/events")
async def events(catalog: CatalogClient) -> Response:
    return await proxy_stream(catalog, "GET", "/events")
