"""Quiet by default: an application that configures no logging sees nothing from httprail, even
when its requests fail; one that calls ``logging.basicConfig`` sees the events.

Each case runs a fresh interpreter (logging and structlog configuration are process-wide)
that sends one request to a fault server answering 503, retried once, on the default stack.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, sys

    from httprail import AsyncClient, Failure, HttpSettings
    from httprail.testing import ChaosServer, Reply

    mode = sys.argv[1]
    if mode == "basic":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    elif mode == "no-null-handler":  # what the NullHandler prevents
        logging.getLogger("httprail").handlers.clear()


    async def main() -> None:
        with ChaosServer() as server:
            server.script("/x", Reply.status(503))
            settings = HttpSettings(max_retries=1, backoff_base=0.01)
            async with AsyncClient(server.url, settings=settings) as client:
                outcome = await client.get("/x")
            assert isinstance(outcome, Failure), outcome
            assert server.count("/x") == 2


    asyncio.run(main())
    """
)


def run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_unconfigured_app_prints_nothing() -> None:
    """With no logging configured, a failed and retried request prints nothing on stdout or
    stderr."""
    done = run("none")
    assert (done.stdout, done.stderr) == ("", "")


def test_basic_config_app_sees_the_events() -> None:
    """After ``logging.basicConfig(level=INFO)`` the retry and the failure are on stderr (the
    root handler's stream) with their fields, and stdout stays empty."""
    done = run("basic")
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert any(
        line.startswith("INFO httprail.http http.retry method=GET") and "status=503" in line
        for line in lines
    ), done.stderr
    assert any(
        line.startswith("WARNING httprail.http http.request method=GET")
        and "error=MaxRetriesExceededError" in line
        for line in lines
    ), done.stderr


def test_without_the_null_handler_python_would_print_warnings() -> None:
    """Why the NullHandler is there: without it, Python's last-resort handler prints the
    WARNING (not the INFO retry) to stderr in an unconfigured application."""
    done = run("no-null-handler")
    assert done.stdout == ""
    assert done.stderr.startswith("http.request method=GET"), done.stderr
    assert "http.retry" not in done.stderr
