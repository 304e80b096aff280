"""Prometheus: the stage's metrics scraped from a real ``/metrics`` endpoint on 127.0.0.1.

The endpoint is the one ``docs/observability.md`` documents: OpenTelemetry's
``PrometheusMetricReader`` in the meter provider, served by ``prometheus_client``'s
``start_http_server``. The text format is parsed with ``prometheus_client``'s own parser.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from httprail import AsyncClient, Failure, HttpSettings, OpenTelemetry, Success
from httprail.middleware import CircuitBreaker, Retry
from httprail.testing import ChaosServer, FakeClock, Reply

CANARY = "CANARY9b2c4"


@pytest.fixture
def exposed() -> Iterator[tuple[MeterProvider, str]]:
    """A meter provider exported on ``http://127.0.0.1:<port>/metrics`` (a registry of its own,
    so tests do not share one)."""
    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield provider, f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        provider.shutdown()


def _samples(text: str) -> dict[str, list[Any]]:
    """Every sample of the scrape, by sample name."""
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def _value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples.get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_metrics_are_scraped_from_a_real_endpoint(exposed: tuple[MeterProvider, str]) -> None:
    """After a request retried twice after 503s and an open-circuit rejection, a scrape of
    ``/metrics`` parses and shows the attempts, retries by cause, physical durations as a
    histogram with the semconv buckets, the rejection, the breaker state, and no canary."""
    provider, endpoint = exposed
    clock = FakeClock()
    stage = OpenTelemetry(meter_provider=provider)
    with ChaosServer() as server:
        server.script("/flaky", Reply.status(503), Reply.status(503), Reply.json({}))
        server.script("/down", Reply.status(500))
        plugins = [
            stage,
            Retry(max_retries=3, sleep=clock.sleep, retry_statuses={503}),
            CircuitBreaker(
                failure_threshold=1,
                cooldown=60,
                key=lambda request: request.url.path,
                is_failure=lambda error: getattr(error, "status_code", None) == 500,
            ),
        ]
        async with AsyncClient(server.url, plugins=plugins, settings=HttpSettings()) as client:
            assert isinstance(await client.get(f"/flaky?api_key={CANARY}"), Success)
            assert isinstance(await client.get("/down"), Failure)
            assert isinstance(await client.get("/down"), Failure)
        async with httpx.AsyncClient() as scraper:
            response = await scraper.get(endpoint)
    assert response.status_code == 200
    text = response.text
    assert CANARY not in text
    samples = _samples(text)
    assert _value(samples, "httprail_attempts_total", httprail_attempt_kind="first") == 2
    assert _value(samples, "httprail_attempts_total", httprail_attempt_kind="retry") == 2
    assert _value(samples, "httprail_retries_total", httprail_retry_cause="503") == 2
    assert _value(samples, "http_client_request_duration_seconds_count") == 4
    buckets = {s.labels["le"] for s in samples["http_client_request_duration_seconds_bucket"]}
    assert {"0.005", "0.075", "7.5", "10.0", "+Inf"} <= buckets
    assert _value(samples, "httprail_request_duration_seconds_count") == 3
    assert _value(samples, "httprail_rejections_total", httprail_rejection_kind="open_circuit") == 1
    state = {
        s.labels["httprail_breaker_state"]: s.value
        for s in samples["httprail_breaker_state"]
        if s.labels["httprail_upstream"] == "/down"
    }
    assert state == {"closed": 0, "open": 1, "half_open": 0}
    assert _value(samples, "http_client_active_requests") == 0
