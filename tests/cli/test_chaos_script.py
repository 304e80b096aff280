"""``ChaosScript``: a declared script becomes the server's replies; mistakes name their place."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from httprail import ConfigError
from httprail.testing import ChaosScript, ChaosServer, Fault, load_chaos_script


def test_replies_carry_every_declared_field(chaos_server: ChaosServer) -> None:
    ChaosScript.from_mapping(
        {
            "paths": {
                "/r": {
                    "replies": [
                        {"status": 429, "retry_after_ms": 250, "headers": {"X-A": 1}},
                        {"status": 201, "body": "made", "headers": {"content-type": "text/x"}},
                    ],
                    "repeat_last": False,
                },
                "/sse": {"replies": [{"events": ["one", "two"], "event_delay": 0.01}]},
            }
        }
    ).apply(chaos_server)
    with httpx.Client(base_url=chaos_server.url, timeout=5) as client:
        limited = client.get("/r")
        assert limited.status_code == 429
        assert (limited.headers["retry-after-ms"], limited.headers["x-a"]) == ("250", "1")
        made = client.get("/r")
        assert (made.status_code, made.text, made.headers["content-type"]) == (
            201,
            "made",
            "text/x",
        )
        assert client.get("/r").status_code == 429  # repeat_last = false: start over
        stream = client.get("/sse")
        assert stream.headers["content-type"] == "text/event-stream"
        assert stream.text == "data: one\n\ndata: two\n\n"


def test_a_fault_reply_keeps_its_delay() -> None:
    script = ChaosScript.from_mapping(
        {"paths": {"/f": {"replies": [{"fault": "hang", "delay": 1}]}}}
    )
    reply = script.paths["/f"].replies[0].build()  # type: ignore[index]
    assert (reply.fault, reply.delay) == (Fault.HANG, 1.0)


def test_random_failures_are_seeded(chaos_server: ChaosServer) -> None:
    spec = {"fail_ratio": 0.5, "seed": 3, "ok": {"status": 204}, "fail": {"status": 502}}
    ChaosScript.from_mapping({"paths": {"/a": {"random": spec}}}).apply(chaos_server)
    with httpx.Client(base_url=chaos_server.url, timeout=5) as client:
        first = [client.get("/a").status_code for _ in range(12)]
    ChaosScript.from_mapping({"paths": {"/a": {"random": spec}}}).apply(chaos_server)
    with httpx.Client(base_url=chaos_server.url, timeout=5) as client:
        again = [client.get("/a").status_code for _ in range(12)]
    assert first == again
    assert set(first) == {204, 502}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"path": {}}, "unknown key 'path'"),
        ({"paths": {"/a": {"replies": []}}}, "path '/a', replies: List should have at least 1"),
        (
            {"paths": {"/a": {"replies": [{"json": {}, "body": "x"}]}}},
            "path '/a', replies[0]: give one of json, body or events, not json and body",
        ),
        (
            {"paths": {"/a": {"replies": [{"fault": "reset", "status": 500}]}}},
            "a fault replaces the answer: drop status",
        ),
        (
            {"paths": {"/a": {"replies": [{"event_delay": 1}]}}},
            "event_delay and drop_after_events need events",
        ),
        (
            {"paths": {"/a": {"random": {"fail_ratio": 0.1}, "repeat_last": True}}},
            "repeat_last goes with replies",
        ),
        (
            {"paths": {"/a": {"rate_limited": {"rate": 0}}}},
            "path '/a', rate_limited.rate: Input should be greater than 0 (got 0)",
        ),
        (
            {"paths": {"/a": {"replies": [{"delay": -1}]}}},
            "replies[0].delay: Input should be greater than or equal to 0",
        ),
    ],
)
def test_mistakes_name_the_source_path_and_field(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        ChaosScript.from_mapping(data, source="chaos.toml")
    assert str(info.value).startswith("chaos.toml: ")
    assert needle in str(info.value)


def test_a_script_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match="must be a table"):
        ChaosScript.from_mapping([], source="x")  # type: ignore[arg-type]


def test_load_reads_toml(tmp_path: Path) -> None:
    file = tmp_path / "s.toml"
    file.write_text('[paths."/x"]\nreplies = [ { status = 418 } ]\n')
    assert load_chaos_script(file).paths["/x"].replies[0].status == 418  # type: ignore[index]
    file.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_chaos_script(file)
