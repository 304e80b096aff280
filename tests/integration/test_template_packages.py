"""Plugin packages cut from ``plugins/_template`` and installed with pip, then discovered.

Three copies of the template are built and installed (``pip install --target``) into a folder
put on ``sys.path``, beside the template package itself, which the dev install provides:

- ``httprail-plugin-good`` — the template renamed: its stage is ``good-header``;
- ``httprail-plugin-broken`` — its module raises on import;
- ``httprail-plugin-rival`` — claims ``template-header``, the template's own name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from httprail import ConfigError, PluginRegistry, build_stack
from httprail.testing import ChaosServer

TEMPLATE = Path(__file__).resolve().parents[2] / "plugins" / "_template"
TEMPLATE_DIST = "httprail-plugin-template"


def cut(root: Path, dist: str, entry_name: str, *, broken: bool = False) -> Path:
    """A copy of the template renamed to ``dist`` whose stage is registered as ``entry_name``."""
    module = dist.replace("-", "_")
    target = root / dist
    shutil.copytree(
        TEMPLATE,
        target,
        ignore=shutil.ignore_patterns("tests", "*.egg-info", "build", "dist", "__pycache__", ".*"),
    )
    (target / "src" / "httprail_plugin_template").rename(target / "src" / module)
    pyproject = target / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    text = text.replace(f'name = "{TEMPLATE_DIST}"', f'name = "{dist}"')
    text = text.replace("httprail_plugin_template", module)
    text = text.replace("template-header =", f"{entry_name} =")
    pyproject.write_text(text, encoding="utf-8")
    if broken:
        init = target / "src" / module / "__init__.py"
        init.write_text('raise RuntimeError("this plugin cannot start")\n', encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the three packages were installed into (built once for this module)."""
    sources = tmp_path_factory.mktemp("sources")
    site = tmp_path_factory.mktemp("site")
    packages = [
        cut(sources, "httprail-plugin-good", "good-header"),
        cut(sources, "httprail-plugin-broken", "broken-header", broken=True),
        cut(sources, "httprail-plugin-rival", "template-header"),
    ]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    command += ["--disable-pip-version-check", "--target", str(site), *map(str, packages)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return site


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in [m for m in sys.modules if m.startswith("httprail_plugin_")]:
        if name.split(".")[0] != "httprail_plugin_template":
            del sys.modules[name]


def discover(site: Path, **options: object) -> PluginRegistry:
    """Discovery over the installed packages plus everything in the test environment."""
    dists = [*metadata.distributions(path=[str(site)]), *metadata.distributions()]
    return PluginRegistry.discover(distributions=dists, **options)  # type: ignore[arg-type]


def test_pip_installed_the_three_packages(installed: Path) -> None:
    names = sorted(d.metadata["Name"] for d in metadata.distributions(path=[str(installed)]))
    assert names == ["httprail-plugin-broken", "httprail-plugin-good", "httprail-plugin-rival"]


async def test_an_installed_package_is_discovered_and_usable_by_name(
    installed: Path, chaos_server: ChaosServer
) -> None:
    registry = discover(installed, environ={})
    spec = registry.get("plugins", "good-header")
    assert (spec.distribution, spec.version) == ("httprail-plugin-good", "0.1.0")
    assert spec.value == "httprail_plugin_good:HeaderInjector"
    declared = {
        "services": {
            "search": {
                "base_url": chaos_server.url,
                "stack": ["retry", "good-header"],
                "options": {"good-header": {"headers": {"X-Team": "search"}}},
            }
        }
    }
    async with build_stack(declared, "search", registry=registry) as stack:
        outcome = await stack.client.get("/hello")
    assert outcome.unwrap().status_code == 200
    assert [r.header("x-team") for r in chaos_server.requests_for("/hello")] == ["search"]


def test_a_broken_package_is_reported_and_skipped(installed: Path) -> None:
    with capture_logs() as logs:
        registry = discover(installed, environ={})
    failed = [f for f in registry.failed if f.distribution == "httprail-plugin-broken"]
    assert len(failed) == 1
    assert failed[0].name == "broken-header"
    assert "RuntimeError: this plugin cannot start" in failed[0].reason
    warnings = [e for e in logs if e["event"] == "httprail.plugin_failed"]
    assert any(e.get("plugin") == "broken-header" for e in warnings), warnings
    assert "broken-header" not in registry.names("plugins")
    assert "good-header" in registry.names("plugins")  # the others still load


def test_a_blocked_package_is_never_imported(installed: Path) -> None:
    sys.modules.pop("httprail_plugin_good", None)
    registry = discover(installed, environ={"HTTPRAIL_DISABLED_PLUGINS": "good-header"})
    assert "good-header" not in registry.names("plugins")
    assert "httprail_plugin_good" not in sys.modules
    assert [b.distribution for b in registry.blocked] == ["httprail-plugin-good"]


def test_a_name_claimed_by_two_packages_is_a_config_error_naming_both(installed: Path) -> None:
    registry = discover(installed, environ={})
    with pytest.raises(ConfigError) as caught:
        registry.get("plugins", "template-header")
    message = str(caught.value)
    assert "httprail-plugin-rival" in message
    assert TEMPLATE_DIST in message
    chosen = discover(
        installed, environ={"HTTPRAIL_PREFER_PLUGINS": "template-header=httprail-plugin-rival"}
    )
    assert chosen.get("plugins", "template-header").distribution == "httprail-plugin-rival"


def test_the_plugins_command_lists_them(installed: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-m", "httprail.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listing = json.dumps(json.loads(done.stdout))
    for name in ("httprail-plugin-good", "httprail-plugin-broken", "httprail-plugin-rival"):
        assert name in listing
    assert "this plugin cannot start" in listing
