"""Plugin discovery: entry points in four groups, loaded defensively, validated when registered.

httprail's own built-ins are declared in its ``pyproject.toml`` under the same groups, so they
are found exactly like third-party plugins. A plugin that fails to import is reported and
skipped; ``HTTPRAIL_DISABLED_PLUGINS=a,b`` blocks names before anything is imported; two
distributions claiming one name is a :class:`ConfigError` (naming both) when that name is used,
unless ``HTTPRAIL_PREFER_PLUGINS=name=distribution`` (or ``prefer=``) says which one wins.
"""

from __future__ import annotations

import inspect
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from ._args import need
from ._errors import ConfigError
from ._log import get_logger

__all__ = [
    "GROUPS",
    "FailedPlugin",
    "PluginClash",
    "PluginGroup",
    "PluginRegistry",
    "PluginSpec",
    "default_registry",
    "normalize_name",
]

PluginGroup = Literal["plugins", "generators", "transports", "stores"]
GROUPS: Mapping[PluginGroup, str] = {
    "plugins": "httprail.plugins",
    "generators": "httprail.generators",
    "transports": "httprail.transports",
    "stores": "httprail.stores",
}
DISABLED_VARIABLE = "HTTPRAIL_DISABLED_PLUGINS"
PREFER_VARIABLE = "HTTPRAIL_PREFER_PLUGINS"
RUNTIME = "<runtime>"

_log = get_logger("httprail.discovery")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# What a plugin of each group must offer: (attribute, must be a coroutine function).
_REQUIRED: Mapping[PluginGroup, tuple[tuple[str, bool], ...]] = {
    "plugins": (("__call__", True),),
    "generators": (("generate", True), ("generate_stream", False)),
    "transports": (("send", True), ("aclose", True)),
    "stores": (("get", True), ("update", True)),
}
_WHAT: Mapping[PluginGroup, str] = {
    "plugins": "a middleware plugin",
    "generators": "a generator",
    "transports": "a terminal (transport)",
    "stores": "a state store",
}


def normalize_name(name: str) -> str:
    """The form names are compared in: lower case, ``_`` and ``-`` alike."""
    return name.strip().lower().replace("_", "-")


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """A registered plugin: what builds it and where it came from."""

    name: str
    group: PluginGroup
    factory: Callable[..., Any]
    distribution: str = RUNTIME
    version: str = ""
    value: str = ""

    @property
    def origin(self) -> str:
        """``distribution version`` (or ``<runtime>`` for plugins registered in code)."""
        return f"{self.distribution} {self.version}".strip()


@dataclass(frozen=True, slots=True)
class FailedPlugin:
    """A plugin that was found but could not be used, and why."""

    name: str
    group: PluginGroup
    distribution: str
    version: str
    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class PluginClash:
    """One name claimed by several distributions in one group."""

    name: str
    group: PluginGroup
    claimants: tuple[PluginSpec, ...]

    def describe(self) -> str:
        """One line naming every claimant and how to choose."""
        who = " and ".join(f"{s.distribution} ({s.value})" for s in self.claimants)
        return (
            f"plugin name {self.name!r} in {GROUPS[self.group]} is claimed by {who}; choose one "
            f"with {PREFER_VARIABLE}={self.name}=<distribution> or uninstall the other"
        )


def _check_factory(group: PluginGroup, factory: object) -> str | None:
    """Why ``factory`` cannot provide a plugin of ``group`` (``None`` if it can)."""
    if not callable(factory):
        return f"{factory!r} is not callable, so it cannot build {_WHAT[group]}"
    if not isinstance(factory, type):
        return None  # a factory function: its product is checked when it is built
    missing = []
    for attribute, is_async in _REQUIRED[group]:
        member = getattr(factory, attribute, None)
        if member is None or (is_async and not inspect.iscoroutinefunction(member)):
            missing.append(f"{'async ' if is_async else ''}{attribute}()")
    if group in ("plugins", "generators", "transports") and not _has_name(factory):
        missing.append("a str `name`")
    if missing:
        return f"{factory.__qualname__} is not {_WHAT[group]}: it lacks {', '.join(missing)}"
    return None


def _has_name(cls: type) -> bool:
    # A class attribute, or an instance attribute declared in __slots__ or annotations
    # (the built product is checked again when it is built).
    if isinstance(getattr(cls, "name", None), str):
        return True
    return any(
        "name" in getattr(k, "__slots__", ()) or "name" in getattr(k, "__annotations__", {})
        for k in cls.__mro__
    )


def _split_names(raw: str | None) -> frozenset[str]:
    return frozenset(normalize_name(p) for p in (raw or "").split(",") if p.strip())


def _parse_prefer(raw: str | None) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        name, sep, dist = part.partition("=")
        if not sep or not name.strip() or not dist.strip():
            raise ConfigError(f"{PREFER_VARIABLE}: expected name=distribution pairs, got {part!r}")
        chosen[normalize_name(name)] = _dist_key(dist)
    return chosen


def _dist_key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


class PluginRegistry:
    """Plugins by group and name; build one with :meth:`discover` or fill it with :meth:`register`.

    Thread-safe for registration; lookups never import anything (loading happens at discovery).
    """

    def __init__(self, *, prefer: Mapping[str, str] | None = None) -> None:
        chosen = prefer is None or (
            isinstance(prefer, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in prefer.items())
        )
        rule = "a mapping of plugin names to distributions, or None"
        need(chosen, "PluginRegistry", "prefer", rule, prefer)
        self._specs: dict[PluginGroup, dict[str, PluginSpec]] = {g: {} for g in GROUPS}
        self._clashes: dict[tuple[PluginGroup, str], PluginClash] = {}
        self._failed: list[FailedPlugin] = []
        self._blocked: list[FailedPlugin] = []
        self._prefer = {normalize_name(k): _dist_key(v) for k, v in (prefer or {}).items()}
        self._lock = threading.Lock()

    # -- discovery ---------------------------------------------------------------------------

    @classmethod
    def discover(
        cls,
        *,
        disabled: Iterable[str] | None = None,
        prefer: Mapping[str, str] | None = None,
        distributions: Iterable[metadata.Distribution] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> PluginRegistry:
        """Find, load and validate every plugin installed in this environment.

        Args:
            disabled: names to block (default: ``HTTPRAIL_DISABLED_PLUGINS``, comma-separated).
            prefer: ``{name: distribution}`` choices for names claimed twice (default:
                ``HTTPRAIL_PREFER_PLUGINS=name=dist,...``).
            distributions: where to look (default: every installed distribution).
            environ: the environment to read the two variables from (default ``os.environ``).

        Raises:
            ConfigError: ``HTTPRAIL_PREFER_PLUGINS`` is malformed.
        """
        env = os.environ if environ is None else environ
        blocked = (
            _split_names(env.get(DISABLED_VARIABLE))
            if disabled is None
            else frozenset(normalize_name(n) for n in disabled)
        )
        chosen = _parse_prefer(env.get(PREFER_VARIABLE)) if prefer is None else prefer
        registry = cls(prefer=chosen)
        seen_dists: set[str] = set()
        for dist in metadata.distributions() if distributions is None else distributions:
            dist_name = dist.metadata["Name"] or "<unnamed>"
            key = _dist_key(dist_name)
            if key in seen_dists:  # the same distribution twice on sys.path: first one wins
                continue
            seen_dists.add(key)
            for entry in dist.entry_points:
                group = _group_of(entry.group)
                if group is not None:
                    registry._load(group, entry, dist_name, dist.version or "", blocked)
        return registry

    def _load(
        self,
        group: PluginGroup,
        entry: metadata.EntryPoint,
        dist: str,
        version: str,
        blocked: frozenset[str],
    ) -> None:
        def failed(reason: str) -> FailedPlugin:
            return FailedPlugin(entry.name, group, dist, version, entry.value, reason)

        if not _NAME.match(entry.name):
            self._fail(failed(f"invalid plugin name {entry.name!r}"))
            return
        if normalize_name(entry.name) in blocked:
            self._blocked.append(failed(f"disabled by {DISABLED_VARIABLE}"))
            return
        try:
            factory = entry.load()
        except Exception as exc:  # noqa: BLE001 - any import failure is reported, never raised
            self._fail(failed(f"failed to import {entry.value}: {type(exc).__name__}: {exc}"))
            return
        problem = _check_factory(group, factory)
        if problem is not None:
            self._fail(failed(problem))
            return
        self._add(PluginSpec(entry.name, group, factory, dist, version, entry.value))

    def _fail(self, plugin: FailedPlugin) -> None:
        _log.warning(
            "httprail.plugin_failed",
            plugin=plugin.name,
            group=GROUPS[plugin.group],
            distribution=plugin.distribution,
            reason=plugin.reason,
        )
        self._failed.append(plugin)

    def _add(self, spec: PluginSpec) -> None:
        key = normalize_name(spec.name)
        existing = self._specs[spec.group].get(key)
        clash = self._clashes.get((spec.group, key))
        if existing is None and clash is None:
            self._specs[spec.group][key] = spec
            return
        claimants = clash.claimants if clash is not None else (existing,)
        claimants = (*claimants, spec)
        preferred = self._prefer.get(key)
        winners = [s for s in claimants if _dist_key(s.distribution) == preferred]
        if winners:
            self._specs[spec.group][key] = winners[0]
            self._clashes.pop((spec.group, key), None)
            return
        self._specs[spec.group].pop(key, None)
        self._clashes[(spec.group, key)] = PluginClash(spec.name, spec.group, claimants)

    # -- registration in code ----------------------------------------------------------------

    def register(
        self,
        group: PluginGroup,
        name: str,
        factory: Callable[..., Any],
        *,
        replace: bool = False,
    ) -> PluginSpec:
        """Register ``factory`` under ``name`` at runtime (validated now, not at first use).

        Raises:
            ConfigError: unknown group, bad name, a factory that cannot build that kind of
                plugin, or a name already taken (unless ``replace=True``).
        """
        if group not in GROUPS:
            raise ConfigError(f"unknown plugin group {group!r}; known: {', '.join(GROUPS)}")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"invalid plugin name {name!r}: use letters, digits, '.', '-', '_'")
        problem = _check_factory(group, factory)
        if problem is not None:
            raise ConfigError(f"cannot register {name!r}: {problem}")
        key = normalize_name(name)
        spec = PluginSpec(name, group, factory, RUNTIME, "", _qualified(factory))
        with self._lock:
            existing = self._specs[group].get(key)
            if not replace and (existing is not None or (group, key) in self._clashes):
                owner = existing.origin if existing is not None else "several distributions"
                raise ConfigError(
                    f"plugin {name!r} is already registered in {GROUPS[group]} (by {owner}); "
                    "pass replace=True to replace it"
                )
            self._clashes.pop((group, key), None)
            self._specs[group][key] = spec
        return spec

    # -- lookups -----------------------------------------------------------------------------

    def get(self, group: PluginGroup, name: str) -> PluginSpec:
        """The plugin registered as ``name`` in ``group``.

        Raises:
            ConfigError: unknown name (listing the known ones), a name that was disabled or
                failed to load (with the reason), or a name claimed by two distributions.
        """
        key = normalize_name(name) if isinstance(name, str) else ""
        spec = self._specs[group].get(key)
        if spec is not None:
            return spec
        clash = self._clashes.get((group, key))
        if clash is not None:
            raise ConfigError(clash.describe())
        for plugin in (*self._blocked, *self._failed):
            if plugin.group == group and normalize_name(plugin.name) == key:
                raise ConfigError(
                    f"plugin {name!r} ({plugin.distribution}) is not available: {plugin.reason}"
                )
        known = ", ".join(self.names(group)) or "none"
        raise ConfigError(f"unknown plugin {name!r} in {GROUPS[group]}; known: {known}")

    def find(self, name: str) -> PluginGroup | None:
        """The group ``name`` is registered in (plugins first), or ``None``."""
        key = normalize_name(name)
        for group in GROUPS:
            if key in self._specs[group] or (group, key) in self._clashes:
                return group
        return None

    def names(self, group: PluginGroup) -> tuple[str, ...]:
        """Registered names in ``group``, sorted."""
        return tuple(sorted(spec.name for spec in self._specs[group].values()))

    def specs(self, group: PluginGroup | None = None) -> Iterator[PluginSpec]:
        """Every registered plugin (of ``group``), sorted by group then name."""
        for g in GROUPS if group is None else (group,):
            yield from sorted(self._specs[g].values(), key=lambda s: s.name)

    @property
    def failed(self) -> tuple[FailedPlugin, ...]:
        """Plugins found but not usable (import error, wrong shape, bad name)."""
        return tuple(self._failed)

    @property
    def blocked(self) -> tuple[FailedPlugin, ...]:
        """Plugins skipped because ``HTTPRAIL_DISABLED_PLUGINS`` names them."""
        return tuple(self._blocked)

    @property
    def clashes(self) -> tuple[PluginClash, ...]:
        """Names claimed by more than one distribution (unusable until one is preferred)."""
        return tuple(self._clashes.values())


def _group_of(entry_group: str) -> PluginGroup | None:
    for group, full in GROUPS.items():
        if full == entry_group:
            return group
    return None


def _qualified(factory: object) -> str:
    module = getattr(factory, "__module__", "?")
    return f"{module}:{getattr(factory, '__qualname__', type(factory).__qualname__)}"


_default: PluginRegistry | None = None
_default_lock = threading.Lock()


def default_registry(*, refresh: bool = False) -> PluginRegistry:
    """The process-wide registry, discovered on first use (``refresh=True`` discovers again)."""
    global _default
    with _default_lock:
        if _default is None or refresh:
            _default = PluginRegistry.discover()
        return _default
