"""Services, not just URLs (see ``docs/services.md``).

A registry of named services from the environment or a stack file, each with its own client,
several endpoints with balancing and outlier ejection, and active health checks
(``ServiceRegistry``). Typed service clients: ``ServiceClient`` and the endpoint decorators
(``get``, ``post``, ``put``, ``patch``, ``delete``, ``endpoint``) describe a service's endpoints
with pydantic models; calls return ``Result[Model, RequestError]``.
"""

from ._balancer import BalancedTerminal, Balancer, Endpoint, EndpointState
from ._checks import HealthChecker
from ._config import BalancerOptions, HealthCheck, Policy, ServiceConfig
from ._registry import ServiceRegistry
from ._status import EndpointHealth, RegistryHealth, ServiceHealth, ServiceStatus
from ._typed import (
    BoundEndpoint,
    DeclaredEndpoint,
    ServiceClient,
    delete,
    endpoint,
    get,
    patch,
    post,
    put,
)

__all__ = [
    "BalancedTerminal",
    "Balancer",
    "BalancerOptions",
    "BoundEndpoint",
    "DeclaredEndpoint",
    "Endpoint",
    "EndpointHealth",
    "EndpointState",
    "HealthCheck",
    "HealthChecker",
    "Policy",
    "RegistryHealth",
    "ServiceClient",
    "ServiceConfig",
    "ServiceHealth",
    "ServiceRegistry",
    "ServiceStatus",
    "delete",
    "endpoint",
    "get",
    "patch",
    "post",
    "put",
]
