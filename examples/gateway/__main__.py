"""``python -m examples.gateway [--port 8000]``: the gateway under uvicorn, with demo upstreams.

Unless ``HTTP_SERVICES__CATALOG__BASE_URL`` is already set, two local ``ChaosServer``s play the
upstreams: ``catalog`` (three pages of items, a slow event stream) and ``quotes`` (fails half
of the time), and the variables are set to point at them. Then uvicorn serves
``examples.gateway.app:app`` on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator, MutableMapping
from contextlib import ExitStack, contextmanager
from urllib.parse import parse_qs

import uvicorn

from httprail import redact_text
from httprail.testing import ChaosServer, RecordedRequest, Reply

PAGES = 3
PAGE_SIZE = 4


def catalog_page(request: RecordedRequest) -> Reply:
    """Page ``?page=N`` of the demo catalog (an empty list after the last page)."""
    page = int(parse_qs(request.query).get("page", ["1"])[0])
    first = (page - 1) * PAGE_SIZE
    items = [{"id": n, "name": f"item {n}"} for n in range(first + 1, first + PAGE_SIZE + 1)]
    return Reply.json({"items": items if page <= PAGES else []})


def demo_catalog(server: ChaosServer) -> None:
    """Script ``server`` as the catalog: pages, a slow event stream, a health URL."""
    server.route("/items", catalog_page)
    events = [json.dumps({"tick": n}) for n in range(1, 61)]
    server.script("/events", Reply.sse(events, event_delay=1.0))


def demo_quotes(server: ChaosServer, *, fail_ratio: float = 0.5) -> None:
    """Script ``server`` as the flaky quotes service."""
    server.script_random(
        "/quote", ok=Reply.json({"text": "Simple is better than complex."}), fail_ratio=fail_ratio
    )


def demo_environment(catalog: str, quotes: str) -> dict[str, str]:
    """The variables that point the gateway at the two upstreams: a health URL each, and a
    breaker on the quotes service that opens after 3 failures and stays open 10 s."""
    return {
        "HTTP_SERVICES__CATALOG__BASE_URL": catalog,
        "HTTP_SERVICES__CATALOG__HEALTH_URL": "/health",
        "HTTP_SERVICES__QUOTES__BASE_URL": quotes,
        "HTTP_SERVICES__QUOTES__HEALTH_URL": "/health",
        "HTTP_SERVICES__QUOTES__MAX_RETRIES": "1",
        "HTTP_SERVICES__QUOTES__CIRCUIT_BREAKER_THRESHOLD": "3",
        "HTTP_SERVICES__QUOTES__CIRCUIT_BREAKER_COOLDOWN": "10",
    }


@contextmanager
def demo_upstreams(environ: MutableMapping[str, str]) -> Iterator[None]:
    """Start the two demo upstreams and set their variables in ``environ`` (unless set)."""
    with ExitStack() as stack:
        if "HTTP_SERVICES__CATALOG__BASE_URL" not in environ:
            catalog = stack.enter_context(ChaosServer())
            quotes = stack.enter_context(ChaosServer())
            demo_catalog(catalog)
            demo_quotes(quotes)
            environ.update(demo_environment(catalog.url, quotes.url))
        yield


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.gateway", description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (8000)")
    args = parser.parse_args(argv)
    with demo_upstreams(os.environ):
        for name, value in sorted(os.environ.items()):
            if name.startswith("HTTP_SERVICES__"):
                print(f"{name}={redact_text(value)}")
        uvicorn.run("examples.gateway.app:app", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
