"""``httprail plugins``: what discovery found, by group and distribution, and what failed."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from .._discovery import GROUPS, PluginRegistry
from .._errors import ConfigError

__all__ = ["register", "registry_report"]


def register(app: typer.Typer) -> None:
    """Add the ``plugins`` command to ``app``."""
    app.command("plugins")(plugins)


def registry_report(registry: PluginRegistry) -> dict[str, Any]:
    """The registry as plain data: plugins by group, then failed, blocked and clashing ones."""
    found = {
        group: [
            {
                "name": spec.name,
                "distribution": spec.distribution,
                "version": spec.version,
                "value": spec.value,
            }
            for spec in registry.specs(group)
        ]
        for group in GROUPS
    }
    unusable = [
        {
            "name": plugin.name,
            "group": GROUPS[plugin.group],
            "distribution": plugin.distribution,
            "version": plugin.version,
            "reason": plugin.reason,
        }
        for plugin in (*registry.failed, *registry.blocked)
    ]
    clashes = [
        {
            "name": clash.name,
            "group": GROUPS[clash.group],
            "distributions": [s.distribution for s in clash.claimants],
            "reason": clash.describe(),
        }
        for clash in registry.clashes
    ]
    return {
        "groups": {GROUPS[g]: items for g, items in found.items()},
        "failed": [u for u in unusable if not u["reason"].startswith("disabled by")],
        "blocked": [u for u in unusable if u["reason"].startswith("disabled by")],
        "clashes": clashes,
    }


def plugins(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Exit with 1 when any plugin failed or a name clashes."),
    ] = False,
) -> int:
    """List the plugins found through entry points, by group, with their distribution.

    Groups: httprail.plugins (middleware), httprail.generators, httprail.transports,
    httprail.stores. Plugins that failed to import, were blocked by HTTPRAIL_DISABLED_PLUGINS,
    or whose name two distributions claim are listed after them with the reason.
    """
    try:
        registry = PluginRegistry.discover()
    except ConfigError as exc:
        typer.echo(f"httprail plugins: error: {exc}", err=True)
        return 1
    report = registry_report(registry)
    problems = bool(report["failed"] or report["clashes"])
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return 1 if strict and problems else 0
    console = Console(highlight=False)
    for group, items in report["groups"].items():
        # Names and objects are never broken mid-word: a narrow terminal folds the
        # distribution column first, then the object at its dots.
        table = Table(title=f"{group} ({len(items)})", title_justify="left", box=box.SIMPLE)
        table.add_column("name", no_wrap=True)
        table.add_column("from", overflow="fold")
        table.add_column("object", no_wrap=True, overflow="ellipsis")
        for item in items:
            table.add_row(item["name"], f"{item['distribution']} {item['version']}", item["value"])
        if not items:
            table.add_row("-", "", "")
        console.print(table)
    for title, key in (("failed", "failed"), ("blocked", "blocked")):
        if report[key]:
            table = Table(title=f"{title} ({len(report[key])})", title_justify="left")
            for column in ("name", "group", "distribution", "reason"):
                table.add_column(column, overflow="fold")
            for item in report[key]:
                table.add_row(item["name"], item["group"], item["distribution"], item["reason"])
            console.print(table)
    for clash in report["clashes"]:
        console.print(f"[bold red]clash:[/] {clash['reason']}")
    return 1 if strict and problems else 0
