"""A client dropped without being closed says so in httprail's words, once, and frees its
sockets; aiohttp's own "Unclosed connector" (naming objects the user never made) never shows."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from httprail.testing import ChaosServer

SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, sys
    from httprail import AsyncClient

    async def main(url):
        client = AsyncClient(url)
        outcome = await client.get("/x")
        assert type(outcome).__name__ == "Success", outcome
        del client, outcome
        gc.collect()
        await asyncio.sleep(0.05)
        print("done")

    asyncio.run(main(sys.argv[1]))
    """
)


def test_a_dropped_client_warns_in_httprails_words_not_aiohttps() -> None:
    with ChaosServer() as server:
        finished = subprocess.run(
            [sys.executable, "-W", "default", "-c", SCRIPT, server.url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "done"
    assert "of an httprail client was never closed: use 'async with" in finished.stderr
    assert "Unclosed connector" not in finished.stderr
    assert "Unclosed client session" not in finished.stderr
    assert finished.stderr.count("ResourceWarning: AiohttpTerminal") == 1
