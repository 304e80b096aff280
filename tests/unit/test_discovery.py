"""Plugin discovery: entry points found, broken ones skipped, names blocked, clashes reported.

Distributions are real ``*.dist-info`` folders written to a temporary directory on ``sys.path``
(what ``pip install`` leaves behind), so ``importlib.metadata`` finds them as installed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from httprail import ConfigError, Next, Outcome
from httprail._discovery import GROUPS, PluginRegistry, default_registry, normalize_name

SHOUT = '''
class Shout:
    """Upper-cases a header value."""

    name = "shout"

    async def __call__(self, request, call_next):
        return await call_next(request)
'''


class Installer:
    """Writes fake installed distributions (dist-info + module) under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def dist(self, name: str, entries: dict[str, dict[str, str]], modules: dict[str, str]) -> None:
        info = self.root / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        lines = []
        for group, names in entries.items():
            lines.append(f"[{group}]")
            lines.extend(f"{k} = {v}" for k, v in names.items())
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for module, source in modules.items():
            (self.root / f"{module}.py").write_text(source)

    def registry(self, **options: object) -> PluginRegistry:
        found = metadata.distributions(path=[str(self.root)])
        return PluginRegistry.discover(distributions=found, environ={}, **options)  # type: ignore[arg-type]


@pytest.fixture
def installer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Installer:
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("fake_")]:
        monkeypatch.delitem(sys.modules, name)
    return Installer(tmp_path)


def test_a_plugin_is_found_with_its_distribution(installer: Installer) -> None:
    installer.dist(
        "fake-shout", {"httprail.plugins": {"shout": "fake_shout:Shout"}}, {"fake_shout": SHOUT}
    )
    registry = installer.registry()
    spec = registry.get("plugins", "shout")
    assert (spec.distribution, spec.version, spec.value) == (
        "fake-shout",
        "1.0",
        "fake_shout:Shout",
    )
    assert spec.factory.__name__ == "Shout"
    assert registry.names("plugins") == ("shout",)


@pytest.mark.parametrize(
    ("module", "value", "reason"),
    [
        ({}, "fake_missing:Thing", "ModuleNotFoundError"),
        ({"fake_boom": "raise RuntimeError('boom at import')"}, "fake_boom:X", "boom at import"),
        ({"fake_attr": "X = 1"}, "fake_attr:Missing", "AttributeError"),
        (
            {"fake_shape": "class Thing:\n    name = 't'\n"},
            "fake_shape:Thing",
            "lacks async __call__()",
        ),
        (
            {"fake_sync": "class T:\n    name='t'\n    def __call__(self, r, n): ...\n"},
            "fake_sync:T",
            "async __call__",
        ),
        ({"fake_value": "THING = 42"}, "fake_value:THING", "is not callable"),
    ],
)
def test_a_broken_plugin_is_reported_and_skipped(
    installer: Installer, module: dict[str, str], value: str, reason: str
) -> None:
    installer.dist(
        "fake-shout", {"httprail.plugins": {"shout": "fake_shout:Shout"}}, {"fake_shout": SHOUT}
    )
    installer.dist("fake-broken", {"httprail.plugins": {"broken": value}}, module)
    with capture_logs() as logs:
        registry = installer.registry()
    assert registry.names("plugins") == ("shout",)  # the good one still loads
    (failed,) = registry.failed
    assert (failed.name, failed.distribution) == ("broken", "fake-broken")
    assert reason in failed.reason
    assert [e["event"] for e in logs] == ["httprail.plugin_failed"]
    with pytest.raises(
        ConfigError, match=r"'broken' \(fake-broken\) is not available: .*" + reason[:8]
    ):
        registry.get("plugins", "broken")


def test_a_disabled_plugin_is_never_imported(installer: Installer) -> None:
    installer.dist(
        "fake-shout", {"httprail.plugins": {"shout": "fake_shout:Shout"}}, {"fake_shout": SHOUT}
    )
    installer.dist(
        "fake-noisy",
        {"httprail.plugins": {"noisy": "fake_noisy:X"}},
        {"fake_noisy": "raise SystemExit('imported!')"},
    )
    found = metadata.distributions(path=[str(installer.root)])
    registry = PluginRegistry.discover(
        distributions=found, environ={"HTTPRAIL_DISABLED_PLUGINS": " Noisy , other"}
    )
    assert "fake_noisy" not in sys.modules
    assert registry.names("plugins") == ("shout",)
    assert [(b.name, b.reason) for b in registry.blocked] == [
        ("noisy", "disabled by HTTPRAIL_DISABLED_PLUGINS")
    ]
    with pytest.raises(ConfigError, match="disabled by HTTPRAIL_DISABLED_PLUGINS"):
        registry.get("plugins", "noisy")


def test_two_distributions_claiming_one_name_is_a_config_error_naming_both(
    installer: Installer,
) -> None:
    installer.dist(
        "fake-shout", {"httprail.plugins": {"shout": "fake_shout:Shout"}}, {"fake_shout": SHOUT}
    )
    installer.dist(
        "fake-other", {"httprail.plugins": {"Shout": "fake_other:Shout"}}, {"fake_other": SHOUT}
    )
    registry = installer.registry()
    (clash,) = registry.clashes
    assert {s.distribution for s in clash.claimants} == {"fake-shout", "fake-other"}
    with pytest.raises(ConfigError) as caught:
        registry.get("plugins", "shout")
    assert "fake-shout" in str(caught.value)
    assert "fake-other" in str(caught.value)
    assert "HTTPRAIL_PREFER_PLUGINS" in str(caught.value)


def test_a_clash_is_settled_by_preferring_one_distribution(installer: Installer) -> None:
    installer.dist(
        "fake-shout", {"httprail.plugins": {"shout": "fake_shout:Shout"}}, {"fake_shout": SHOUT}
    )
    installer.dist(
        "fake-other", {"httprail.plugins": {"shout": "fake_other:Shout"}}, {"fake_other": SHOUT}
    )
    found = metadata.distributions(path=[str(installer.root)])
    env = {"HTTPRAIL_PREFER_PLUGINS": "shout=Fake_Other"}
    registry = PluginRegistry.discover(distributions=found, environ=env)
    assert registry.get("plugins", "shout").distribution == "fake-other"
    assert registry.clashes == ()


def test_a_malformed_preference_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="HTTPRAIL_PREFER_PLUGINS"):
        PluginRegistry.discover(distributions=[], environ={"HTTPRAIL_PREFER_PLUGINS": "shout"})


def test_groups_are_kept_apart_and_checked_for_their_shape(installer: Installer) -> None:
    terminal = (
        "class T:\n    name = 't'\n"
        "    async def send(self, r): ...\n    async def aclose(self): ...\n"
    )
    store = "class S:\n    async def get(self, k): ...\n    async def update(self, k, c): ...\n"
    installer.dist(
        "fake-multi",
        {
            "httprail.transports": {"fast": "fake_t:T", "bad": "fake_shout:Shout"},
            "httprail.stores": {"mem": "fake_s:S"},
            "other.group": {"ignored": "nowhere:X"},
        },
        {
            "fake_t": terminal,
            "fake_shout": SHOUT,
            "fake_s": store,
        },
    )
    registry = installer.registry()
    assert registry.names("transports") == ("fast",)
    assert registry.names("stores") == ("mem",)
    assert registry.find("fast") == "transports"
    assert registry.find("nothing") is None
    (failed,) = registry.failed
    assert "is not a terminal (transport)" in failed.reason


def test_a_bad_entry_point_name_is_reported(installer: Installer) -> None:
    installer.dist(
        "fake-names", {"httprail.plugins": {"-bad name": "fake_shout:Shout"}}, {"fake_shout": SHOUT}
    )
    registry = installer.registry()
    assert registry.names("plugins") == ()
    assert "invalid plugin name" in registry.failed[0].reason


async def _noop(request: httpx.Request, call_next: Next) -> Outcome:
    return await call_next(request)


class Stage:
    name = "stage"

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        return await call_next(request)


def test_runtime_registration_is_validated_when_registered() -> None:
    registry = PluginRegistry()
    spec = registry.register("plugins", "stage", Stage)
    assert registry.get("plugins", "STAGE") is spec
    assert spec.distribution == "<runtime>"
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("plugins", "stage", Stage)
    replaced = registry.register("plugins", "stage", lambda: Stage(), replace=True)
    assert registry.get("plugins", "stage") is replaced


@pytest.mark.parametrize(
    ("group", "name", "factory", "message"),
    [
        ("plugins", "x", 42, "is not callable"),
        ("plugins", "x", type("NoCall", (), {"name": "x"}), "lacks async __call__"),
        ("plugins", "x", type("NoName", (), {"__call__": _noop}), "a str `name`"),
        ("generators", "x", Stage, "is not a generator"),
        ("nope", "x", Stage, "unknown plugin group"),
        ("plugins", "", Stage, "invalid plugin name"),
        ("plugins", "a b", Stage, "invalid plugin name"),
    ],
)
def test_bad_registrations_are_config_errors(
    group: str, name: str, factory: Callable[..., object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        PluginRegistry().register(group, name, factory)  # type: ignore[arg-type]


def test_unknown_names_list_the_known_ones() -> None:
    registry = PluginRegistry()
    registry.register("plugins", "stage", Stage)
    with pytest.raises(
        ConfigError, match=r"unknown plugin 'stag' in httprail.plugins; known: stage"
    ):
        registry.get("plugins", "stag")


def test_names_compare_without_case_or_dash_underscore_differences() -> None:
    assert normalize_name(" Circuit_Breaker ") == normalize_name("circuit-breaker")


def test_the_installed_environment_has_the_builtins_and_the_plugin_packages() -> None:
    registry = default_registry(refresh=True)
    assert set(GROUPS) == {"plugins", "generators", "transports", "stores"}
    builtins = {s.name for s in registry.specs("plugins") if s.distribution == "httprail"}
    assert {"logging", "metrics", "timeout", "retry", "circuit_breaker", "auth"} <= builtins
    assert registry.get("transports", "httpx").distribution == "httprail"
    assert registry.get("stores", "memory").distribution == "httprail"
    template = registry.get("plugins", "template-header")
    assert template.distribution == "httprail-plugin-template"
    assert default_registry() is registry


def test_the_installed_template_plugin_can_be_blocked() -> None:
    registry = PluginRegistry.discover(environ={"HTTPRAIL_DISABLED_PLUGINS": "template-header"})
    assert "template-header" not in registry.names("plugins")
    assert [b.distribution for b in registry.blocked] == ["httprail-plugin-template"]
