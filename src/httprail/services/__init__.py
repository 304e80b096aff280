"""Services, not just URLs (see ``docs/services.md``).

A registry of named services from the environment or a stack file, each with its own client,
several endpoints with balancing and outlier ejection, and active health checks
(``ServiceRegistry``). Typed service clients: ``ServiceClient`` and the endpoint decorators
(``get``, ``post``, ``put``, ``patch``, ``delete``, ``endpoint``) describe a service's endpoints
with pydantic models; calls return ``Result[Model, RequestError]``. Pagination: ``paginate``
(and ``@paginated`` on a typed client) iterates the items of every page as Results, in the
``PageNumber``, ``Offset``, ``Cursor`` or ``LinkHeader`` style; ``collect`` gathers them.
"""

from ._balancer import BalancedTerminal, Balancer, Endpoint, EndpointState
from ._checks import HealthChecker
from ._config import BalancerOptions, HealthCheck, Policy, ServiceConfig
from ._paginate import (
    Cursor,
    LinkHeader,
    Offset,
    PageNumber,
    PageStyle,
    collect,
    paginate,
    paginated,
)
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
    "Cursor",
    "DeclaredEndpoint",
    "Endpoint",
    "EndpointHealth",
    "EndpointState",
    "HealthCheck",
    "HealthChecker",
    "LinkHeader",
    "Offset",
    "PageNumber",
    "PageStyle",
    "Policy",
    "RegistryHealth",
    "ServiceClient",
    "ServiceConfig",
    "ServiceHealth",
    "ServiceRegistry",
    "ServiceStatus",
    "collect",
    "delete",
    "endpoint",
    "get",
    "paginate",
    "paginated",
    "patch",
    "post",
    "put",
]
