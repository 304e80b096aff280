"""The ``httprail`` command: help, errors as one line, the demo end to end, optional extras."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
import typer

import httprail.cli
from httprail.cli import MISSING_EXTRA, _demo_command, main
from httprail.cli._demo import DemoReport

from ._reports import a_report


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_demo_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--help")
    assert code == 0
    assert "demo" in out
    assert "Usage" in out
    assert err == ""


def test_demo_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "demo", "--help")
    assert code == 0
    for option in ("--requests", "--concurrency", "--json", "--seed", "--rate"):
        assert option in out
    assert "fault server" in out


def test_no_arguments_print_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys)
    assert code == 0
    assert "demo" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"httprail {httprail.__version__}"


def test_an_unknown_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "frobnicate")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "No such command 'frobnicate'" in err
    assert "Try 'httprail --help'" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["demo", "--requests", "-5"], "--requests"),
        (["demo", "--requests", "abc"], "--requests"),
        (["demo", "--concurrency", "0"], "--concurrency"),
        (["demo", "--rate", "fast"], "--rate"),
        (["demo", "--jsn"], "--jsn"),
    ],
)
def test_a_bad_option_is_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("httprail demo: error: ")
    assert needle in err
    assert "Traceback" not in err


def test_python_dash_m_reports_errors_without_a_traceback() -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "httprail.cli", "demo", "--requests", "abc"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


def test_the_module_entry_point_exits_with_mains_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["httprail", "--version"])
    monkeypatch.delitem(sys.modules, "httprail.cli.__main__", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module("httprail.cli.__main__")
    assert exit_info.value.code == 0


def test_main_reads_sys_argv_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["httprail", "--version"])
    assert main() == 0
    assert "httprail" in capsys.readouterr().out


def test_without_the_cli_extra_main_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "typer", None)  # makes `import typer` fail
    monkeypatch.delitem(sys.modules, "httprail.cli._app", raising=False)
    monkeypatch.delitem(sys.modules, "httprail.cli._demo_command", raising=False)
    code, out, err = run_cli(capsys, "demo")
    assert code == 1
    assert out == ""
    assert err == MISSING_EXTRA + "\n"


def test_an_unrelated_import_error_is_not_blamed_on_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "httprail.cli._app", None)
    with pytest.raises(ImportError):
        main(["demo"])


def test_importing_the_package_does_not_import_typer() -> None:
    code = (
        "import sys, httprail.cli; "
        "print(sorted(m for m in ('typer', 'httprail.cli._app') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_fault_server_that_cannot_start_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def no_server(*_args: Any) -> None:
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(_demo_command, "run_demo", no_server)
    code, _, err = run_cli(capsys, "demo", "--json")
    assert code == 1
    assert err.count("\n") == 1
    assert "Address already in use" in err


def test_an_interrupt_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def interrupted(*_args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_demo_command, "run_demo", interrupted)
    code, _, err = run_cli(capsys, "demo", "--json")
    assert code == 130
    assert err == "httprail demo: interrupted\n"


def test_an_abort_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def aborted(*_args: Any) -> None:
        raise typer.Abort

    monkeypatch.setattr(_demo_command, "run_demo", aborted)
    code, _, err = run_cli(capsys, "demo", "--json")
    assert code == 130
    assert err == "httprail: interrupted\n"


def test_demo_prints_a_table_of_the_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def canned(*_args: Any) -> DemoReport:
        return a_report(naive_server=12, rail_server=6)

    monkeypatch.setattr(_demo_command, "run_demo", canned)
    code, out, _ = run_cli(capsys, "demo")
    assert code == 0
    assert "2.40x" in out
    assert "2.0x fewer requests" in out


def test_demo_json_prints_only_the_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def canned(*_args: Any) -> DemoReport:
        return a_report(naive_server=12, rail_server=6)

    monkeypatch.setattr(_demo_command, "run_demo", canned)
    code, out, _ = run_cli(capsys, "demo", "--json")
    assert code == 0
    assert json.loads(out)["naive"]["server_requests"] == 12


def test_demo_json_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    threads_before = threading.active_count()
    code, out, err = run_cli(capsys, "demo", "--requests", "200", "--json", "--seed", "3")
    assert code == 0, err
    assert err == ""
    report = json.loads(out)  # nothing but the JSON object on stdout
    assert report["requests"] == 200
    assert report["seed"] == 3
    naive, rail = report["naive"], report["httprail"]
    for figures in (naive, rail):
        for key in (
            "logical_requests",
            "successes",
            "typed_failures",
            "untyped_errors",
            "server_requests",
            "amplification",
            "p50_ms",
            "p99_ms",
            "breaker_trips",
        ):
            assert key in figures
        assert figures["logical_requests"] == 200
        outcomes = figures["successes"] + figures["typed_failures"] + figures["untyped_errors"]
        assert outcomes == 200
        phases = figures["phases"].values()
        assert sum(p["logical_requests"] for p in phases) == 200
        assert sum(p["server_requests"] for p in phases) == figures["server_requests"]
        assert figures["amplification"] == round(figures["server_requests"] / 200, 3)
        assert 0 <= figures["p50_ms"] <= figures["p99_ms"]
        assert figures["server_requests"] <= 4 * 200  # at most 1 + 3 retries each
    # httprail never raises, and spares the server.
    assert rail["untyped_errors"] == 0
    assert rail["amplification"] < naive["amplification"]
    assert rail["breaker_trips"] >= 1
    assert naive["breaker_trips"] is None
    # The naive client raises instead; every attempt it sent reached the server.
    assert naive["typed_failures"] == 0
    assert naive["attempts_sent"] == naive["server_requests"]
    assert naive["server_requests"] >= 200
    assert threading.active_count() == threads_before
    assert not [t for t in threading.enumerate() if t.name == "httprail-chaos"]


def test_demo_table_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "demo", "-n", "60", "--rate", "300", "-c", "2")
    assert code == 0, err
    for text in (
        "naive",
        "httprail",
        "logical requests",
        "typed failures",
        "untyped exceptions",
        "server-seen requests",
        "amplification",
        "p99 latency",
        "breaker trips",
        "rate limit",
        "untyped exceptions (naive:",
    ):
        assert text in out
    assert not [t for t in threading.enumerate() if t.name == "httprail-chaos"]
