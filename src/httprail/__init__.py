"""httprail: async HTTP on rails.

Every request travels an ordered chain of middleware stages (logging, metrics, timeout, retry,
circuit breaker, auth, ...) over a pooled client (aiohttp, HTTP/1.1, by default;
``HttpSettings(http2=True)`` picks httpx, which speaks HTTP/2), and every stage returns a
``Result`` instead of raising::

    async with httprail.AsyncClient(base_url="https://api.example.com") as client:
        match await client.get("/users/1"):
            case Success(response): ...
            case Failure(StatusError(status_code=404)): ...
            case Failure(error): ...

The error tree (every error is an ``Exception`` and also a value inside ``Failure``)::

    HttprailError
    ├── RequestError
    │   ├── TransportError
    │   │   ├── ConnectError
    │   │   ├── ReadError
    │   │   ├── WriteError
    │   │   ├── ProtocolError
    │   │   ├── ConnectionRotatedError
    │   │   └── RefusedStreamError
    │   ├── RequestTimeoutError
    │   ├── StatusError
    │   │   ├── ClientStatusError
    │   │   └── ServerStatusError
    │   ├── CircuitBreakerOpenError
    │   ├── BulkheadFullError
    │   ├── RateLimitedError
    │   ├── MaxRetriesExceededError
    │   │   └── RetryBudgetExhaustedError
    │   ├── DecodeError
    │   │   ├── ResponseTooLargeError
    │   │   └── ResponseValidationError
    │   ├── AuthError
    │   ├── InvalidRequestError
    │   ├── PaginationError
    │   ├── ServiceNotFoundError
    │   └── RedirectError
    │       ├── TooManyRedirectsError
    │       └── InsecureRedirectError
    ├── ProviderNotFoundError
    └── ConfigError
"""

from returns.result import Failure, Result, Success

from ._client import AsyncClient
from ._context import RequestContext, get_context, set_context, upstream_of
from ._decode import decode_json
from ._discovery import PluginRegistry, PluginSpec, default_registry
from ._errors import (
    AuthError,
    BulkheadFullError,
    CircuitBreakerOpenError,
    ClientStatusError,
    ConfigError,
    ConnectError,
    ConnectionRotatedError,
    DecodeError,
    HttprailError,
    InsecureRedirectError,
    InvalidRequestError,
    MaxRetriesExceededError,
    PaginationError,
    ProtocolError,
    ProviderNotFoundError,
    RateLimitedError,
    ReadError,
    RedirectError,
    RefusedStreamError,
    RequestError,
    RequestTimeoutError,
    ResponseTooLargeError,
    ResponseValidationError,
    RetryBudgetExhaustedError,
    ServerStatusError,
    ServiceNotFoundError,
    StatusError,
    TimeoutPhase,
    TooManyRedirectsError,
    TransportError,
    WriteError,
)
from ._events import (
    BreakerEvent,
    CircuitState,
    Event,
    HedgeEvent,
    Observer,
    RejectionEvent,
    RetryEvent,
)
from ._health import HealthSnapshot, UpstreamHealth
from ._pipeline import (
    EventObserver,
    MiddlewarePlugin,
    Pipeline,
    RequestResponsePlugin,
    TerminalPlugin,
)
from ._redact import (
    redact_headers,
    redact_text,
    redact_url,
    register_secret,
    register_sensitive_param,
)
from ._result import Next, Outcome
from ._settings import HttpSettings, ProviderOverrides
from ._stack import Stack, StackDeclaration, build_stack, find_stack_file, load_stack_file
from ._sync import Client
from ._unwrap import unwrap
from ._version import __version__
from .middleware._otel import OpenTelemetry

__all__ = [
    "AsyncClient",
    "AuthError",
    "BreakerEvent",
    "BulkheadFullError",
    "CircuitBreakerOpenError",
    "CircuitState",
    "Client",
    "ClientStatusError",
    "ConfigError",
    "ConnectError",
    "ConnectionRotatedError",
    "DecodeError",
    "Event",
    "EventObserver",
    "Failure",
    "HealthSnapshot",
    "HedgeEvent",
    "HttpSettings",
    "HttprailError",
    "InsecureRedirectError",
    "InvalidRequestError",
    "MaxRetriesExceededError",
    "MiddlewarePlugin",
    "Next",
    "Observer",
    "OpenTelemetry",
    "Outcome",
    "PaginationError",
    "Pipeline",
    "PluginRegistry",
    "PluginSpec",
    "ProtocolError",
    "ProviderNotFoundError",
    "ProviderOverrides",
    "RateLimitedError",
    "ReadError",
    "RedirectError",
    "RefusedStreamError",
    "RejectionEvent",
    "RequestContext",
    "RequestError",
    "RequestResponsePlugin",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "Result",
    "RetryBudgetExhaustedError",
    "RetryEvent",
    "ServerStatusError",
    "ServiceNotFoundError",
    "Stack",
    "StackDeclaration",
    "StatusError",
    "Success",
    "TerminalPlugin",
    "TimeoutPhase",
    "TooManyRedirectsError",
    "TransportError",
    "UpstreamHealth",
    "WriteError",
    "__version__",
    "build_stack",
    "decode_json",
    "default_registry",
    "find_stack_file",
    "get_context",
    "load_stack_file",
    "redact_headers",
    "redact_text",
    "redact_url",
    "register_secret",
    "register_sensitive_param",
    "set_context",
    "unwrap",
    "upstream_of",
]
