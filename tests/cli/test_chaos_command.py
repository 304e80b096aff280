"""``httprail chaos``: the fault server in the foreground, scripted from a TOML file."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from httprail.cli import main

SCRIPT = """
[paths."/sequence"]
replies = [
  { status = 503, retry_after = 1 },
  { status = 200, json = { ok = true, n = 2 }, headers = { X-Step = "two" } },
]
repeat_last = true

[paths."/slow"]
replies = [ { status = 202, body = "late", delay = 0.2 } ]

[paths."/reset"]
replies = [ { fault = "reset" } ]

[paths."/limited"]
rate_limited = { rate = 1, retry_after = "3" }

[paths."/flaky"]
random = { fail_ratio = 1.0, fail = { status = 500 } }
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["chaos", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def start(*argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-m", "httprail.cli", "chaos", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def first_line(process: subprocess.Popen[str], timeout: float = 10.0) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "the chaos server printed nothing"
    return process.stdout.readline()


@pytest.fixture
def script_file(tmp_path: Path) -> Path:
    file = tmp_path / "chaos.toml"
    file.write_text(SCRIPT)
    return file


@pytest.fixture
def server_process(script_file: Path) -> Iterator[subprocess.Popen[str]]:
    process = start("--port", "0", "--json", "--script", str(script_file))
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_serves_the_script_until_sigint(server_process: subprocess.Popen[str]) -> None:
    announced = json.loads(first_line(server_process))
    assert announced["host"] == "127.0.0.1"
    assert announced["url"] == f"http://127.0.0.1:{announced['port']}"
    assert announced["paths"] == ["/flaky", "/limited", "/reset", "/sequence", "/slow"]
    with httpx.Client(base_url=announced["url"], timeout=5) as client:
        first = client.get("/sequence")
        assert (first.status_code, first.headers["retry-after"]) == (503, "1")
        second = client.get("/sequence")
        assert second.status_code == 200
        assert second.json() == {"ok": True, "n": 2}
        assert second.headers["x-step"] == "two"
        assert client.get("/sequence").status_code == 200  # the last reply repeats
        slow = client.get("/slow")
        assert (slow.status_code, slow.text) == (202, "late")
        assert slow.elapsed.total_seconds() >= 0.2
        with pytest.raises(httpx.TransportError):
            client.get("/reset")
        assert client.get("/limited").status_code == 200
        refused = client.get("/limited")
        assert (refused.status_code, refused.headers["retry-after"]) == (429, "3")
        assert client.get("/flaky").status_code == 500
        assert client.get("/unscripted").json() == {"ok": True}
    server_process.send_signal(signal.SIGINT)
    out, err = server_process.communicate(timeout=10)
    assert server_process.returncode == 0
    assert out == ""
    assert "stopped after 9 requests" in err
    assert "Traceback" not in err


def test_sigterm_stops_it_cleanly(script_file: Path) -> None:
    process = start("--port", "0", "--script", str(script_file))
    try:
        line = first_line(process)
        assert line.startswith("httprail chaos: listening on http://127.0.0.1:")
        assert "(5 scripted paths); Ctrl-C to stop" in line
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
        assert process.returncode == 0
        assert "stopped after 0 requests" in err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def test_a_bad_script_is_one_line_naming_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "bad.toml"
    file.write_text('[paths."/x"]\nreplies = [ { status = 200 }, { statuz = 503 } ]\n')
    code, out, err = run(capsys, "--port", "0", "--script", str(file))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"httprail chaos: error: {file}: path '/x', replies[1]")
    assert "unknown key 'statuz'" in err


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("not toml [", "not valid TOML"),
        ('[paths."/x"]\nreplies = [ { fault = "explode" } ]\n', "replies[0].fault"),
        ('[paths."/x"]\nrandom = { fail_ratio = 2 }\n', "random.fail_ratio"),
        ('[paths."/x"]\nreplies = [ { status = 99 } ]\n', "replies[0].status"),
        ('[paths."/x"]\n', "give exactly one of replies, random or rate_limited"),
        ('[paths."x"]\nreplies = [ {} ]\n', "must start with '/'"),
    ],
)
def test_every_script_mistake_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, needle: str
) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(content)
    code, _, err = run(capsys, "--port", "0", "--script", str(file))
    assert code == 2
    assert err.count("\n") == 1
    assert str(file) in err
    assert needle in err


def test_a_missing_script_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "--port", "0", "--script", str(tmp_path / "nope.toml"))
    assert code == 2
    assert "cannot read the chaos script" in err


def test_a_port_in_use_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run(capsys, "--port", str(port))
    assert code == 1
    assert out == ""
    assert (
        err == f"httprail chaos: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


def test_a_bad_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--port", "70000")
    assert code == 2
    assert err.count("\n") == 1
    assert "--port" in err
    code, _, err = run(capsys)
    assert code == 2
    assert "--port" in err
