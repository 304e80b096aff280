"""``httprail request``: one call through a stack against a real fault server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from httprail.cli import main
from httprail.cli._request_command import EXIT_CODES
from httprail.testing import ChaosServer, Fault, Reply

from .._net import closed_port

SECRET = "s3cret-token-value"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_BACKOFF_BASE", "0.01")
    monkeypatch.setenv("HTTP_BACKOFF_MAX", "0.02")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["request", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and err.startswith("httprail request: error: ")


def test_a_json_answer_is_printed_pretty(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    chaos_server.script("/users/1", Reply.json({"name": "rail", "tags": ["a", "b"]}))
    code, out, err = run(capsys, "get", chaos_server.url_for("/users/1"))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"GET {chaos_server.url}/users/1"
    assert "HTTP/1.1 200 OK  (1 attempt," in out
    assert "content-type: application/json" in lines
    assert '  "name": "rail",' in lines
    assert '    "a",' in lines


def test_each_failed_attempt_is_shown_with_its_wait(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    chaos_server.script(
        "/flaky",
        Reply.status(503),
        Reply.status(503, retry_after_ms="30"),
        Reply.json({"ok": True}),
    )
    code, out, err = run(capsys, "GET", chaos_server.url_for("/flaky"), "--retries", "3")
    assert (code, err) == (0, "")
    assert chaos_server.count("/flaky") == 3
    assert "attempt 1: HTTP 503 Service Unavailable after" in out
    assert "(backoff)" in out
    assert "attempt 2: HTTP 503 Service Unavailable after" in out
    assert "retrying in 0.03 s (retry-after-ms)" in out
    assert "attempt 3: HTTP 200 OK after" in out
    assert "(3 attempts," in out


def test_a_404_exits_4_without_a_retry(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    chaos_server.script("/missing", Reply.json({"error": "no such thing"}, status=404))
    code, out, err = run(capsys, "GET", chaos_server.url_for("/missing"))
    assert code == 4
    assert chaos_server.count("/missing") == 1
    assert one_line(err)
    assert "HTTP 404 Not Found" in err
    assert '"error": "no such thing"' in out  # the body is still shown


def test_a_5xx_without_retries_exits_5(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    chaos_server.script("/down", Reply.status(503))
    code, _, err = run(capsys, "GET", chaos_server.url_for("/down"), "--retries", "0")
    assert code == 5
    assert one_line(err)


def test_running_out_of_retries_exits_9(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    chaos_server.script("/down", Reply.status(502))
    code, out, err = run(capsys, "GET", chaos_server.url_for("/down"), "--retries", "2")
    assert code == 9
    assert chaos_server.count("/down") == 3
    assert one_line(err)
    assert "gave up after 3 attempts" in err
    assert "attempt 3: HTTP 502 Bad Gateway" in out


def test_an_unreachable_url_is_one_line_and_exits_6(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}/x"
    code, out, err = run(capsys, "GET", url, "--retries", "0")
    assert code == 6
    assert one_line(err)
    assert "ConnectError" in err
    assert "Traceback" not in out + err
    assert "no response" in out


def test_a_reset_is_a_transport_error(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    chaos_server.script("/reset", Reply.fail(Fault.RESET))
    code, _, err = run(capsys, "POST", chaos_server.url_for("/reset"), "--retries", "0")
    assert code == 6
    assert one_line(err)


def test_a_deadline_exits_7(capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer) -> None:
    chaos_server.script("/hang", Reply.fail(Fault.HANG))
    code, _, err = run(capsys, "GET", chaos_server.url_for("/hang"), "--timeout", "0.3")
    assert code == 7
    assert one_line(err)
    assert "RequestTimeoutError: the call's total deadline passed" in err


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (f"Authorization Bearer {SECRET}", "found no ':'"),
        (f": {SECRET}", "name before ':' is empty"),
        (f"Bad Name: {SECRET}", "characters a header cannot have"),
    ],
)
def test_a_malformed_header_is_one_line_without_its_value(
    capsys: pytest.CaptureFixture[str], header: str, reason: str
) -> None:
    code, out, err = run(capsys, "GET", "http://127.0.0.1:9/", "-H", header)
    assert code == 2
    assert out == ""
    assert one_line(err)
    assert reason in err
    assert SECRET not in err


def test_bad_json_and_two_bodies_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "POST", "http://127.0.0.1:9/", "--json", "{nope")
    assert code == 2
    assert one_line(err)
    assert "--json is not valid JSON" in err
    code, _, err = run(capsys, "POST", "http://127.0.0.1:9/", "--json", "{}", "--data", "x")
    assert code == 2
    assert "not both" in err


def test_a_bad_method_or_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "GE T", "http://127.0.0.1:9/")
    assert code == 2
    assert one_line(err)
    code, _, err = run(capsys, "GET", f"ftp://user:pw@host/x?token={SECRET}")
    assert code == 2
    assert one_line(err)
    assert "unsupported scheme 'ftp'" in err
    assert SECRET not in err
    assert "pw" not in err


def test_the_json_body_is_sent(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    code, _, _ = run(capsys, "POST", chaos_server.url_for("/items"), "-j", '{"a": [1, 2]}')
    assert code == 0
    seen = chaos_server.requests_for("/items")[0]
    assert json.loads(seen.body) == {"a": [1, 2]}
    assert seen.header("content-type") == "application/json"
    code, _, _ = run(capsys, "PUT", chaos_server.url_for("/raw"), "--data", "plain text")
    assert code == 0
    assert chaos_server.requests_for("/raw")[0].body == b"plain text"


def test_a_url_without_a_scheme_means_http(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    code, _, err = run(capsys, "GET", f"127.0.0.1:{chaos_server.port}/bare")
    assert (code, err) == (0, "")
    assert chaos_server.count("/bare") == 1


def test_secrets_never_appear_in_the_output(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    chaos_server.script(
        "/login",
        Reply.json({"ok": True}, headers={"Set-Cookie": f"session={SECRET}", "X-Trace": "t1"}),
    )
    url = chaos_server.url_for("/login") + f"?token={SECRET}&page=2"
    for extra in ([], ["--json-output"]):
        code, out, err = run(capsys, "GET", url, "-H", f"Authorization: Bearer {SECRET}", *extra)
        assert code == 0
        assert SECRET not in out + err
        assert "[REDACTED]" in out
        assert "token=REDACTED" in out
        assert "t1" in out
    assert chaos_server.requests_for("/login")[0].header("authorization") == f"Bearer {SECRET}"


def test_secrets_stay_out_of_error_lines(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    chaos_server.script("/denied", Reply.status(403))
    url = chaos_server.url_for("/denied") + f"?api_key={SECRET}"
    code, out, err = run(capsys, "GET", url, "-H", f"X-Api-Key: {SECRET}", "--json-output")
    assert code == 4
    assert SECRET not in out + err
    assert one_line(err)


def test_json_output_is_one_object_for_machines(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    chaos_server.script("/data", Reply.status(503), Reply.json({"n": 1}))
    code, out, err = run(capsys, "GET", chaos_server.url_for("/data"), "--json-output")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["ok"] is True
    assert report["status"] == 200
    assert report["body"] == {"n": 1}
    assert report["body_kind"] == "json"
    assert report["headers"]["content-type"] == "application/json"
    assert [a["result"] for a in report["attempts"]] == [
        "HTTP 503 Service Unavailable",
        "HTTP 200 OK",
    ]
    assert report["attempts"][0]["wait_s"] is not None
    assert report["error"] is None
    assert report["exit_code"] == 0
    assert report["elapsed_ms"] > 0


def test_json_output_names_the_error_kind(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}/x"
    code, out, err = run(capsys, "GET", url, "--retries", "0", "--json-output")
    assert code == 6
    assert one_line(err)
    report = json.loads(out)
    assert report["error"]["kind"] == "transport"
    assert report["error"]["type"] == "ConnectError"
    assert report["status"] is None


def test_headers_can_be_hidden_and_bodies_are_cut(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    chaos_server.script("/big", Reply(headers=(("content-type", "text/plain"),), body=b"x" * 500))
    code, out, _ = run(
        capsys, "GET", chaos_server.url_for("/big"), "--no-headers", "--max-body", "100"
    )
    assert code == 0
    assert "content-type" not in out
    assert "x" * 100 in out
    assert "x" * 101 not in out
    assert "[truncated: showing 100 characters of a 500-byte body" in out


def test_a_binary_body_is_summarised(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer
) -> None:
    body = bytes(range(256)) * 4
    chaos_server.script("/png", Reply(headers=(("content-type", "image/png"),), body=body))
    code, out, _ = run(capsys, "GET", chaos_server.url_for("/png"))
    assert code == 0
    assert "[binary body: 1,024 bytes, image/png]" in out
    code, out, _ = run(capsys, "GET", chaos_server.url_for("/png"), "--json-output")
    report = json.loads(out)
    assert (report["body_kind"], report["body_bytes"], report["body"]) == ("binary", 1024, None)


def test_a_bad_stack_file_is_one_line_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.toml"
    code, out, err = run(capsys, "GET", "/x", "--stack", f"{missing}:billing")
    assert code == 2
    assert out == ""
    assert one_line(err)
    assert str(missing) in err
    broken = tmp_path / "broken.toml"
    broken.write_text("[services.billing]\nbase_url = 'http://x'\ncolour = 'red'\n")
    code, _, err = run(capsys, "GET", "/x", "--stack", f"{broken}:billing")
    assert code == 2
    assert one_line(err)
    assert str(broken) in err
    assert "colour" in err


def test_an_unknown_stack_name_lists_the_declared_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "httprail.toml"
    file.write_text("[services.billing]\nbase_url = 'http://127.0.0.1:9'\n")
    code, _, err = run(capsys, "GET", "/x", "--stack", f"{file}:shipping")
    assert code == 2
    assert one_line(err)
    assert "'shipping'" in err
    assert "billing" in err
    code, _, err = run(capsys, "GET", "/x", "--stack", "no-colon")
    assert code == 2
    assert "FILE:NAME" in err


def test_a_declared_stack_takes_relative_urls_and_the_flags_win(
    capsys: pytest.CaptureFixture[str], chaos_server: ChaosServer, tmp_path: Path
) -> None:
    file = tmp_path / "httprail.toml"
    file.write_text(
        f"[services.billing]\nbase_url = '{chaos_server.url}/v1'\n"
        "headers = { X-Service = 'billing' }\n"
        "settings = { max_retries = 5 }\n"
    )
    chaos_server.script("/v1/invoices", Reply.status(500))
    code, out, err = run(capsys, "GET", "invoices", "--stack", f"{file}:billing", "--retries", "1")
    assert code == 9
    assert chaos_server.count("/v1/invoices") == 2  # --retries 1 beat the file's 5
    assert f"GET {chaos_server.url}/v1/invoices" in out
    assert chaos_server.requests_for("/v1/invoices")[0].header("x-service") == "billing"
    assert one_line(err)


def test_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for option in ("--header", "--json", "--data", "--retries", "--timeout", "--stack"):
        assert option in out
    for exit_code, _, _ in EXIT_CODES:
        assert f"{exit_code:>5}  " in out


def test_an_interrupt_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from httprail.cli import _request_command

    async def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_request_command, "_send", interrupted)
    code, _, err = run(capsys, "GET", "http://127.0.0.1:9/")
    assert code == 130
    assert err == "httprail request: interrupted\n"


def test_the_docs_list_every_exit_code() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for exit_code, kind, _ in EXIT_CODES:
        row = f"| {exit_code} | `{kind}` |" if kind != "interrupted" else f"| {exit_code} | |"
        assert row in docs, row
