"""A made-up demo report, for rendering tests that need no server."""

from __future__ import annotations

from httprail.cli._demo import PHASES, ClientFigures, DemoConfig, DemoReport, demo_settings


def a_report(naive_server: int, rail_server: int) -> DemoReport:
    naive, rail = ClientFigures("naive"), ClientFigures("httprail")
    for phase in range(len(PHASES)):
        naive.record(phase, 0.01)
        rail.record(phase, 0.01)
    naive.record(1, 0.7, untyped="HTTPStatusError")
    rail.record(1, 0.001, typed="CircuitBreakerOpenError")
    naive.server_requests, rail.server_requests = naive_server, rail_server
    rail.breaker_trips, rail.retries = 1, 2
    return DemoReport(DemoConfig(requests=5), naive, rail, 1.5, demo_settings())
