"""httprail._tls: the TLS set-up and the proxy choice every terminal shares."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from httprail import ConfigError, HttpSettings, _tls
from httprail._tls import Proxies, ProxyRouter, resolve_tls


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "FTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pems")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    ca.issue_cert("client.test").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "client.pem")
    )
    return folder / "ca.pem", folder / "client.pem"


def test_an_ssl_context_is_used_as_it_is_where_the_backend_takes_one() -> None:
    context = ssl.create_default_context()
    tls = resolve_tls(HttpSettings(), context, "aiohttp")
    assert tls.ssl_context("aiohttp") is context


@pytest.mark.parametrize(
    ("settings", "named"),
    [({"verify": False}, "HTTP_VERIFY"), ({"client_cert": "PEM"}, "HTTP_CLIENT_CERT")],
)
def test_an_ssl_context_beside_tls_settings_is_refused(
    pems: tuple[Path, Path], settings: dict[str, object], named: str
) -> None:
    values = {k: (pems[1] if v == "PEM" else v) for k, v in settings.items()}
    with pytest.raises(ConfigError, match=f"the httpx terminal got an ssl.SSLContext and {named}"):
        resolve_tls(HttpSettings(**values), ssl.create_default_context(), "httpx")


def test_the_verify_argument_wins_over_the_settings(pems: tuple[Path, Path]) -> None:
    ca, _ = pems
    settings = HttpSettings(ca_bundle=ca)
    assert resolve_tls(settings, None, "x").ca_bundle == ca
    off = resolve_tls(settings, False, "x")
    assert (off.verify, off.ca_bundle) == (False, None)
    assert off.ssl_context("x") is False
    assert resolve_tls(HttpSettings(), True, "x").ssl_context("x") is True
    assert resolve_tls(HttpSettings(), str(ca), "x").ca_bundle == ca
    with pytest.raises(ConfigError, match="verify must be True, False, a CA bundle path, got int"):
        resolve_tls(HttpSettings(), 1, "curl", accepts_context=False)


def test_a_client_certificate_without_verification_builds_a_context(
    pems: tuple[Path, Path],
) -> None:
    context = resolve_tls(HttpSettings(verify=False, client_cert=pems[1]), None, "x").ssl_context(
        "x"
    )
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False


def test_a_client_certificate_alone_keeps_the_backends_trust_store(
    pems: tuple[Path, Path],
) -> None:
    tls = resolve_tls(HttpSettings(client_cert=pems[1]), None, "httpx")
    context = tls.ssl_context("httpx", default_cafile=str(pems[0]))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.get_ca_certs()  # the given default bundle was loaded


def test_environment_proxies_follow_the_usual_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "proxy.test:3128")  # no scheme: http://
    monkeypatch.setenv("FTP_PROXY", "http://ftp-proxy.test")  # not ours
    monkeypatch.setenv("NO_PROXY", "internal.test,10.0.0.1:8443")
    proxies = Proxies(HttpSettings(), "t")
    assert not proxies.never
    assert proxies.for_url(httpx.URL("https://api.test/x")) == "http://proxy.test:3128"
    assert proxies.for_url(httpx.URL("http://api.test/x")) == "http://proxy.test:3128"
    assert proxies.for_url(httpx.URL("https://a.internal.test/")) is None
    assert proxies.for_url(httpx.URL("https://10.0.0.1:8443/")) is None
    proxies._cache[("https", "api.test", None)] = "http://cached.test:1"
    assert proxies.for_url(httpx.URL("https://api.test/y")) == "http://cached.test:1"  # cached


def test_the_proxy_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    monkeypatch.setattr(_tls, "_CACHE_SIZE", 4)
    proxies = Proxies(HttpSettings(), "t")
    for n in range(10):
        assert proxies.for_url(httpx.URL(f"https://h{n}.test/")) == "http://proxy.test:3128"
    assert proxies.for_url(httpx.URL("http://plain.test/")) is None  # no HTTP_PROXY
    assert len(proxies._cache) <= 4


def test_under_cgi_the_http_proxy_variable_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    monkeypatch.setenv("HTTP_PROXY", "http://attacker.test:8080")
    assert Proxies(HttpSettings(), "t").never


def test_only_no_proxy_or_trust_env_off_means_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "*")
    assert Proxies(HttpSettings(), "t").never
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test")
    assert Proxies(HttpSettings(trust_env=False), "t").never
    assert Proxies(HttpSettings(), "t").for_url(httpx.URL("https://a.test")) is None  # NO_PROXY=*


async def test_the_router_keeps_one_transport_per_proxy_and_closes_them() -> None:
    made: list[tuple[str | None, httpx.MockTransport]] = []

    def make(proxy: str | None) -> httpx.MockTransport:
        transport = httpx.MockTransport(lambda r: httpx.Response(200, text=str(proxy)))
        made.append((proxy, transport))
        return transport

    proxies = Proxies(HttpSettings(proxy_url="http://proxy.test:3128"), "t")
    router = ProxyRouter(proxies, make)
    response = await router.handle_async_request(httpx.Request("GET", "https://a.test/"))
    assert response.status_code == 200
    assert router.transport_for(httpx.URL("https://b.test/")) is made[0][1]
    assert [proxy for proxy, _ in made] == ["http://proxy.test:3128"]
    await router.aclose()
    assert router._transports == {}


def test_a_proxy_password_joins_the_redaction_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from httprail._redact import redact_text

    fixed = Proxies(HttpSettings(proxy_url="http://u:Fixed-Pr0xy-Pw@proxy.test:1"), "t")
    monkeypatch.setenv("HTTPS_PROXY", "http://u:Env-Pr0xy-Pw@proxy.test:1")
    from_env = Proxies(HttpSettings(), "t")
    text = redact_text("proxy said: Fixed-Pr0xy-Pw and Env-Pr0xy-Pw")
    assert "Fixed-Pr0xy-Pw" not in text
    assert "Env-Pr0xy-Pw" not in text
    assert fixed.fixed is not None
    assert not from_env.never
