"""A process that used the reqwest terminal exits cleanly (exit status 0, no fatal error).

pyreqwest's runtime thread still drops a closed client's connections and requests after
``close()`` returns. When the interpreter is finalizing by then, the process dies with
``Fatal Python error: PyGILState_Release``: one refused request, a close and an exit did so in
about one run in five here (raw pyreqwest, or the terminal without its wait at exit,
``SETTLE = 0``). The terminal waits for that at exit; these processes must all exit 0.
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

    import httpx

    from httprail import HttpSettings
    from httprail.terminals import PyreqwestTerminal

    async def main() -> None:
        terminal = PyreqwestTerminal(HttpSettings(timeout_connect=1.0))
        outcome = await terminal.send(httpx.Request("GET", sys.argv[1]))
        print(type(outcome.failure()).__name__)
        await terminal.aclose()

    asyncio.run(main())
    """
)

RUNS = 10


def run_script(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter, given a URL where the connect is refused at once."""
    return subprocess.run(
        [sys.executable, "-c", script, "http://127.0.0.1:1/"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


@pytest.mark.timeout(120)
def test_a_process_exits_cleanly_right_after_closing_the_terminal_run_after_run() -> None:
    """Ten processes each send a refused request, close the terminal and exit at once: all 0."""
    for _ in range(RUNS):
        done = run_script(SCRIPT)
        assert "Fatal Python error" not in done.stderr, done.stderr[-2000:]
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "ConnectError"


FORKED = textwrap.dedent(
    """
    import asyncio, os, sys

    from pyreqwest.client import SyncClientBuilder

    from httprail import HttpSettings
    from httprail.terminals import PyreqwestTerminal

    try:  # pyreqwest's runtime starts in this process (the connect is refused at once)
        SyncClientBuilder().build().get(sys.argv[1]).build().send()
    except Exception:
        pass

    async def main() -> None:
        terminal = PyreqwestTerminal(HttpSettings(max_retries=0))
        outcome = await terminal.send(__import__("httpx").Request("GET", sys.argv[1]))
        error = outcome.failure()
        print(type(error).__name__, "fork()" in str(error))
        await terminal.aclose()

    pid = os.fork()
    if pid == 0:
        asyncio.run(main())
        sys.stdout.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    """
)


@pytest.mark.timeout(60)
def test_a_process_forked_after_pyreqwest_started_gets_a_typed_error_saying_so() -> None:
    """pyreqwest's runtime cannot run in a child forked after it started: a request there is
    an ``InvalidRequestError`` quoting pyreqwest's advice (not a ``TransportError`` retried
    and counted against the upstream), and the child exits cleanly."""
    done = run_script(FORKED)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["InvalidRequestError", "True"], (done.stdout, done.stderr)
