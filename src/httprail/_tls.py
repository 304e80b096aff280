"""TLS and proxy settings as terminals apply them: one ``SSLContext`` builder, one proxy chooser.

Every terminal reads ``verify``, ``ca_bundle``, ``client_cert``, ``client_key``, ``proxy_url``
and ``trust_env`` from its :class:`~httprail.HttpSettings` through this module, so they mean the
same on each; what a terminal cannot do is a :class:`ConfigError` naming it, raised when the
terminal is built (never a setting silently dropped). Problems never quote a proxy URL (it may
hold a password) and loading a certificate or key never shows its contents.
"""

from __future__ import annotations

import os
import ssl
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ._errors import ConfigError
from ._redact import register_secret
from ._settings import PROXY_SCHEMES, HttpSettings, check_proxy_url

__all__ = ["ALL_PROXY_SCHEMES", "Proxies", "ProxyRouter", "Tls", "resolve_tls"]

ALL_PROXY_SCHEMES = PROXY_SCHEMES  # every scheme a proxy URL may have
# How urllib names the environment's proxy variables (lower-cased, without ``_proxy``).
_ENV_NAMES = {"http": "HTTP_PROXY", "https": "HTTPS_PROXY", "all": "ALL_PROXY"}
_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Tls:
    """What a terminal needs to set up TLS: the check, the files, or a ready context."""

    verify: bool
    ca_bundle: Path | None
    client_cert: Path | None
    client_key: Path | None
    context: ssl.SSLContext | None  # a caller's own context: used as it is

    @property
    def is_default(self) -> bool:
        """Verification on, the backend's own trust store, no client certificate."""
        return (
            self.verify
            and self.ca_bundle is None
            and self.client_cert is None
            and self.context is None
        )

    def ssl_context(
        self, terminal: str, *, default_cafile: str | None = None
    ) -> bool | ssl.SSLContext:
        """``True`` (the backend's defaults), ``False`` (no verification, no client
        certificate) or an ``SSLContext`` doing what the settings say.

        Args:
            terminal: the terminal's name, for errors.
            default_cafile: the CA bundle to trust when none is set but a context must be
                built (a client certificate): the backend's own default (certifi for httpx).

        Raises:
            ConfigError: the CA bundle, certificate or key cannot be loaded.
        """
        if self.context is not None:
            return self.context
        if self.is_default:
            return True
        if not self.verify and self.client_cert is None:
            return False
        context = self._base_context(terminal, default_cafile)
        if self.client_cert is not None:
            try:
                context.load_cert_chain(self.client_cert, self.client_key)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise ConfigError(
                    f"the {terminal} terminal cannot load the client certificate "
                    f"(HTTP_CLIENT_CERT / HTTP_CLIENT_KEY): {_reason(exc)}"
                ) from None
        return context

    def _base_context(self, terminal: str, default_cafile: str | None) -> ssl.SSLContext:
        if not self.verify:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        cafile = str(self.ca_bundle) if self.ca_bundle is not None else default_cafile
        try:
            return ssl.create_default_context(cafile=cafile)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                f"the {terminal} terminal cannot load the CA bundle "
                f"(verify=... or HTTP_CA_BUNDLE): {_reason(exc)}"
            ) from None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    return str(reason) if reason else type(exc).__name__


def resolve_tls(
    settings: HttpSettings, verify: Any, terminal: str, *, accepts_context: bool = True
) -> Tls:
    """The TLS set-up for ``terminal``: ``settings``, with its ``verify`` argument (if given)
    winning over ``HTTP_VERIFY`` / ``HTTP_CA_BUNDLE``.

    Args:
        settings: the terminal's settings.
        verify: the terminal's own ``verify`` argument: ``None`` (from the settings), a bool,
            a CA bundle path, or an ``ssl.SSLContext`` (which then carries everything).
        terminal: the terminal's name, for errors.
        accepts_context: whether the backend can use an ``SSLContext`` (libcurl cannot).

    Raises:
        ConfigError: an ``SSLContext`` for a backend that cannot use one, or beside TLS
            settings it would override, or a ``verify`` of another type.
    """
    ca_bundle, cert, key = settings.ca_bundle, settings.client_cert, settings.client_key
    if isinstance(verify, ssl.SSLContext):
        if not accepts_context:
            raise ConfigError(
                f"the {terminal} terminal cannot use an ssl.SSLContext (libcurl does its own "
                "TLS, the context and any client certificate in it would be dropped): give "
                "verify=True/False or a CA bundle path, and HTTP_CLIENT_CERT / HTTP_CLIENT_KEY"
            )
        given = [
            name
            for name, value in (
                ("HTTP_VERIFY", not settings.verify),
                ("HTTP_CA_BUNDLE", ca_bundle),
                ("HTTP_CLIENT_CERT", cert),
            )
            if value
        ]
        if given:
            raise ConfigError(
                f"the {terminal} terminal got an ssl.SSLContext and {', '.join(given)}: the "
                "context would override them; put everything in the context, or use the settings"
            )
        return Tls(True, None, None, None, verify)
    if verify is None:
        return Tls(settings.verify, ca_bundle, cert, key, None)
    if isinstance(verify, bool):
        return Tls(verify, ca_bundle if verify else None, cert, key, None)
    if isinstance(verify, str | os.PathLike):
        return Tls(True, Path(verify), cert, key, None)
    kinds = "True, False, a CA bundle path" + (" or an ssl.SSLContext" if accepts_context else "")
    raise ConfigError(
        f"the {terminal} terminal: verify must be {kinds}, got {type(verify).__name__}"
    )


class Proxies:
    """Which proxy a request goes through: ``HTTP_PROXY_URL`` for every request, else (with
    ``HTTP_TRUST_ENV``) the standard ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` variables
    (lower-case first, as curl and urllib read them) minus the hosts ``NO_PROXY`` names.

    The environment is read once, when the terminal is built. Under CGI (``REQUEST_METHOD``
    set) ``HTTP_PROXY`` is ignored, as urllib does: it can come from a request header.

    Raises:
        ConfigError: a proxy the terminal cannot use (its scheme), or a malformed one in the
            environment, naming the terminal and the variable (never the URL).
    """

    __slots__ = ("__weakref__", "_cache", "_env", "fixed")

    def __init__(
        self,
        settings: HttpSettings,
        terminal: str,
        *,
        schemes: Collection[str] = ALL_PROXY_SCHEMES,
    ) -> None:
        self.fixed: str | None = settings.proxy_url
        self._env: dict[str, str] = {}
        self._cache: dict[tuple[str, str, int | None], str | None] = {}
        if self.fixed is not None:
            _check_scheme(self.fixed, "HTTP_PROXY_URL", terminal, schemes)
            _register_password(self.fixed, self)
        elif settings.trust_env:
            self._env = _environment_proxies()
            for key, value in self._env.items():
                if key == "no":
                    continue
                name = _ENV_NAMES.get(key, f"{key.upper()}_PROXY")
                try:
                    check_proxy_url(value)
                except ValueError as exc:
                    raise ConfigError(f"the {terminal} terminal: {name}: {exc}") from None
                _check_scheme(value, name, terminal, schemes)
                _register_password(value, self)

    @property
    def never(self) -> bool:
        """No request ever goes through a proxy."""
        return self.fixed is None and not any(k in self._env for k in ("http", "https", "all"))

    def for_url(self, url: httpx.URL) -> str | None:
        """The proxy for ``url`` (``None``: straight to the server)."""
        if self.fixed is not None:
            return self.fixed
        if not self._env:
            return None
        key = (url.scheme, url.host, url.port)
        if key in self._cache:
            return self._cache[key]
        chosen = self._choose(url)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = chosen
        return chosen

    def _choose(self, url: httpx.URL) -> str | None:
        env = self._env
        proxy = env.get(url.scheme) or env.get("all")
        if proxy is None:
            return None
        host = url.host if url.port is None else f"{url.host}:{url.port}"
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if "no" in env and bypass(host, env):
            return None
        return proxy


def _environment_proxies() -> dict[str, str]:
    """``HTTP_PROXY`` & co. by urllib's rules (lower case first; ``HTTP_PROXY`` ignored under
    CGI), keyed ``http``, ``https``, ``all`` and ``no``; a bare ``host:port`` is ``http://``."""
    found = urllib.request.getproxies_environment()
    proxies: dict[str, str] = {}
    for key, value in found.items():
        if key not in ("http", "https", "all", "no") or not value.strip():
            continue
        value = value.strip()
        if key != "no" and "://" not in value:
            value = f"http://{value}"  # curl and urllib take a bare host:port as http
        proxies[key] = value
    return proxies


def _register_password(url: str, owner: Proxies) -> None:
    """A proxy's password joins the redaction set: no message, log or output shows it."""
    password = httpx.URL(url).password  # checked by check_proxy_url before
    if password:
        register_secret(password, owner=owner)


def _check_scheme(url: str, name: str, terminal: str, schemes: Collection[str]) -> None:
    scheme = url.partition("://")[0].lower()
    if scheme not in schemes:
        can = ", ".join(sorted(schemes))
        raise ConfigError(
            f"the {terminal} terminal cannot use a {scheme}:// proxy ({name}); it can use: {can}"
        )


class ProxyRouter(httpx.AsyncBaseTransport):
    """An httpx transport sending each request straight or through its proxy, as
    :class:`Proxies` chooses: one pooled transport per proxy, made on first use."""

    def __init__(
        self, proxies: Proxies, make: Callable[[str | None], httpx.AsyncBaseTransport]
    ) -> None:
        self._proxies = proxies
        self._make = make
        self._transports: dict[str | None, httpx.AsyncBaseTransport] = {}

    def transport_for(self, url: httpx.URL) -> httpx.AsyncBaseTransport:
        """The transport requests to ``url`` go through."""
        proxy = self._proxies.for_url(url)
        transport = self._transports.get(proxy)
        if transport is None:
            transport = self._transports[proxy] = self._make(proxy)
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transport_for(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            await transport.aclose()
