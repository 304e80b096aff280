"""HTTP/2 against a server that rotates its connections: httprail over httpx, raw httpx, aiohttp.

One command starts hypercorn (HTTP/2 and HTTP/1.1 over TLS, a certificate made for the run by
``trustme``) on 127.0.0.1 with ``keep_alive_max_requests`` set to ``--rotate`` (hypercorn's
default is 1,000): after that many requests on a connection it sends a GOAWAY and closes the
connection, dropping the streams still in flight. The server is pinned with ``taskset`` to
CPU 1, this process to CPU 0 (when the machine has two). Each client then runs closed-loop:
``c`` workers each send their next GET as soon as the previous one is answered, for
``--duration`` seconds, on a fresh client:

  httprail-h2       ``AsyncClient(settings=HttpSettings(http2=True))``: the default stack over
                    ``HttpxTerminal`` (what ``http2=True`` picks), HTTP/2
  httpx-h2          raw ``httpx.AsyncClient(http2=True)``, HTTP/2
  httprail-default  ``AsyncClient()``: the default stack over the default ``AiohttpTerminal``,
                    HTTP/1.1 (hypercorn rotates those connections too, with ``Connection: close``)

Reported per client: successes, failures by type, the connections the server saw open (each
beyond the first few is a rotation), responses per second, p50 and p99 latency of successes,
and the protocol the responses came in.

  httprail-reqwest-h2  the default stack over ``PyreqwestTerminal(HttpSettings(http2=True))``,
                    HTTP/2 by ALPN

Target (issue 14): ``httprail-h2`` has 0 failures. Exit status 1 otherwise.

``--compare`` (issue 18) measures speed instead, with nothing rotating: granian (HTTP/2 and
HTTP/1.1 by ALPN over TLS, a ``trustme`` certificate, one worker, the 104-byte JSON of
``throughput.py``) pinned to CPU 1, each client on CPU 0, closed loop as in ``throughput.py``
(``--duration`` s per cell after ``--warm-up``, ``--repeats`` repetitions in alternating order;
medians and min-max), at ``--concurrencies`` (16,64) with clients (:data:`COMPARED`):

  httpx-h2               raw ``httpx.AsyncClient(http2=True)``
  httprail-httpx-h2      default stack over ``HttpxTerminal`` (``HttpSettings(http2=True)``)
  reqwest-h2             raw pyreqwest ``ClientBuilder().http2(True)``, HTTP/2 by ALPN
  httprail-reqwest-h2    default stack over ``PyreqwestTerminal``, ``HttpSettings(http2=True)``
  httprail-reqwest-h1    default stack over ``PyreqwestTerminal``, ``HttpSettings(http2=False)``
  httprail-aiohttp       default stack over ``AiohttpTerminal`` (HTTP/1.1 over TLS)

Targets (issue 18): ``httprail-reqwest-h2`` >= 3x ``httpx-h2`` and >= 0.9x
``httprail-reqwest-h1``, at each concurrency. Exit status 1 if one is missed.

Run:  python benchmarks/http2.py [--rotate 1000] [--concurrency 64] [--duration 10]
                                 [--only httprail-h2,httpx-h2] [--write]
      python benchmarks/http2.py --compare [--concurrencies 16,64] [--repeats 3]
                                 [--duration 3] [--warm-up 0.5] [--only ...] [--write]

``--write`` stores ``benchmarks/results/http2.md`` (command and date inside). The module also
serves ``tests/integration/test_http2_rotation.py`` (:class:`RotatingServer`, :func:`drive`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import importlib.metadata
import itertools
import json
import math
import os
import platform
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

import throughput
from throughput import ServerProcess, pinning, quantile

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "http2.md"
BODY = b'{"ok":true,"service":"http2-rotation","items":[1,2,3,4,5,6,7,8],"note":"same body"}'
CLIENTS = ("httprail-h2", "httpx-h2", "httprail-default", "httprail-reqwest-h2")
SERVER_CPU, CLIENT_CPU = 1, 0

# --------------------------------------------------------------------------------- the server


def make_app() -> Callable[..., Awaitable[None]]:
    """The ASGI app: ``BODY`` for every path but ``/stats``, which reports what the app saw.

    ``/stats``: the connections that carried a request (by client address), the requests by
    HTTP version, and how many ``x-request-id`` values arrived more than once (a request
    processed twice).
    """
    connections: set[Any] = set()
    versions: collections.Counter[str] = collections.Counter()
    ids: collections.Counter[str] = collections.Counter()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/stats":
            duplicates = sum(1 for count in ids.values() if count > 1)
            body = json.dumps(
                {"connections": len(connections), "versions": versions, "duplicates": duplicates}
            ).encode()
        else:
            connections.add(tuple(scope.get("client") or ()))
            versions[scope["http_version"]] += 1
            for name, value in scope["headers"]:
                if name == b"x-request-id":
                    ids[value.decode()] += 1
            while (await receive()).get("more_body"):
                pass
            body = BODY
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def serve(port: int, cert: str, key: str, rotate: int) -> None:  # pragma: no cover - child
    """Run hypercorn on 127.0.0.1:``port`` until terminated (the server process's main)."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile, config.keyfile = cert, key
    config.keep_alive_max_requests = rotate
    config.accesslog = None
    config.errorlog = None  # hypercorn logs every connection it drops mid-stream
    asyncio.run(hypercorn_serve(make_app(), config))  # type: ignore[arg-type]


def write_certificates(folder: Path, ca: str) -> None:
    """A fresh local CA (written to ``ca``) and a certificate for 127.0.0.1 signed by it
    (``cert.pem`` / ``key.pem`` in ``folder``)."""
    import trustme

    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    authority.cert_pem.write_to_path(ca)
    certificate.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    certificate.private_key_pem.write_to_path(str(folder / "key.pem"))


class RotatingServer(ServerProcess):
    """hypercorn over TLS on 127.0.0.1 rotating connections every ``rotate`` requests.

    The certificate is made for the run (``trustme``); ``ca`` is the path of its CA bundle, to
    give clients as ``verify``. The server runs in its own process group (see
    ``throughput.ServerProcess``), pinned to ``cpu`` when :func:`pinning` allows.
    """

    name = "hypercorn"
    ready_timeout = 30.0

    def __init__(self, rotate: int = 1000, cpu: int | None = None) -> None:
        super().__init__(cpu)
        self.rotate = rotate
        self._dir = tempfile.TemporaryDirectory(prefix="httprail-h2-")
        self.ca = str(Path(self._dir.name) / "ca.pem")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def __enter__(self) -> Self:
        write_certificates(Path(self._dir.name), self.ca)
        return super().__enter__()

    def _command(self) -> list[str]:
        folder = Path(self._dir.name)
        return [
            *(sys.executable, str(Path(__file__).resolve()), "--serve", str(self.port)),
            *(str(folder / "cert.pem"), str(folder / "key.pem"), str(self.rotate)),
        ]

    def _answers(self) -> bool:
        try:
            self.stats()
        except httpx.HTTPError:
            return False
        return True

    def stats(self) -> dict[str, Any]:
        """What the server's app saw so far (see :func:`make_app`)."""
        with httpx.Client(verify=self.ssl_context(), timeout=5.0) as client:
            answer: dict[str, Any] = client.get(f"{self.url}/stats").json()
            return answer

    def stop(self) -> None:
        """Stop the server's process group and remove its certificates (idempotent)."""
        super().stop()
        self._dir.cleanup()


# --------------------------------------------------------------------------------- the load

_NUMBERS = itertools.count()  # request numbers, never reused within a process
Send = Callable[[int], Awaitable[tuple[str | None, str]]]
"""Send request number ``n``; ``(None, http_version)`` on success, ``(error name, "")``."""


@dataclass
class Sample:
    """One client's run: successes, failures by type, latencies, protocols and connections."""

    client: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    versions: collections.Counter[str] = field(default_factory=collections.Counter)
    connections: int = 0
    duplicates: int = 0

    @property
    def successes(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.successes / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile of the latencies, in seconds (0 when there are none)."""
        return quantile(self.latencies, q) if self.latencies else 0.0


async def drive(
    client: str, send: Send, *, concurrency: int, duration: float, requests: int | None = None
) -> Sample:
    """Closed loop: ``concurrency`` workers sending for ``duration`` seconds, or until
    ``requests`` requests have been sent if that comes first."""
    began = time.perf_counter()
    sample = Sample(client, duration)
    stop = began + duration
    left = [requests if requests is not None else -1]

    async def worker() -> None:
        while (started := time.perf_counter()) < stop and left[0] != 0:
            left[0] -= 1
            error, version = await send(next(_NUMBERS))
            if error is None:
                sample.latencies.append(time.perf_counter() - started)
                sample.versions[version] += 1
            else:
                sample.failures[error] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    sample.seconds = min(duration, time.perf_counter() - began)
    return sample


@contextlib.asynccontextmanager
async def client_sender(kind: str, server: RotatingServer, method: str = "GET") -> Any:
    """A :data:`Send` for client ``kind`` aimed at ``server`` (closed on exit)."""
    from returns.result import Success

    from httprail import AsyncClient, HttpSettings
    from httprail.terminals import AiohttpTerminal, HttpxTerminal

    url = f"{server.url}/item"
    if kind == "httpx-h2":
        async with httpx.AsyncClient(http2=True, verify=server.ssl_context()) as raw:

            async def send_raw(number: int) -> tuple[str | None, str]:
                try:
                    response = await raw.request(method, url, headers=_id(number))
                    await response.aread()
                except httpx.HTTPError as exc:
                    return type(exc).__name__, ""
                return (
                    (None, response.http_version)
                    if response.status_code == 200
                    else (
                        f"HTTP {response.status_code}",
                        "",
                    )
                )

            yield send_raw
        return
    if kind == "httprail-h2":
        settings = HttpSettings(http2=True)
        terminal: Any = HttpxTerminal(settings, verify=server.ca)
    elif kind == "httprail-reqwest-h2":
        from httprail.terminals import PyreqwestTerminal

        settings = HttpSettings(http2=True)
        terminal = PyreqwestTerminal(settings, verify=server.ca)
    elif kind == "httprail-default":
        settings = HttpSettings()
        terminal = AiohttpTerminal(settings, verify=server.ca)
    else:
        raise ValueError(f"unknown client {kind!r}; known: {', '.join(CLIENTS)}")
    async with AsyncClient(settings=settings, terminal=terminal) as rail:

        async def send_rail(number: int) -> tuple[str | None, str]:
            outcome = await rail.request(method, url, headers=_id(number))
            if isinstance(outcome, Success):
                return None, outcome.unwrap().http_version
            error = outcome.failure()
            last = getattr(error, "last", None)
            return type(error).__name__ + (f"({type(last).__name__})" if last else ""), ""

        yield send_rail


def _id(number: int) -> dict[str, str]:
    """The request's id, unique within this process (the server counts repeated ids)."""
    return {"x-request-id": f"{os.getpid()}-{number}"}


async def measure(
    kind: str,
    server: RotatingServer,
    *,
    concurrency: int,
    duration: float,
    method: str = "GET",
    requests: int | None = None,
) -> Sample:
    """One run of client ``kind``, with the connections the server saw open meanwhile."""
    before = server.stats()
    async with client_sender(kind, server, method) as send:
        sample = await drive(
            kind, send, concurrency=concurrency, duration=duration, requests=requests
        )
    after = server.stats()
    sample.connections = after["connections"] - before["connections"]
    sample.duplicates = after["duplicates"] - before["duplicates"]
    return sample


# ------------------------------------------------------------- side by side over TLS (issue 18)

COMPARED = (
    "httpx-h2",
    "httprail-httpx-h2",
    "reqwest-h2",
    "httprail-reqwest-h2",
    "httprail-reqwest-h1",
    "httprail-aiohttp",
)
COMPARED_NOTES = {
    "httpx-h2": "raw `httpx.AsyncClient(http2=True, verify=ca)`",
    "httprail-httpx-h2": "default stack, `HttpxTerminal(HttpSettings(http2=True), verify=ca)`",
    "reqwest-h2": "raw pyreqwest `ClientBuilder().http2(True).add_root_certificate_pem(ca)`",
    "httprail-reqwest-h2": "default stack, `PyreqwestTerminal(HttpSettings(http2=True), "
    "verify=ca)`",
    "httprail-reqwest-h1": "default stack, `PyreqwestTerminal(HttpSettings(http2=False), "
    "verify=ca)`: HTTP/1.1 over TLS",
    "httprail-aiohttp": "default stack, `AiohttpTerminal(HttpSettings(), verify=ca)`: HTTP/1.1 "
    "over TLS",
}
TARGETS = (  # (what, client, base, at least)
    ("httprail on reqwest h2 / raw httpx h2", "httprail-reqwest-h2", "httpx-h2", 3.0),
    (
        "httprail on reqwest h2 / httprail on reqwest HTTP/1.1 over TLS",
        "httprail-reqwest-h2",
        "httprail-reqwest-h1",
        0.9,
    ),
)


class TlsServer(throughput.Server):
    """granian serving ``throughput.app`` over TLS (HTTP/2 and HTTP/1.1 by ALPN), with a
    certificate made for the run by ``trustme``; ``ca`` is its CA bundle."""

    name = "granian-tls"

    def __init__(self, cpu: int | None = SERVER_CPU) -> None:
        super().__init__(cpu)
        self._dir = tempfile.TemporaryDirectory(prefix="httprail-h2-tls-")
        self.ca = str(Path(self._dir.name) / "ca.pem")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{throughput.PATH}"

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        write_certificates(Path(self._dir.name), self.ca)
        return super().__enter__()

    def _command(self) -> list[str]:
        folder = Path(self._dir.name)
        command = super()._command()
        at = command.index("--working-dir")
        tls = [
            "--ssl-certificate",
            str(folder / "cert.pem"),
            "--ssl-keyfile",
            str(folder / "key.pem"),
        ]
        return [*command[:at], *tls, *command[at:]]

    def _answers(self) -> bool:
        try:
            with httpx.Client(verify=ssl.create_default_context(cafile=self.ca)) as client:
                answer = client.get(self.url, timeout=1.0)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200 and answer.content == throughput.BODY

    def stop(self) -> None:
        super().stop()
        self._dir.cleanup()


def compared_opener(kind: str, ca: str) -> throughput.Opener:
    """A ``throughput`` opener (url -> a ``send()`` returning success) for client ``kind``."""

    @contextlib.asynccontextmanager
    async def opener(url: str) -> Any:
        from returns.result import Success

        from httprail import AsyncClient, HttpSettings
        from httprail.terminals import AiohttpTerminal, HttpxTerminal, PyreqwestTerminal

        if kind == "httpx-h2":
            async with httpx.AsyncClient(
                http2=True, verify=ssl.create_default_context(cafile=ca)
            ) as raw:

                async def send_httpx() -> bool:
                    response = await raw.get(url)
                    return response.status_code == 200 and response.http_version == "HTTP/2"

                yield send_httpx
            return
        if kind == "reqwest-h2":
            from pyreqwest.client import ClientBuilder

            pem = Path(ca).read_bytes()  # noqa: ASYNC240 - before the loop is measured
            async with ClientBuilder().http2(True).add_root_certificate_pem(pem).build() as raw:

                async def send_reqwest() -> bool:
                    response = await raw.get(url).build().send()
                    await response.bytes()
                    return response.status == 200 and response.version == "HTTP/2.0"

                yield send_reqwest
            return
        terminals: dict[str, tuple[Any, bool | None, str]] = {
            "httprail-httpx-h2": (HttpxTerminal, True, "HTTP/2"),
            "httprail-reqwest-h2": (PyreqwestTerminal, True, "HTTP/2"),
            "httprail-reqwest-h1": (PyreqwestTerminal, False, "HTTP/1.1"),
            "httprail-aiohttp": (AiohttpTerminal, None, "HTTP/1.1"),
        }
        if kind not in terminals:
            raise ValueError(f"unknown client {kind!r}; known: {', '.join(COMPARED)}")
        make, http2, version = terminals[kind]
        settings = HttpSettings(http2=http2)
        origin, path = url.removesuffix(throughput.PATH), throughput.PATH
        terminal = make(settings, verify=ca)
        async with AsyncClient(origin, settings=settings, terminal=terminal) as rail:

            async def send_rail() -> bool:
                outcome = await rail.get(path)
                return isinstance(outcome, Success) and outcome.unwrap().http_version == version

            yield send_rail

    return opener


def compare(
    kinds: list[str],
    concurrencies: list[int],
    repeats: int,
    *,
    warm_up: float,
    duration: float,
    log: Callable[[str], None] = print,
) -> tuple[throughput.Results, bool]:
    """Every client of ``kinds`` against one :class:`TlsServer`; (results, whether pinned)."""
    with TlsServer() as server:
        subjects = [
            throughput.Subject(
                kind,
                kind,
                COMPARED_NOTES[kind],
                compared_opener(kind, server.ca),
                "pyreqwest" if "reqwest" in kind else "",  # run_matrix keeps its thread state
            )
            for kind in kinds
        ]
        results = throughput.run_matrix(
            subjects,
            concurrencies,
            repeats,
            server.url,
            warm_up=warm_up,
            duration=duration,
            client_cpu=None,
            log=log,
        )
        return results, server.cpu is not None


def compare_checks(results: throughput.Results, concurrencies: list[int]) -> list[throughput.Check]:
    """The issue's HTTP/2 targets, from the medians (None: a client was not measured)."""
    checks = []
    for what, key, base, least in TARGETS:
        for c in concurrencies:
            share = throughput.ratio(results, key, base, c)
            measured = (
                f"{share:.2f}x ({throughput.median(results, key, c):,.0f} vs "
                f"{throughput.median(results, base, c):,.0f} rps)"
                if math.isfinite(share)
                else "not measured"
            )
            met = share >= least if math.isfinite(share) else None
            checks.append(throughput.Check(f"{what}, c={c}", measured, f">= {least:g}x", met))
    return checks


def compare_report(
    results: throughput.Results,
    kinds: list[str],
    concurrencies: list[int],
    args: argparse.Namespace,
    command: str,
    load: tuple[float, float],
    pinned: bool,
) -> str:
    """The ``### HTTP/2 over TLS, side by side`` section: how, the targets, one table."""
    ms = throughput._ms
    lines = [
        "### HTTP/2 over TLS, side by side (issue 18)",
        "",
        *throughput.machine_lines(command, load),
        f"pyreqwest {_version('pyreqwest')}, trustme {_version('trustme')}  ",
        "Server: granian, RSGI, one worker, HTTP/2 and HTTP/1.1 by ALPN over TLS (a `trustme` "
        "certificate), the 104-byte JSON of `throughput.py`; "
        + (
            f"granian pinned to CPU {SERVER_CPU}, the clients to CPU {CLIENT_CPU} (with "
            "pyreqwest's runtime thread)."
            if pinned
            else "no CPU pinning."
        ),
        f"Method: closed loop, c workers on a fresh client per measurement, {args.duration:g} s "
        f"after a {args.warm_up:g} s warm-up; {args.repeats} repetitions, client order reversed "
        "every other one; medians, min-max across repetitions. A response counts only if it "
        "came in the protocol the row names." + throughput.KEPT_NOTE,
        "",
        *throughput.check_rows(compare_checks(results, concurrencies)),
        "",
        "| client | c | rps | rps min-max | p50 ms | p99 ms | x raw httpx h2 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in concurrencies:
        for kind in kinds:
            low, high = throughput.spread(results, kind, c)
            errors = sum(sample.errors for sample in results.get((kind, c), []))
            label = kind + (f" ({errors:,} errors)" if errors else "")
            lines.append(
                f"| {label} | {c} | {throughput.median(results, kind, c):,.0f} | "
                f"{low:,.0f}-{high:,.0f} | {ms(throughput.median(results, kind, c, 'p50'))} | "
                f"{ms(throughput.median(results, kind, c, 'p99'))} | "
                f"{throughput._x(throughput.ratio(results, kind, 'httpx-h2', c))} |"
            )
    lines += ["", "Clients:", ""]
    lines += [f"- {kind}: {COMPARED_NOTES[kind]}" for kind in kinds]
    return "\n".join(lines) + "\n"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


# --------------------------------------------------------------------------------- the report


def table(samples: list[Sample]) -> str:
    lines = [
        "| client | protocol | successes | failures | connections | rps | p50 ms | p99 ms |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for s in samples:
        failures = ", ".join(f"{n:,} {name}" for name, n in s.failures.most_common()) or "0"
        versions = ", ".join(sorted(s.versions)) or "-"
        lines.append(
            f"| {s.client} | {versions} | {s.successes:,} | {failures} | {s.connections:,} | "
            f"{s.rps:,.0f} | {s.quantile(0.5) * 1000:,.1f} | {s.quantile(0.99) * 1000:,.1f} |"
        )
    return "\n".join(lines)


TITLE = "# HTTP/2 against a server that rotates connections\n"
START, END = "<!-- --8<-- [start:report] -->", "<!-- --8<-- [end:report] -->"


def report(samples: list[Sample], args: argparse.Namespace, command: str) -> str:
    """One section of the results: ``## <section>``, the command, the date and the table."""
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    import h2
    import httpcore
    import hypercorn  # type: ignore[import-untyped]

    versions = (
        f"Python {platform.python_version()}, httpx {httpx.__version__}, httpcore "
        f"{httpcore.__version__}, h2 {h2.__version__}, hypercorn "
        f"{getattr(hypercorn, '__version__', '0.18')}; {os.cpu_count()} CPUs"
        f"{', server and client pinned to one CPU each' if pinning() else ''}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"### {args.section or f'Rotation every {args.rotate:,} requests'}\n\n"
        f"Command: `{command}`  \nDate: {today} (load average {load:.1f} at the end)  \n"
        f"{versions}\n\n"
        f"hypercorn over TLS, `keep_alive_max_requests={args.rotate}` (a GOAWAY, then the "
        f"connection closes), c={args.concurrency}, {args.duration:g} s per client, GET of a "
        f"{len(BODY)}-byte JSON. *connections*: the connections the server saw carry a request "
        "during the run (each beyond the client's first ones is a rotation).\n\n"
        f"{table(samples)}\n"
    )


def replace_section(document: str, section: str) -> str:
    """The results file ``document`` with the ``### `` section of the same title as ``section``
    replaced by it (appended when there is none), between the snippet markers that
    ``docs/benchmarks.md`` includes."""
    body = document.partition(START)[2].partition(END)[0] if START in document else ""
    sections = ["### " + part for part in ("\n" + body).split("\n### ")[1:]]
    title = section.split("\n", 1)[0]
    kept = [section if part.split("\n", 1)[0] == title else part for part in sections]
    if section not in kept:
        kept.append(section)
    parts = [part.strip("\n") + "\n" for part in kept]
    return f"{TITLE}\n{START}\n" + "\n".join(parts) + f"{END}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotate", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=None, help="seconds (10; --compare: 3)")
    parser.add_argument("--only", default="", help="comma-separated clients (default: all)")
    parser.add_argument("--write", action="store_true")
    parser.add_argument(
        "--section",
        default="",
        help="title of the section --write replaces (default: 'Rotation every N requests')",
    )
    parser.add_argument("--compare", action="store_true", help="speed over TLS (issue 18)")
    parser.add_argument("--concurrencies", default="16,64", help="--compare: comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="--compare: repetitions")
    parser.add_argument("--warm-up", type=float, default=0.5, help="--compare: seconds")
    args = parser.parse_args(argv)
    known = COMPARED if args.compare else CLIENTS
    kinds = [k for k in args.only.split(",") if k] or list(known)
    for kind in kinds:
        if kind not in known:
            parser.error(f"unknown client {kind!r}; known: {', '.join(known)}")
    if args.duration is None:
        args.duration = 3.0 if args.compare else 10.0
    if pinning():
        os.sched_setaffinity(0, {CLIENT_CPU})
    command = "python benchmarks/http2.py " + " ".join(
        repr(arg) if " " in arg else arg for arg in (argv if argv is not None else sys.argv[1:])
    )
    if os.environ.get("PYTHONPATH"):  # another httprail than the installed one
        command = f"PYTHONPATH={os.environ['PYTHONPATH']} {command}"
    if args.compare:
        return main_compare(args, kinds, command.strip())
    samples = []
    from httprail.cli._demo import quiet_structlog  # the logging stage's retry lines

    with quiet_structlog(), RotatingServer(args.rotate, cpu=SERVER_CPU) as server:
        for kind in kinds:
            sample = asyncio.run(
                measure(kind, server, concurrency=args.concurrency, duration=args.duration)
            )
            samples.append(sample)
            print(table([sample]).splitlines()[-1], flush=True)
    text = report(samples, args, command.strip())
    print(text)
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        old = RESULTS.read_text() if RESULTS.exists() else TITLE
        RESULTS.write_text(replace_section(old, text))
    missed = [s for s in samples if s.client == "httprail-h2" and s.failures]
    return 1 if missed else 0


def main_compare(args: argparse.Namespace, kinds: list[str], command: str) -> int:
    """``--compare``: the side-by-side run, its report, and whether the targets were met."""
    try:
        concurrencies = [int(c) for c in args.concurrencies.split(",") if c.strip()]
    except ValueError:
        raise SystemExit(f"--concurrencies takes integers: {args.concurrencies!r}") from None
    load_start = os.getloadavg()[0]
    cells = len(kinds) * len(concurrencies) * args.repeats
    print(f"== {cells} measurements of {args.duration:g} s (+{args.warm_up:g} s)", flush=True)
    from httprail.cli._demo import quiet_structlog

    with quiet_structlog():
        results, pinned = compare(
            kinds,
            concurrencies,
            args.repeats,
            warm_up=args.warm_up,
            duration=args.duration,
            log=lambda line: print(line, flush=True),
        )
    load = (load_start, os.getloadavg()[0])
    text = compare_report(results, kinds, concurrencies, args, command, load, pinned)
    print(text)
    checks = compare_checks(results, concurrencies)
    throughput.print_checks(checks)
    if args.write:
        old = RESULTS.read_text() if RESULTS.exists() else TITLE
        RESULTS.write_text(replace_section(old, text))
    return 1 if any(check.met is False for check in checks) else 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--serve":  # the server process
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit(main())
