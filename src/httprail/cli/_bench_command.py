"""``httprail bench``: run one of the project's benchmark scripts (``benchmarks/*.py``).

The benchmarks live in the source checkout, not in the installed package: they need the chaos
server, a naive baseline and sometimes matplotlib, and their results are committed files. The
command finds the ``benchmarks/`` folder (``--dir``, else the current directory or one of its
parents, else the checkout httprail is installed from in development mode) and runs the script
with the same Python, passing the remaining arguments through.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["BENCHMARKS", "find_benchmarks", "register"]

PROG = "httprail bench"
BENCHMARKS = {
    "overhead": "in-memory cost per request of the stages and the client (issue 2)",
    "resilience": "six fault scenarios, naive httpx + tenacity vs the default stack (issue 4)",
    "throughput": "rps and p50/p99 at c=1/16/64 per client and terminal, and a soak (issue 5)",
}


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""
    app.command(
        "bench",
        # No help option of its own: 'httprail bench NAME --help' is the script's help;
        # 'httprail bench --help' (no name) is this command's.
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(bench)


def find_benchmarks(start: Path | None = None) -> Path | None:
    """The ``benchmarks/`` folder of an httprail checkout near ``start`` (or the installed one)."""
    here = (start or Path.cwd()).resolve()
    package_root = Path(__file__).resolve().parents[3]  # src/httprail/cli -> the checkout
    for folder in (*(p / "benchmarks" for p in (here, *here.parents)), package_root / "benchmarks"):
        if (folder / "resilience.py").is_file() and (folder / "overhead.py").is_file():
            return folder
    return None


def bench(
    context: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(
            help=f"Which benchmark: {', '.join(BENCHMARKS)}. Further arguments go to the "
            "script (e.g. --quick, --write; see 'httprail bench NAME --help').",
            show_default=False,
        ),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="The benchmarks folder (default: found from here)."),
    ] = None,
) -> int:
    """Run a benchmark script from the checkout and print its figures.

    Each script measures its baseline in the same run and, with --write, stores its results
    under benchmarks/results/. Exit code: the script's (resilience: 1 if a target was missed),
    2 if the benchmark or its folder cannot be found.
    """
    if name is None or name in ("-h", "--help"):
        typer.echo(context.get_help())
        return 0 if name is not None or context.args else 2
    if name not in BENCHMARKS:
        known = ", ".join(BENCHMARKS)
        typer.echo(f"{PROG}: error: unknown benchmark {name!r}; known: {known}", err=True)
        return 2
    folder = directory if directory is not None else find_benchmarks()
    script = folder / f"{name}.py" if folder is not None else None
    if script is None or not script.is_file():
        where = f"in {directory}" if directory is not None else "near here"
        typer.echo(
            f"{PROG}: error: no benchmarks/{name}.py {where}; the benchmarks live in a source "
            "checkout of httprail (run from it, or pass --dir)",
            err=True,
        )
        return 2
    try:
        return subprocess.call([sys.executable, str(script), *context.args])
    except KeyboardInterrupt:
        typer.echo(f"{PROG}: interrupted", err=True)
        return 130
