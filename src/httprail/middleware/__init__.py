"""The built-in middleware stages, one module each.

Recommended order, outermost first::

    Logging → Metrics → Timeout(total) → Retry → CircuitBreaker → Auth → Timeout(attempt) → terminal
"""

from ._auth import ApiKeyAuth, BasicAuth, BearerAuth, TokenProvider, auth
from ._circuit_breaker import CircuitBreaker
from ._defaults import default_plugins
from ._logging import Logging
from ._metrics import DEFAULT_BUCKETS, Histogram, Metrics, MetricsSnapshot, UpstreamMetrics
from ._retry import IDEMPOTENT_METHODS, NO_RETRY_EXTENSION, Retry, RetryState, RetryVeto
from ._timeout import Timeout

__all__ = [
    "DEFAULT_BUCKETS",
    "IDEMPOTENT_METHODS",
    "NO_RETRY_EXTENSION",
    "ApiKeyAuth",
    "BasicAuth",
    "BearerAuth",
    "CircuitBreaker",
    "Histogram",
    "Logging",
    "Metrics",
    "MetricsSnapshot",
    "Retry",
    "RetryState",
    "RetryVeto",
    "Timeout",
    "TokenProvider",
    "UpstreamMetrics",
    "auth",
    "default_plugins",
]
