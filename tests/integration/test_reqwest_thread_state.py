"""pyreqwest's runtime thread keeps one Python thread state once the terminal is used.

Without it, each time that thread takes the GIL (once or more per request) PyO3 makes a new
thread state and deletes it after: a ``threading.local`` set there is gone by the next call.
The probe is a custom proxy function of a raw pyreqwest client, which reqwest calls on its
runtime thread for every request to a real server. It runs in a fresh process: the state is
kept once per process, so this pytest process (whose other tests built terminals) would show
nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from httprail.testing import ChaosServer, Reply

pytest.importorskip("pyreqwest")

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, threading

    import httpx
    from pyreqwest.client import ClientBuilder
    from pyreqwest.proxy import ProxyBuilder

    from httprail.terminals import PyreqwestTerminal
    from httprail.terminals._reqwest_thread import kept_threads

    local = threading.local()
    seen = []

    def probe(url):  # on the runtime thread: what that thread's state remembers
        calls = getattr(local, "calls", 0)
        seen.append([threading.get_ident(), calls])
        local.calls = calls + 1

    async def rounds(client, url, count):
        for _ in range(count):
            response = await client.get(url).build().send()
            await response.bytes()

    async def main(url):
        client = ClientBuilder().no_proxy().proxy(ProxyBuilder.custom(probe)).build()
        async with client:
            await rounds(client, url, 4)
            before = list(seen)
            seen.clear()
            terminal = PyreqwestTerminal()
            status = (await terminal.send(httpx.Request("GET", url))).unwrap().status_code
            await rounds(client, url, 4)
            await terminal.aclose()
        print(json.dumps({"before": before, "after": seen, "kept": sorted(kept_threads()),
                          "status": status, "main": threading.get_ident()}))

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.timeout(60)
def test_the_runtime_thread_keeps_its_state_once_the_terminal_is_used(
    chaos_server: ChaosServer,
) -> None:
    """Before the terminal: every call on the runtime thread starts from a new state (the
    probe's count is 0 each time). After: one state, its count going up call after call, on
    the thread the terminal kept; the process exits 0."""
    chaos_server.script("/ok", Reply.json({"ok": True}))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, chaos_server.url + "/ok"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Fatal Python error" not in done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == 200
    before, after = result["before"], result["after"]
    runtime = {ident for ident, _ in before + after}
    assert len(runtime) == 1  # one runtime thread,
    assert result["main"] not in runtime  # not ours
    assert len(before) >= 4
    assert [count for _, count in before] == [0] * len(before)
    assert len(after) >= 4
    assert [count for _, count in after] == list(range(len(after)))
    assert result["kept"] == sorted(runtime)
    assert len(chaos_server.requests) == 9  # 4 + 1 + 4: the throwaway request sent nothing
