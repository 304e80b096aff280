"""pytest plugin (registered through the ``pytest11`` entry point): httprail test fixtures.

Fixtures:
    chaos_server: a running :class:`ChaosServer` on 127.0.0.1, stopped after the test.
    fake_clock: a :class:`FakeClock` whose ``sleep`` returns at once and advances time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._chaos import ChaosServer
from ._mock import FakeClock


@pytest.fixture
def chaos_server() -> Iterator[ChaosServer]:
    """A real HTTP fault server on a random loopback port."""
    server = ChaosServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock and sleep pair that never waits."""
    return FakeClock()
