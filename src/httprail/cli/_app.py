"""The typer application behind ``httprail`` (imports typer and rich).

Each command lives in its own module with a ``register(app)`` function listed in
:data:`COMMANDS`, so adding one (``request``, ``chaos``, ``plugins``, ``bench``) is a new
module and one line here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Final

import structlog
import typer

from .._version import __version__
from . import _bench_command, _chaos_command, _demo_command, _plugins_command, _request_command

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

__all__ = ["COMMANDS", "build_app", "run"]

COMMANDS: Final[tuple[Callable[[typer.Typer], None], ...]] = (
    _bench_command.register,
    _chaos_command.register,
    _demo_command.register,
    _plugins_command.register,
    _request_command.register,
)

_HELP = (
    "httprail: async HTTP on rails. Retry, circuit breaker, timeouts and metrics in one "
    "middleware chain, where every call returns a Result instead of raising."
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"httprail {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_show_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """httprail: async HTTP on rails. Run 'httprail COMMAND --help' for a command's options."""


def build_app() -> typer.Typer:
    """A fresh ``httprail`` application with every command registered."""
    app = typer.Typer(
        name="httprail",
        help=_HELP,
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        # Click's own help: paragraphs are re-wrapped to the terminal (rich's mode kept the
        # source's line breaks and wrapped again at 80 columns) and flags show no metavar.
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for register in COMMANDS:
        register(app)
    return app


def _one_line(text: str) -> str:
    """``text`` on one line, ending with a full stop."""
    line = " ".join(text.split())
    return line if line.endswith((".", "!", "?")) else f"{line}."


def _stderr_logger(*args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)  # looked up per logger: follows redirection


def run(argv: Sequence[str]) -> int:
    """Run ``httprail`` with ``argv``; returns the exit code.

    Usage errors (unknown command or option, bad value) print one line to stderr and give 2;
    an interrupt gives 130. No traceback is printed for either.
    """
    if not structlog.is_configured():  # a command's output is stdout; its logs go to stderr
        structlog.configure(logger_factory=_stderr_logger)
    app = build_app()
    try:
        result = app(args=list(argv), prog_name="httprail", standalone_mode=False)
    except click_exceptions.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare 'httprail': the help, not an error
            typer.echo(exc.format_message())
            return 0
        path = exc.ctx.command_path if exc.ctx is not None else "httprail"
        message = _one_line(exc.format_message())
        typer.echo(f"{path}: error: {message} Try '{path} --help'.", err=True)
        return exc.exit_code
    except typer.Abort:
        typer.echo("httprail: interrupted", err=True)
        return 130
    return result if isinstance(result, int) else 0
