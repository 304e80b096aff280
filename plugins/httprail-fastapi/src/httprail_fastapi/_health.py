"""``health_router``: liveness and readiness of the app, from breaker and health-check state.

- ``GET {prefix}/live``: 200 ``{"status": "alive"}`` while the process serves requests.
- ``GET {prefix}/ready`` (and ``GET {prefix}``): every service of the registry
  (``registry.health()``: ``ready`` / ``degraded`` / ``down`` from its endpoints' health checks
  and breakers) and every named client (``client.health()``: ``ok`` is reported as ``ready``),
  and an overall ``status``: ``ready`` when all are ready, ``down`` when all are down (or none
  is known... then it is ``ready``), else ``degraded``.

The answer is 503 when the app is not ready: when the overall status is ``down``, or when a
service named in ``required`` is ``down`` (or unknown). A service that is merely degraded, or
down but not required, keeps the app ready: failing readiness takes the whole instance out of
rotation, and every instance sees the same upstream; routes that need it answer 503 themselves
(:func:`~httprail_fastapi.failure_response`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from httprail import ConfigError

from ._lifespan import HttprailState, state_of

__all__ = ["health_report", "health_router"]

_CLIENT_STATUS = {"ok": "ready"}


def health_router(
    *, prefix: str = "/health", required: Collection[str] = (), include_in_schema: bool = True
) -> APIRouter:
    """A router with ``{prefix}/live``, ``{prefix}/ready`` and ``{prefix}`` (= ready).

    Args:
        prefix: where the routes live.
        required: services (or client names) without which the app is not ready.
        include_in_schema: list the routes in the OpenAPI schema.

    Example:
        >>> app.include_router(health_router(required=["user"]))  # doctest: +SKIP
    """
    needed = _names("health_router", required)
    router = APIRouter(prefix=prefix, tags=["health"], include_in_schema=include_in_schema)

    @router.get("/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    async def ready(request: Request) -> JSONResponse:
        report = await health_report(state_of(request), required=needed)
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    router.add_api_route("/ready", ready, methods=["GET"])
    router.add_api_route("", ready, methods=["GET"])
    return router


async def health_report(state: HttprailState, *, required: Collection[str] = ()) -> dict[str, Any]:
    """The readiness body: ``status``, ``ready``, ``services`` and ``clients`` (JSON-ready).

    Raises:
        ConfigError: ``required`` is not a collection of names (one string is not: it would
            be read as the names of its letters).
    """
    required = _names("health_report", required)
    statuses: dict[str, str] = {}
    services: dict[str, Any] = {}
    clients: dict[str, Any] = {}
    if state.registry is not None:
        health = await state.registry.health()
        for name, service in health.services.items():
            statuses[name] = service.status
            services[name] = service.to_dict()
    for name, client in state.clients.items():
        snapshot = await client.health()
        status = _CLIENT_STATUS.get(snapshot.status, snapshot.status)
        statuses[name] = status
        clients[name] = {**snapshot.to_dict(), "status": status}
    known = set(statuses.values())
    overall = "ready" if known <= {"ready"} else "down" if known == {"down"} else "degraded"
    missing = [name for name in required if statuses.get(name, "down") == "down"]
    report: dict[str, Any] = {
        "status": overall,
        "ready": overall != "down" and not missing,
        "services": services,
        "clients": clients,
    }
    if missing:
        report["required_down"] = missing
    return report


def _names(owner: str, required: object) -> tuple[str, ...]:
    """``required`` as a tuple of service or client names."""
    if (
        isinstance(required, str | bytes)
        or not isinstance(required, Collection)
        or not all(isinstance(name, str) for name in required)
    ):
        raise ConfigError(
            f"{owner}(required=...) must be a collection of service or client names "
            f"(['user'], not 'user'), got {required!r}"
        )
    return tuple(required)
