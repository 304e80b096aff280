"""What ``ServiceRegistry.health()`` reports: per service, its endpoints and its upstreams."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .._health import HealthSnapshot

__all__ = ["EndpointHealth", "RegistryHealth", "ServiceHealth", "ServiceStatus"]

ServiceStatus = Literal["ready", "degraded", "down"]


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """One endpoint of a service.

    Attributes:
        url: the endpoint (credentials redacted).
        state: ``healthy``; ``unhealthy`` (its health checks fail: skipped unless every
            endpoint is); ``ejected`` (outlier detection took it out for a while).
        ejected_for: seconds until it comes back, when ejected.
        last_check: when its health URL was last probed (ISO 8601, UTC), if ever.
    """

    url: str
    state: Literal["healthy", "unhealthy", "ejected"]
    ejected_for: float | None = None
    last_check: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable."""
        return {
            "url": self.url,
            "state": self.state,
            "ejected_for": self.ejected_for,
            "last_check": self.last_check,
        }


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """One service.

    Attributes:
        name: the service's name.
        status: ``down`` when no endpoint is healthy; ``degraded`` when some endpoint is not,
            or a circuit of its client is open or half-open; ``ready`` otherwise.
        endpoints: each endpoint's state.
        upstreams: the client's own health snapshot (breakers, budget, latency), when the
            client offers one (``AsyncClient.health()``).
    """

    name: str
    status: ServiceStatus
    endpoints: tuple[EndpointHealth, ...]
    upstreams: HealthSnapshot | None = None

    @property
    def ready(self) -> bool:
        """Whether the service takes traffic as it should (``status == "ready"``)."""
        return self.status == "ready"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable."""
        upstreams = self.upstreams
        return {
            "name": self.name,
            "status": self.status,
            "endpoints": [e.to_dict() for e in self.endpoints],
            "upstreams": None if upstreams is None else upstreams.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class RegistryHealth:
    """Every service of a registry.

    Attributes:
        services: by name.
    """

    services: Mapping[str, ServiceHealth]

    @property
    def status(self) -> ServiceStatus:
        """``ready`` when every service is, ``down`` when every one is (and there is one),
        ``degraded`` otherwise."""
        statuses = {s.status for s in self.services.values()}
        if statuses <= {"ready"}:
            return "ready"
        if statuses == {"down"}:
            return "down"
        return "degraded"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable."""
        return {
            "status": self.status,
            "services": {name: s.to_dict() for name, s in self.services.items()},
        }
