"""``httprail demo``: options, live progress bars, and the side-by-side table (or JSON)."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ._demo import (
    CLIENTS,
    PHASES,
    ClientFigures,
    DemoConfig,
    DemoReport,
    run_demo,
    settings_used,
)

__all__ = ["register", "render_report"]

_TITLES = {"naive": "naive: httpx + tenacity", "httprail": "httprail: default stack"}
_HEADERS = {"naive": "naive\nhttpx + tenacity", "httprail": "httprail\ndefault stack"}


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command("demo")(demo)


def demo(
    requests: Annotated[
        int, typer.Option("--requests", "-n", min=1, help="Logical requests per client.")
    ] = 2000,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            max=1000,
            help="Requests each client may have on the wire at once (its connection pool size).",
        ),
    ] = 4,
    rate: Annotated[
        float,
        typer.Option(min=1.0, max=100_000.0, help="Arrivals per second, per client."),
    ] = 100.0,
    seed: Annotated[int, typer.Option(help="Seed of the server's random faults.")] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the figures as one JSON object, no progress.")
    ] = False,
) -> None:
    """Naive httpx + tenacity vs httprail's default stack, against a local fault server.

    Starts a fault server on 127.0.0.1 (no network needed) and sends the same requests, at
    the same moments, through both clients. The server goes through four phases of at least
    2 s each: 20% random 503s, a full outage, a slow tail, and a rate limit answering 429 with
    retry-after-ms. Then it compares what the callers got (successes, typed failures, raised
    exceptions, latency) and how many requests the server had to absorb, says what httprail
    ran, and explains each figure httprail is behind on. About 22 s with the defaults.
    """
    config = DemoConfig(requests=requests, concurrency=concurrency, seed=seed, rate=rate)
    console = Console()
    try:
        if as_json:
            report = asyncio.run(run_demo(config))
        else:
            with _LiveProgress(console, config) as live:
                report = asyncio.run(run_demo(config, live))
    except OSError as exc:
        typer.echo(f"httprail demo: error: the fault server failed: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("httprail demo: interrupted", err=True)
        raise typer.Exit(130) from None
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        render_report(console, report)


class _LiveProgress:
    """Rich progress bars, one per client, with the phase the arrivals are in."""

    def __init__(self, console: Console, config: DemoConfig) -> None:
        self._bars = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[dim]{task.fields[phase]}"),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=4,
        )
        self._tasks: dict[str, TaskID] = {
            name: self._bars.add_task(_TITLES[name], total=config.requests, phase="")
            for name in CLIENTS
        }

    def __enter__(self) -> _LiveProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bars.stop()

    def phase_started(self, phase: int) -> None:
        """Show which phase the arrivals are in."""
        label = f"arrivals: {PHASES[phase].name}"
        for task in self._tasks.values():
            self._bars.update(task, phase=label)

    def request_done(self, client: str) -> None:
        """Advance ``client``'s bar."""
        self._bars.advance(self._tasks[client])


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f} ms"


def _kinds(total: int, kinds: Counter[str]) -> str:
    """``total`` and, one per line, how many of each kind."""
    lines = [f"{total:,}"]
    lines.extend(f"[dim]{n:,} {kind}[/]" for kind, n in kinds.most_common())
    return "\n".join(lines)


def _share(part: int, whole: int) -> str:
    return f"{part:,} ({part / whole:.1%})" if whole else f"{part:,}"


def _summary_rows(figures: ClientFigures) -> list[str]:
    typed = sum(figures.typed_failures.values())
    untyped = sum(figures.untyped_errors.values())
    trips = "- (no breaker)" if figures.breaker_trips is None else f"{figures.breaker_trips:,}"
    return [
        f"{figures.logical:,}",
        _share(figures.successes, figures.logical),
        _kinds(typed, figures.typed_failures) if typed else "0",
        _kinds(untyped, figures.untyped_errors) if untyped else "0",
        f"{figures.server_requests:,}",
        f"{figures.amplification:.2f}x" if figures.logical else "-",
        _ms(figures.latency_ms(0.50)),
        _ms(figures.latency_ms(0.99)),
        trips,
        _count(figures.retries),
    ]


_SUMMARY_LABELS = (
    "logical requests",
    "successes",
    "typed failures",
    "untyped exceptions",
    "server-seen requests",
    "amplification",
    "p50 latency",
    "p99 latency",
    "breaker trips",
    "retries",
)


def render_report(console: Console, report: DemoReport) -> None:
    """Print the side-by-side table, the per-phase table and a one-line verdict."""
    config = report.config
    console.print(
        f"[bold]httprail demo[/]: {config.requests:,} requests/client at {config.rate:g}/s, "
        f"{config.concurrency} connections, seed {config.seed}, {report.seconds:.1f} s"
    )
    table = Table()
    table.add_column("")
    for name in CLIENTS:
        table.add_column(_HEADERS[name], justify="right")
    rows = zip(
        _SUMMARY_LABELS, _summary_rows(report.naive), _summary_rows(report.httprail), strict=True
    )
    for label, naive, rail in rows:
        table.add_row(label, naive, rail)
    console.print(table)

    phases = Table(
        title="by phase of arrival: successes / arrivals (server-seen requests), p99",
        title_justify="left",
    )
    phases.add_column("phase")
    phases.add_column("what the server does")
    for name in CLIENTS:
        phases.add_column(name, justify="right")
    durations = config.phase_seconds()
    for index, phase in enumerate(PHASES):
        cells = [
            f"{f.phase_successes[index]:,} / {f.phase_logical[index]:,} "
            f"({f.phase_server[index]:,}), {_ms(f.latency_ms(0.99, index))}"
            for f in (report.naive, report.httprail)
        ]
        phases.add_row(f"{phase.name} ({durations[index]:.1f} s)", phase.description, *cells)
    console.print(phases)
    console.print("[dim]Latency runs from a request's arrival to its caller's result.[/]")
    console.print(f"[dim]httprail runs {report.stack}; {_settings_line(report)}[/]")
    for line in tradeoffs(report):
        console.print(f"[yellow]{line}[/]")
    console.print(verdict(report))


def _settings_line(report: DemoReport) -> str:
    rows = settings_used(report.settings)
    if not rows:
        return "every setting at its default."
    shown = ", ".join(
        f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
        for name, _default, value, _source in rows
    )
    sources = sorted({source for *_rest, source in rows if source != "demo"})
    from_env = f"; from the environment: {', '.join(sources)}" if sources else ""
    return f"defaults except, to fit a run of seconds: {shown}{from_env}."


def tradeoffs(report: DemoReport) -> list[str]:
    """One line for each figure on which httprail is behind the naive client, saying why."""
    naive, rail = report.naive, report.httprail
    lines = []
    for index, phase in enumerate(PHASES):
        behind = naive.phase_successes[index] - rail.phase_successes[index]
        if behind <= 0:
            continue
        naive_load = _per_arrival(naive.phase_server[index], naive.phase_logical[index])
        rail_load = _per_arrival(rail.phase_server[index], rail.phase_logical[index])
        lines.append(
            f"{phase.name}: naive has {behind:,} more success{'' if behind == 1 else 'es'}, "
            f"bought with {naive_load:.1f} "
            f"requests per arrival against a struggling server (httprail {rail_load:.1f}): "
            + _WHY[index]
        )
    if rail.latency_ms(0.99) > naive.latency_ms(0.99):
        worst = max(range(len(PHASES)), key=lambda i: rail.latency_ms(0.99, i))
        lines.append(
            f"p99: httprail's tail comes from the {PHASES[worst].name} phase, where it waits "
            "as long as the server asks before retrying; the naive client does not wait."
        )
    return lines


_WHY = (
    "its retries are not limited by a retry budget.",
    "its retries reached the server after the outage ended; httprail's open circuit "
    "fails such calls at once instead of hammering the server.",
    "httprail's circuit, opened by the outage, turned the first arrivals away until its next "
    "probe found the server back.",
    "it retries without the waits the server asks for; httprail honours them and its retry "
    "budget caps retries at a share of the traffic.",
)


def _per_arrival(server: int, logical: int) -> float:
    return server / logical if logical else math.nan


def verdict(report: DemoReport) -> str:
    """One sentence on the comparison, stating what the figures show (good or bad)."""
    naive, rail = report.naive, report.httprail
    untyped = sum(rail.untyped_errors.values())
    naive_untyped = sum(naive.untyped_errors.values())
    parts = [
        f"httprail: {untyped:,} untyped exceptions (naive: {naive_untyped:,})",
    ]
    if rail.server_requests and rail.amplification < naive.amplification:
        ratio = naive.server_requests / rail.server_requests
        parts.append(f"{ratio:.1f}x fewer requests sent to the failing server")
    else:
        parts.append(f"amplification {rail.amplification:.2f}x vs naive {naive.amplification:.2f}x")
    return "; ".join(parts) + "."
