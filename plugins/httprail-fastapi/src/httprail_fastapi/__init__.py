"""FastAPI integration for httprail.

- :func:`httprail_lifespan` opens clients and a service registry with the app and closes them
  with it (``app.state.httprail``).
- :func:`client_dep`, :func:`service_dep`, :func:`registry_dep`: dependencies that hand a
  route a client, a typed service or the registry.
- :func:`health_router`: ``/health/live`` and ``/health/ready`` (503 when not ready).
- :func:`failure_response`, :func:`respond`, :func:`add_failure_handlers`: Failures as 502 /
  503 (with ``Retry-After``) / 504 responses, with a redacted JSON body.
- :func:`proxy_stream`, :func:`stream_response`, :func:`sse_response`: streaming proxies that
  own the upstream stream and close it when the downstream client disconnects.

Example:
    >>> lifespan = httprail_lifespan(registry=ServiceRegistry.from_env)  # doctest: +SKIP
    >>> app = FastAPI(lifespan=lifespan)  # doctest: +SKIP
    >>> app.include_router(health_router())  # doctest: +SKIP
"""

from ._depends import client_dep, registry_dep, service_dep
from ._health import health_report, health_router
from ._lifespan import HttprailState, Registry, httprail_lifespan, state_of
from ._responses import (
    DEFAULT_PASSTHROUGH,
    add_failure_handlers,
    failure_response,
    failure_status,
    respond,
)
from ._stream import (
    FORWARDED_HEADERS,
    OwnedStreamResponse,
    proxy_stream,
    sse_response,
    stream_response,
)

__all__ = [
    "DEFAULT_PASSTHROUGH",
    "FORWARDED_HEADERS",
    "HttprailState",
    "OwnedStreamResponse",
    "Registry",
    "add_failure_handlers",
    "client_dep",
    "failure_response",
    "failure_status",
    "health_report",
    "health_router",
    "httprail_lifespan",
    "proxy_stream",
    "registry_dep",
    "respond",
    "service_dep",
    "sse_response",
    "state_of",
    "stream_response",
]
