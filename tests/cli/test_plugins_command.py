"""``httprail plugins``: discovered plugins by group, and the failed, blocked and clashing ones."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from httprail.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["plugins", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def install(root: Path, dist: str, entries: str, modules: dict[str, str]) -> None:
    """A fake installed distribution: a dist-info folder and its modules, on sys.path."""
    info = root / f"{dist.replace('-', '_')}-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text(entries)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(source)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("HTTPRAIL_DISABLED_PLUGINS", raising=False)
    monkeypatch.delenv("HTTPRAIL_PREFER_PLUGINS", raising=False)
    for name in [m for m in sys.modules if m.startswith("cli_fake_")]:
        monkeypatch.delitem(sys.modules, name)
    return tmp_path


def test_lists_builtins_and_plugin_packages_by_group(
    capsys: pytest.CaptureFixture[str], site: Path
) -> None:
    code, out, err = run(capsys, "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    plugins = {p["name"]: p for p in report["groups"]["httprail.plugins"]}
    assert plugins["retry"]["distribution"] == "httprail"
    assert plugins["template-header"]["distribution"] == "httprail-plugin-template"
    transports = [t["name"] for t in report["groups"]["httprail.transports"]]
    assert {"httpx", "aiohttp", "curl"} <= set(transports)
    assert (report["failed"], report["blocked"], report["clashes"]) == ([], [], [])


def test_the_table_names_each_group_and_plugin(
    capsys: pytest.CaptureFixture[str], site: Path
) -> None:
    code, out, _ = run(capsys)
    assert code == 0
    for text in ("httprail.plugins", "httprail.generators", "httprail.transports", "retry"):
        assert text in out


def test_the_table_never_breaks_a_name_or_object_on_an_80_column_terminal(
    capsys: pytest.CaptureFixture[str], site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys)
    assert code == 0
    lines = out.splitlines()
    for text in ("circuit_breaker", "httprail.middleware:CircuitBreaker", "api_key_auth"):
        assert any(text in line for line in lines), text
    assert max(len(line.rstrip()) for line in lines) <= 80


def test_failed_blocked_and_clashing_plugins_are_listed_with_the_reason(
    capsys: pytest.CaptureFixture[str], site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(site, "cli-fake-broken", "[httprail.plugins]\nbroken = cli_fake_gone:Thing\n", {})
    stage = "class S:\n    name = 's'\n    async def __call__(self, r, n): ...\n"
    install(site, "cli-fake-a", "[httprail.plugins]\ntwin = cli_fake_a:S\n", {"cli_fake_a": stage})
    install(site, "cli-fake-b", "[httprail.plugins]\ntwin = cli_fake_b:S\n", {"cli_fake_b": stage})
    monkeypatch.setenv("HTTPRAIL_DISABLED_PLUGINS", "template-header")
    code, out, _ = run(capsys, "--json")
    assert code == 0
    report = json.loads(out)
    (failed,) = report["failed"]
    assert (failed["name"], failed["distribution"]) == ("broken", "cli-fake-broken")
    assert "ModuleNotFoundError" in failed["reason"]
    assert [b["name"] for b in report["blocked"]] == ["template-header"]
    (clash,) = report["clashes"]
    assert sorted(clash["distributions"]) == ["cli-fake-a", "cli-fake-b"]
    names = [p["name"] for p in report["groups"]["httprail.plugins"]]
    assert "twin" not in names
    assert "template-header" not in names

    code, out, _ = run(capsys)
    assert code == 0
    assert "failed (1)" in out
    assert "blocked (1)" in out
    assert "clash:" in out

    code, _, _ = run(capsys, "--strict")
    assert code == 1


def test_a_malformed_preference_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPRAIL_PREFER_PLUGINS", "nonsense")
    code, out, err = run(capsys)
    assert code == 1
    assert out == ""
    assert err.startswith("httprail plugins: error: HTTPRAIL_PREFER_PLUGINS")
    assert err.count("\n") == 1
