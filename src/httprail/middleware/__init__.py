"""The built-in middleware stages, one module each.

Recommended order, outermost first::

    Logging → Metrics → Timeout(total) → [Redirects →] Retry → CircuitBreaker → Auth
        → Timeout(attempt) → terminal
"""

from ._auth import ApiKeyAuth, BasicAuth, BearerAuth, TokenProvider, auth
from ._bulkhead import Bulkhead
from ._circuit_breaker import BreakerRecord, CircuitBreaker
from ._defaults import default_plugins
from ._hedge import HEDGE_EXTENSION, Hedge, HedgeStats
from ._logging import Logging
from ._metrics import DEFAULT_BUCKETS, Histogram, Metrics, MetricsSnapshot, UpstreamMetrics
from ._otel import OpenTelemetry
from ._rate_limit import RateLimiter, RateLimitSnapshot
from ._redirects import CREDENTIALS_EXTENSION, REDIRECT_STATUSES, Redirects
from ._request_id import RequestId, request_id_of
from ._retry import (
    IDEMPOTENT_METHODS,
    NO_RETRY_EXTENSION,
    RETRY_STATUSES_EXTENSION,
    Retry,
    RetryState,
    RetryVeto,
)
from ._retry_budget import RetryBudget, RetryBudgetSnapshot
from ._timeout import Timeout

__all__ = [
    "CREDENTIALS_EXTENSION",
    "DEFAULT_BUCKETS",
    "HEDGE_EXTENSION",
    "IDEMPOTENT_METHODS",
    "NO_RETRY_EXTENSION",
    "REDIRECT_STATUSES",
    "RETRY_STATUSES_EXTENSION",
    "ApiKeyAuth",
    "BasicAuth",
    "BearerAuth",
    "BreakerRecord",
    "Bulkhead",
    "CircuitBreaker",
    "Hedge",
    "HedgeStats",
    "Histogram",
    "Logging",
    "Metrics",
    "MetricsSnapshot",
    "OpenTelemetry",
    "RateLimitSnapshot",
    "RateLimiter",
    "Redirects",
    "RequestId",
    "Retry",
    "RetryBudget",
    "RetryBudgetSnapshot",
    "RetryState",
    "RetryVeto",
    "Timeout",
    "TokenProvider",
    "UpstreamMetrics",
    "auth",
    "default_plugins",
    "request_id_of",
]
