"""The retry budget against a real fault server: in a full outage, retries stay a fraction."""

from __future__ import annotations

import asyncio

from httprail import HttpSettings, MaxRetriesExceededError, RetryBudgetExhaustedError
from httprail.middleware import Retry, RetryBudget
from httprail.testing import ChaosServer, Reply

from .conftest import FAST, ClientFactory

REQUESTS = 60
RATIO = 0.2
MIN_PER_SECOND = 0.5
WINDOW = 10.0
MAX_RETRIES = 3


async def test_full_outage_sends_at_most_the_budget_and_reports_it_exhausted(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    """Default stack, breaker out of the way, every answer 503: the server sees at most
    (1 + ratio) * requests + floor requests, and the callers get RetryBudgetExhaustedError."""
    chaos_server.script("/down", Reply.status(503))
    client = make_client(
        max_retries=MAX_RETRIES,
        circuit_breaker_threshold=10_000,
        retry_budget_ratio=RATIO,
        retry_budget_min_per_second=MIN_PER_SECOND,
        retry_budget_window=WINDOW,
    )

    # Three waves: the budget is shared by every call through the client, wave after wave.
    outcomes = []
    for _ in range(3):
        wave = REQUESTS // 3
        outcomes += await asyncio.gather(*(client.get("/down") for _ in range(wave)))

    floor = MIN_PER_SECOND * WINDOW
    seen = chaos_server.count("/down")
    assert REQUESTS <= seen <= (1 + RATIO) * REQUESTS + floor  # 77, not 4 * 60 = 240
    errors = [outcome.failure() for outcome in outcomes]
    given_up = [e for e in errors if isinstance(e, MaxRetriesExceededError)]
    assert len(given_up) == REQUESTS
    exhausted = [e for e in given_up if isinstance(e, RetryBudgetExhaustedError)]
    # A caller that was not refused spent MAX_RETRIES retries; there is room for few of those.
    assert len(exhausted) >= REQUESTS - ((1 + RATIO) * REQUESTS + floor - REQUESTS) // MAX_RETRIES
    assert {e.upstream for e in exhausted} == {chaos_server.url}
    assert sum(len(e.attempts) for e in given_up) == seen


async def test_one_budget_shared_by_two_clients_caps_them_together(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    """Two clients given the same RetryBudget spend one upstream's retries between them."""
    chaos_server.script("/down", Reply.status(503))
    shared = RetryBudget(ratio=0.0, min_per_second=0.4, window=WINDOW)  # four retries in all
    settings = HttpSettings(**FAST, max_retries=MAX_RETRIES)
    first = make_client(plugins=[Retry.from_settings(settings, budget=shared)])
    second = make_client(plugins=[Retry.from_settings(settings, budget=shared)])

    one = (await first.get("/down")).failure()
    two = (await second.get("/down")).failure()
    assert type(one) is MaxRetriesExceededError
    assert len(one.attempts) == 1 + MAX_RETRIES
    assert isinstance(two, RetryBudgetExhaustedError)
    assert len(two.attempts) == 2  # the one retry the first client left over
    assert chaos_server.count("/down") == 1 + MAX_RETRIES + 2
