"""Beside the official instrumentations: no double spans, and a superset of their attributes.

``opentelemetry-instrumentation-httpx`` and ``-aiohttp-client`` trace the client library under
httprail's terminal. With the ``OpenTelemetry`` stage in the chain they see the
``suppress_http_instrumentation`` context key and stay quiet, so each attempt is one span;
``suppress_http_instrumentation=False`` lets them add theirs (a child of our attempt span).
The side-by-side table in ``docs/observability.md`` is this module's :func:`attribute_table`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.instrumentation import _semconv
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from httprail import AsyncClient, HttpSettings, Success
from httprail.terminals import AiohttpTerminal, HttpxTerminal
from httprail.testing import ChaosServer, Reply

from ._otel_sdk import Sdk

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"


@pytest.fixture(autouse=True)
def stable_semconv(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The instrumentations in their stable-conventions mode (``OTEL_SEMCONV_STABILITY_OPT_IN
    =http``), read afresh: they cache the mode process-wide on first use."""
    stability = _semconv._OpenTelemetrySemanticConventionStability
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    monkeypatch.setattr(stability, "_initialized", False)
    yield
    stability._initialized = False


@pytest.fixture
def server() -> Iterator[ChaosServer]:
    with ChaosServer() as chaos:
        chaos.script("/item", Reply.json({"id": 1}))
        yield chaos


async def _through_httpx(server: ChaosServer, sdk: Sdk, **options: bool) -> None:
    inner = httpx.AsyncClient()
    HTTPXClientInstrumentor.instrument_client(inner, tracer_provider=sdk.tracer_provider)
    terminal = HttpxTerminal(HttpSettings(), client=inner)
    async with AsyncClient(server.url, plugins=[sdk.stage(**options)], terminal=terminal) as c:
        assert isinstance(await c.get("/item"), Success)
    await inner.aclose()


@pytest.mark.parametrize("suppress", [True, False])
async def test_httpx_instrumentation_adds_no_span_unless_asked(
    server: ChaosServer, suppress: bool
) -> None:
    """With the httpx instrumentation on the terminal's client, the request is our two spans
    (logical, attempt); unsuppressed, the instrumentation's span is a child of our attempt."""
    sdk = Sdk()
    await _through_httpx(server, sdk, suppress_http_instrumentation=suppress)
    spans = sdk.finished()
    logical = sdk.logical()
    (attempt,) = sdk.children(logical)
    theirs = [s for s in spans if s.instrumentation_scope.name != "httprail"]
    if suppress:
        assert len(spans) == 2
        assert theirs == []
    else:
        (span,) = theirs
        assert span.parent is not None
        assert span.parent.span_id == attempt.context.span_id


@pytest.mark.parametrize("suppress", [True, False])
async def test_aiohttp_instrumentation_adds_no_span_unless_asked(
    server: ChaosServer, suppress: bool
) -> None:
    """The same with ``opentelemetry-instrumentation-aiohttp-client`` and the aiohttp
    terminal: one span per attempt unless suppression is turned off."""
    sdk = Sdk()
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=sdk.tracer_provider)
    try:
        plugins = [sdk.stage(suppress_http_instrumentation=suppress)]
        terminal = AiohttpTerminal(HttpSettings())
        async with AsyncClient(server.url, plugins=plugins, terminal=terminal) as client:
            assert isinstance(await client.get("/item"), Success)
    finally:
        instrumentor.uninstrument()
    theirs = [s for s in sdk.finished() if s.instrumentation_scope.name != "httprail"]
    assert len(theirs) == (0 if suppress else 1)


async def attribute_table(server: ChaosServer) -> tuple[str, set[str], set[str]]:
    """The markdown table of the attributes the httpx instrumentation and httprail set on the
    same request (theirs on a plain instrumented ``httpx.AsyncClient``, ours on the attempt
    and logical spans), and the two sets of attribute names."""
    theirs_sdk = Sdk()
    plain = httpx.AsyncClient()
    HTTPXClientInstrumentor.instrument_client(plain, tracer_provider=theirs_sdk.tracer_provider)
    response = await plain.get(server.url_for("/item"))
    assert response.status_code == 200
    await plain.aclose()
    (theirs,) = theirs_sdk.finished()

    ours_sdk = Sdk()
    await _through_httpx(server, ours_sdk)
    logical = ours_sdk.logical()
    (attempt,) = ours_sdk.children(logical)
    their_names = set(theirs.attributes or {})
    attempt_names = set(attempt.attributes or {})
    logical_names = set(logical.attributes or {})
    rows = ["| Attribute | instrumentation-httpx | httprail attempt span | httprail logical span |"]
    rows.append("|---|:-:|:-:|:-:|")
    for name in sorted(their_names | attempt_names | logical_names):
        marks = [name in names for names in (their_names, attempt_names, logical_names)]
        cells = " | ".join("yes" if mark else "-" for mark in marks)
        rows.append(f"| `{name}` | {cells} |")
    return "\n".join(rows), their_names, attempt_names | logical_names


async def test_our_attributes_are_a_superset_and_the_doc_table_is_current(
    server: ChaosServer,
) -> None:
    """Every attribute the httpx instrumentation sets on a request is set by httprail too, and
    ``docs/observability.md`` shows the table this test builds."""
    table, theirs, ours = await attribute_table(server)
    assert theirs
    assert theirs <= ours
    assert table in DOC.read_text(encoding="utf-8")


# Print the table (from the repository's root):
#   OTEL_SEMCONV_STABILITY_OPT_IN=http python -m tests.integration.test_otel_instrumentations
if __name__ == "__main__":
    import asyncio

    async def _print() -> None:
        with ChaosServer() as chaos:
            chaos.script("/item", Reply.json({"id": 1}))
            print((await attribute_table(chaos))[0])

    asyncio.run(_print())
