"""``httprail chaos``: the fault server in the foreground, scripted from a TOML file."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Final

import typer

from .._errors import ConfigError
from ..testing import ChaosScript, ChaosServer, load_chaos_script

__all__ = ["HELP", "register", "serve"]

PROG = "httprail chaos"
_TICK_SECONDS: Final = 0.2
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

HELP: Final = (
    "Run the fault server in the foreground, for your own tests, until Ctrl-C or SIGTERM.\n\n"
    'Paths without a script answer 200 {"ok": true}. With --script, each path declared in '
    "the TOML file answers with a sequence of replies (status, headers, JSON or text body, "
    "delay, Retry-After, faults such as reset, hang or garbage, SSE events), with seeded "
    "random failures, or with a rate limit (429 above it). It prints one line saying where "
    "it listens (with --json: url, host, port and paths as one JSON object).\n\n"
    "Example: httprail chaos --port 8080 --script chaos.toml\n\n"
    "Exit codes:\n\n"
    "\b\n"
    "    0  stopped by Ctrl-C or SIGTERM\n"
    "    1  cannot listen (port in use, unknown address)\n"
    "    2  bad option or script (one line naming the file, the path and the field)"
)


def register(app: typer.Typer) -> None:
    """Add the ``chaos`` command to ``app``."""
    app.command("chaos", help=HELP)(chaos)


def chaos(
    port: Annotated[
        int,
        typer.Option("--port", "-p", min=0, max=65535, help="Port to listen on (0: a free one)."),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    script: Annotated[
        Path | None,
        typer.Option(
            "--script",
            "-s",
            dir_okay=False,
            help="A TOML file declaring the replies per path (see docs/cli.md).",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print where it listens as one JSON line: url, host, port, paths."
        ),
    ] = False,
) -> int:
    """Run the fault server until SIGINT or SIGTERM (see :data:`HELP`)."""
    declared = ChaosScript()
    if script is not None:
        try:
            declared = load_chaos_script(script)
        except ConfigError as exc:
            typer.echo(f"{PROG}: error: {' '.join(str(exc).split())}", err=True)
            return 2
    server = ChaosServer(host=host, port=port)
    try:
        declared.apply(server)
        server.start()
    except (OSError, OverflowError) as exc:
        reason = _reason(exc)
        typer.echo(f"{PROG}: error: cannot listen on {host}:{port}: {reason}", err=True)
        return 1
    try:
        served = serve(server, declared, as_json=as_json)
    finally:
        server.stop()
    typer.echo(f"{PROG}: stopped after {served:,} request{'s' if served != 1 else ''}", err=True)
    return 0


def serve(server: ChaosServer, script: ChaosScript, *, as_json: bool) -> int:
    """Announce ``server`` and wait for SIGINT or SIGTERM; returns how many requests it served.

    The signal handlers are in place before the announcement, so a signal sent as soon as the
    line is read stops the server cleanly. Recorded requests are dropped as they come, so a
    long run does not grow.
    """
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, on_signal) for sig in _STOP_SIGNALS} if in_main else {}
    served = 0
    try:
        _announce(server, sorted(script.paths), as_json=as_json)
        while not stop.wait(_TICK_SECONDS):
            served += server.forget_requests()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return served + server.forget_requests()


def _announce(server: ChaosServer, paths: list[str], *, as_json: bool) -> None:
    if as_json:
        announce: dict[str, object] = {
            "url": server.url,
            "host": server.url.removeprefix("http://").rpartition(":")[0],
            "port": server.port,
            "paths": paths,
        }
        typer.echo(json.dumps(announce))
    else:
        scripted = f"{len(paths)} scripted path{'s' if len(paths) != 1 else ''}"
        typer.echo(f"{PROG}: listening on {server.url} ({scripted}); Ctrl-C to stop")


def _reason(exc: OSError | OverflowError) -> str:
    """Why the server could not listen, in a few words (``Address already in use``)."""
    if isinstance(exc, OSError) and not isinstance(exc, socket.gaierror) and exc.errno:
        return os.strerror(exc.errno)
    return " ".join(str(exc).split())
