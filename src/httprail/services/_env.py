"""Services from environment variables.

``HTTP_SERVICES__<NAME>__<KEY>``, keys as in a stack file's ``[services.<name>]`` table::

    HTTP_SERVICES__USER__BASE_URL=http://user.internal/api
    HTTP_SERVICES__USER__ENDPOINTS=http://10.0.0.5:8080,http://10.0.0.6:8080
    HTTP_SERVICES__USER__HEALTH_URL=/health
    HTTP_SERVICES__USER__HEALTH_CHECK__INTERVAL=5
    HTTP_SERVICES__USER__BALANCER__POLICY=least_request
    HTTP_SERVICES__USER__TIMEOUT_READ=5          # any HttpSettings field: this service's value
    HTTP_SERVICES__USER__API_KEY_ENV=USER_API_KEY
    HTTP_SERVICES__USER__STACK=retry,circuit_breaker,auth

And, for the names a caller lists (``legacy=("user",)``), the older convention
``USER_SERVICE_HOST`` (one host, or several separated by commas), ``USER_SERVICE_PORT``,
``USER_SERVICE_PROTOCOL`` (``http`` by default) and ``USER_SERVICE_HEALTH_PATH``.

Under CGI (``REQUEST_METHOD`` set) the ``HTTP_SERVICES__*`` variables are not read: a CGI
server turns a request header ``Services--User--Base-Url`` into one of them, which would let
any client send the service's traffic elsewhere (the "httpoxy" flaw).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import ConfigError
from .._log import get_logger
from .._settings import ProviderOverrides, one_line, quoted
from ._config import BalancerOptions, HealthCheck, check_endpoint

__all__ = ["PREFIX", "legacy_services", "services_from_env"]

PREFIX = "HTTP_SERVICES__"
_PLAIN = ("base_url", "health_url", "api_key_env", "terminal")
_LISTS = ("endpoints", "stack")
_TABLES: Mapping[str, tuple[str, ...]] = {
    "health_check": tuple(HealthCheck.model_fields),
    "balancer": tuple(BalancerOptions.model_fields),
}
_SETTINGS = frozenset(ProviderOverrides.model_fields)

_log = get_logger("httprail.services")

Found = tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]
"""Per service: its table (stack-file shape), and where each key came from."""


def services_from_env(environ: Mapping[str, str]) -> Found:
    """The services the ``HTTP_SERVICES__*`` variables declare.

    Raises:
        ConfigError: one line naming the variable (an unknown key, a bad URL, ...).
    """
    tables: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, str]] = {}
    variables = sorted(k for k in environ if k.upper().startswith(PREFIX))
    if variables and "REQUEST_METHOD" in environ:
        _log.warning("httprail.services_env_ignored_under_cgi", variables=len(variables))
        return tables, sources
    for variable in variables:
        parts = variable[len(PREFIX) :].lower().split("__")
        name, keys = parts[0], parts[1:]
        if not name or not keys or not all(keys):
            raise ConfigError(
                f"{variable}: expected {PREFIX}<NAME>__<KEY> (for example {PREFIX}USER__BASE_URL)"
            )
        table = tables.setdefault(name, {})
        where = sources.setdefault(name, {})
        value = environ[variable].strip()
        key = keys[0]
        if len(keys) == 2 and key in _TABLES and keys[1] in _TABLES[key]:
            table.setdefault(key, {})[keys[1]] = value
            where[f"{key}.{keys[1]}"] = variable
        elif len(keys) == 1 and key in _PLAIN:
            table[key] = value
            where[key] = variable
        elif len(keys) == 1 and key in _LISTS:
            table[key] = [item.strip() for item in value.split(",") if item.strip()]
            where[key] = variable
        elif len(keys) == 1 and key in _SETTINGS:
            table.setdefault("settings", {})[key] = value
            where[f"settings.{key}"] = variable
        else:
            raise ConfigError(f"{variable}: unknown key {'__'.join(keys).upper()}; {_known()}")
    for name, table in tables.items():
        _check_urls(table, sources[name])
    return tables, sources


def _known() -> str:
    tables = ", ".join(f"{t.upper()}__<{'|'.join(k).upper()}>" for t, k in _TABLES.items())
    return (
        f"known: {', '.join(k.upper() for k in (*_PLAIN, *_LISTS))}, {tables}, "
        "or an HttpSettings field (TIMEOUT_READ, MAX_RETRIES, ...)"
    )


def _check_urls(table: Mapping[str, Any], where: Mapping[str, str]) -> None:
    if "base_url" in table:
        check_endpoint(table["base_url"], where["base_url"])
    for endpoint in table.get("endpoints", ()):
        check_endpoint(endpoint, where["endpoints"])
    if "endpoints" in table and not table["endpoints"]:
        raise ConfigError(f"{where['endpoints']}: empty; expected URLs separated by commas")


def legacy_services(environ: Mapping[str, str], names: Sequence[str]) -> Found:
    """The services ``names`` from ``<NAME>_SERVICE_HOST`` / ``_PORT`` / ``_PROTOCOL`` /
    ``_HEALTH_PATH`` (a name whose host is not set is left out).

    Raises:
        ConfigError: one line naming the variable.
    """
    tables: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, str]] = {}
    for name in names:
        prefix = f"{name.upper()}_SERVICE_"
        host_var, port_var = f"{prefix}HOST", f"{prefix}PORT"
        protocol_var, health_var = f"{prefix}PROTOCOL", f"{prefix}HEALTH_PATH"
        hosts = [h.strip() for h in environ.get(host_var, "").split(",") if h.strip()]
        if not hosts:
            continue
        protocol = environ.get(protocol_var, "http").strip().lower() or "http"
        if protocol not in ("http", "https"):
            raise ConfigError(f"{protocol_var}: must be http or https (got {quoted(protocol)})")
        port = environ.get(port_var, "").strip()
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"{port_var}: must be a port number, 1 to 65535 (got {quoted(port)})")
        suffix = f":{int(port)}" if port else ""
        urls = [f"{protocol}://{host}{suffix}" for host in hosts]
        for url in urls:
            if check_endpoint(url, host_var).raw_path != b"/":
                raise ConfigError(f"{host_var}: must be host names or addresses, no path")
        table: dict[str, Any] = {"base_url": urls[0]}
        where = {"base_url": host_var}
        if len(urls) > 1:
            table["endpoints"] = urls
            where["endpoints"] = host_var
        health = environ.get(health_var, "").strip()
        if health:
            if not health.startswith("/"):
                raise ConfigError(
                    one_line(f"{health_var}: must be a path starting with / (got {quoted(health)})")
                )
            table["health_url"] = health
            where["health_url"] = health_var
        tables[name.lower()] = table
        sources[name.lower()] = where
    return tables, sources
