"""A process that used the reqwest terminal exits cleanly (exit status 0, no fatal error).

pyreqwest's runtime thread drops a closed client's connections after ``close()`` returns; one
run in about twelve died at exit with ``Fatal Python error: PyGILState_Release`` when the
interpreter was already finalizing (the terminal now waits for that at exit: ``SETTLE``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("pyreqwest")

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys

    from httprail import AsyncClient, HttpSettings
    from httprail.terminals import PyreqwestTerminal
    from httprail.terminals import _reqwest
    from httprail.testing import ChaosServer, Fault, Reply

    if len(sys.argv) > 1:
        _reqwest.SETTLE = float(sys.argv[1])

    async def main() -> None:
        with ChaosServer() as server:
            server.script("/stall", Reply.fail(Fault.HANG_BODY))
            server.script("/reset", Reply.fail(Fault.RESET))
            settings = HttpSettings(timeout_read=0.2, timeout_connect=0.3, max_connections=64)
            client = AsyncClient(
                server.url, plugins=[], settings=settings, terminal=PyreqwestTerminal(settings)
            )
            paths = ["/ok"] * 600 + ["/stall"] * 8 + ["/reset"] * 8
            outcomes = await asyncio.gather(*(client.get(path) for path in paths))
            await client.aclose()
        ok = sum(1 for outcome in outcomes if outcome.value_or(None) is not None)
        print(ok)

    asyncio.run(main())
    """
)

RUNS = 5


@pytest.mark.timeout(120)
def test_a_process_exits_cleanly_after_closing_the_terminal_run_after_run() -> None:
    """Five processes each send 616 requests at c=64 (some stalled or reset), close, exit: 0."""
    for _ in range(RUNS):
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
        )
        assert "Fatal Python error" not in done.stderr, done.stderr[-2000:]
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "600"
