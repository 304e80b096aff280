"""HttpSettings: defaults, environment variables, explicit values winning over defaults, bounds,
and every mistake a one-line ConfigError naming the variable (never quoting a secret)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from httprail import ConfigError, HttpSettings
from httprail._settings import TLS_PROXY_FIELDS


def test_defaults_match_the_design() -> None:
    s = HttpSettings()
    assert (s.timeout_connect, s.timeout_read, s.timeout_write, s.timeout_pool) == (5, 30, 30, 5)
    assert (s.timeout_total, s.max_retries, s.backoff_base, s.backoff_max) == (60, 3, 1, 20)
    assert s.retry_statuses == {408, 429, 500, 502, 503, 504, 529}
    assert (s.circuit_breaker_threshold, s.circuit_breaker_cooldown) == (5, 30)
    assert (s.max_connections, s.max_keepalive, s.keepalive_expiry, s.http2) == (100, 100, 30, None)
    assert s.timeout_attempt is None
    assert (s.verify, s.ca_bundle, s.client_cert, s.client_key) == (True, None, None, None)
    assert (s.proxy_url, s.trust_env) == (None, True)
    assert s.tls_or_proxy_set == ()


@pytest.mark.parametrize(
    ("options", "environment", "kept"),
    [
        ({}, {}, 20),  # left at its default: httpx's own 20 (httpcore slows with more)
        ({"max_connections": 10}, {}, 10),  # and never more than the pool
        ({"max_keepalive": 100}, {}, 100),  # set: used as it is
        ({}, {"HTTP_MAX_KEEPALIVE": "64"}, 64),  # set from the environment too
        ({"max_keepalive": 5}, {}, 5),
    ],
)
def test_httpx_keeps_its_own_default_of_idle_connections_unless_one_is_set(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], environment: dict[str, str], kept: int
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = HttpSettings(**options)
    assert settings.httpx_limits().max_keepalive_connections == kept
    assert settings.httpx_limits().max_connections == settings.max_connections


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_TIMEOUT_TOTAL", "12.5")
    monkeypatch.setenv("HTTP_RETRY_STATUSES", "429, 503")
    monkeypatch.setenv("HTTP_HTTP2", "false")
    s = HttpSettings()
    assert s.timeout_total == 12.5
    assert s.retry_statuses == {429, 503}
    assert s.http2 is False


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_MAX_RETRIES", "7")
    assert HttpSettings(max_retries=2).max_retries == 2


def test_provider_overrides_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROVIDERS__DEEPSEEK__TIMEOUT_READ", "90")
    s = HttpSettings()
    deepseek = s.for_provider("DeepSeek")
    assert deepseek.timeout_read == 90
    assert deepseek.timeout_connect == s.timeout_connect
    assert s.for_provider("other") is s


# -- explicit values win over defaults -------------------------------------------------------


def test_setting_only_the_total_clamps_the_timeout_components_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_TIMEOUT_TOTAL=2 alone used to fail on the connect timeout's default (5 s)."""
    monkeypatch.setenv("HTTP_TIMEOUT_TOTAL", "2")
    s = HttpSettings()
    assert (s.timeout_total, s.timeout_connect, s.timeout_pool) == (2, 2, 2)
    assert s.timeout_read == 30  # not bounded by the total: a per-read gap


def test_a_given_value_moves_the_default_it_would_break() -> None:
    assert HttpSettings(timeout_connect=90).timeout_total == 90
    assert HttpSettings(timeout_attempt=61).timeout_total == 61
    assert HttpSettings(backoff_base=30).backoff_max == 30
    assert HttpSettings(backoff_max=0.5).backoff_base == 0.5
    assert HttpSettings(max_keepalive=500).max_connections == 500
    assert HttpSettings(max_connections=5).max_keepalive == 5
    assert HttpSettings(circuit_breaker_cooldown_max=10).circuit_breaker_cooldown == 10


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        (
            {"timeout_connect": 90, "timeout_total": 60},
            r"^invalid settings: HTTP_TIMEOUT_CONNECT \(90.0\) must be <= HTTP_TIMEOUT_TOTAL",
        ),
        ({"timeout_attempt": 61, "timeout_total": 60}, r"HTTP_TIMEOUT_ATTEMPT .* must be <="),
        ({"backoff_base": 30, "backoff_max": 20}, r"HTTP_BACKOFF_BASE .* must be <= HTTP_BACK"),
        ({"max_keepalive": 500, "max_connections": 100}, r"HTTP_MAX_KEEPALIVE .* must be <="),
    ],
)
def test_two_given_values_that_contradict_are_an_error(
    values: dict[str, float], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        HttpSettings(**values)


def test_a_value_from_the_environment_and_an_argument_that_contradict_are_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_TIMEOUT_CONNECT", "10")
    with pytest.raises(ConfigError, match="HTTP_TIMEOUT_CONNECT"):
        HttpSettings(timeout_total=2)


def test_a_provider_total_clamps_the_global_components() -> None:
    s = HttpSettings(providers={"fast": {"timeout_total": 2}})
    fast = s.for_provider("fast")
    assert (fast.timeout_total, fast.timeout_connect, fast.timeout_pool) == (2, 2, 2)
    assert (
        HttpSettings(providers={"slow": {"timeout_connect": 100}})
        .for_provider("slow")
        .timeout_total
        == 100
    )


def test_provider_values_that_contradict_each_other_name_the_provider() -> None:
    s = HttpSettings(providers={"slow": {"timeout_connect": 100, "timeout_total": 10}})
    with pytest.raises(ConfigError, match=r"for provider 'slow'.*HTTP_TIMEOUT_CONNECT"):
        s.for_provider("slow")


# -- one-line errors naming the variable ------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("HTTP_TIMEOUT_CONNECT", "-1", "HTTP_TIMEOUT_CONNECT"),
        ("HTTP_TIMEOUT_READ", "0", "HTTP_TIMEOUT_READ"),
        ("HTTP_MAX_RETRIES", "three", "HTTP_MAX_RETRIES"),
        ("HTTP_MAX_RETRIES", "-1", "HTTP_MAX_RETRIES"),
        ("HTTP_RETRY_STATUSES", "500,abc", "HTTP_RETRY_STATUSES"),
        ("HTTP_RETRY_STATUSES", "500,999", "HTTP_RETRY_STATUSES"),
        ("HTTP_CIRCUIT_BREAKER_THRESHOLD", "0", "HTTP_CIRCUIT_BREAKER_THRESHOLD"),
        ("HTTP_BACKOFF_MAX", "nan", "HTTP_BACKOFF_MAX"),
        ("HTTP_HTTP2", "maybe", "HTTP_HTTP2"),
        ("HTTP_PROVIDERS__DEEPSEEK__TIMEOUT_READ", "-3", "HTTP_PROVIDERS__DEEPSEEK__TIMEOUT_READ"),
        ("HTTP_KEEPALIVE_EXPIRY", "1e300", "less than or equal to 86400"),
        ("HTTP_TIMEOUT_TOTAL", "86401", "HTTP_TIMEOUT_TOTAL"),
        ("HTTP_MAX_CONNECTIONS", "1000000", "less than or equal to 100000"),
        ("HTTP_CIRCUIT_BREAKER_MIN_THROUGHPUT", "10000000", "HTTP_CIRCUIT_BREAKER_MIN"),
        ("HTTP_VERIFY", "perhaps", "HTTP_VERIFY"),
        ("HTTP_CA_BUNDLE", "/no/such/ca.pem", "HTTP_CA_BUNDLE"),
        ("HTTP_PROVIDERS__DEEPSEEK__TIMEOUT_RAED", "3", "TIMEOUT_RAED .*unknown setting"),
        ("HTTP_PROVIDERS", "{not json", "HTTP_PROVIDERS: not valid JSON"),
        ("HTTP_PROVIDERS", "[" * 100_000 + "]" * 100_000, "HTTP_PROVIDERS|nested too deeply"),
    ],
)
def test_bad_environment_values_are_one_line_errors_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=fragment) as info:
        HttpSettings()
    message = str(info.value)
    assert "\n" not in message
    assert len(message) < 400


def test_a_long_bad_value_is_shortened_in_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_MAX_RETRIES", "x" * 10_000)
    with pytest.raises(ConfigError, match=r"HTTP_MAX_RETRIES.*xxx\.\.\.") as info:
        HttpSettings()
    assert len(str(info.value)) < 300


@pytest.mark.parametrize(
    "value",
    [
        "ftp://user:s3cretpw@proxy.example:21",
        "http://user:s3cretpw@",
        "http://user:s3cretpw@proxy example:80",
        "user:s3cretpw",
    ],
)
def test_a_bad_proxy_url_is_refused_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("HTTP_PROXY_URL", value)
    with pytest.raises(ConfigError, match="HTTP_PROXY_URL") as info:
        HttpSettings()
    assert "s3cretpw" not in str(info.value)


def test_a_proxy_password_stays_out_of_the_repr() -> None:
    s = HttpSettings(proxy_url="http://user:s3cretpw@proxy.example:3128")
    assert "s3cretpw" not in repr(s)
    assert "s3cretpw" not in str(s)
    assert s.tls_or_proxy_set == ("proxy_url",)


def test_the_standard_proxy_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY (and http_proxy) are the proxy for http:// URLs, read through trust_env."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    assert HttpSettings().proxy_url is None


def test_an_empty_path_or_proxy_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY_URL", "HTTP_CA_BUNDLE", "HTTP_CLIENT_CERT", "HTTP_CLIENT_KEY"):
        monkeypatch.setenv(name, " ")
    s = HttpSettings()
    assert (s.proxy_url, s.ca_bundle, s.client_cert, s.client_key) == (None, None, None, None)


def test_tls_files_are_checked_when_the_settings_are_built(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    s = HttpSettings(ca_bundle=pem, client_cert=str(pem), client_key=pem)
    assert s.ca_bundle == pem
    assert s.client_key == pem
    with pytest.raises(ConfigError, match="HTTP_CLIENT_KEY is set without HTTP_CLIENT_CERT"):
        HttpSettings(client_key=pem)
    with pytest.raises(ConfigError, match="HTTP_CA_BUNDLE is set but HTTP_VERIFY is false"):
        HttpSettings(ca_bundle=pem, verify=False)
    with pytest.raises(ConfigError, match="HTTP_CLIENT_CERT"):
        HttpSettings(client_cert=tmp_path)  # a folder, not a file


def test_under_cgi_tls_and_proxy_variables_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CGI server turns a request's 'Verify:' header into HTTP_VERIFY (httpoxy)."""
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    monkeypatch.setenv("HTTP_VERIFY", "false")
    monkeypatch.setenv("HTTP_PROXY_URL", "http://attacker.example:8080")
    monkeypatch.setenv("HTTP_PROVIDERS__ACME__TRUST_ENV", "false")
    monkeypatch.setenv("HTTP_PROVIDERS__ACME__TIMEOUT_READ", "9")
    monkeypatch.setenv("HTTP_MAX_RETRIES", "1")
    s = HttpSettings()
    assert (s.verify, s.proxy_url, s.max_retries) == (True, None, 1)
    assert s.for_provider("acme").trust_env is True
    assert s.for_provider("acme").timeout_read == 9
    assert HttpSettings(verify=False).verify is False  # arguments still apply
    monkeypatch.delenv("REQUEST_METHOD")
    assert HttpSettings().verify is False


def test_settings_are_frozen() -> None:
    s = HttpSettings()
    with pytest.raises(Exception, match="frozen"):
        s.max_retries = 9  # type: ignore[misc]


def test_env_example_documents_every_variable() -> None:
    text = (Path(__file__).parents[2] / ".env.example").read_text()
    docs = (Path(__file__).parents[2] / "docs" / "settings.md").read_text()
    for name in HttpSettings.model_fields:
        if name == "providers":
            continue
        variable = f"HTTP_{name.upper()}"
        assert variable in text, f"{variable} missing from .env.example"
        assert variable in docs, f"{variable} missing from docs/settings.md"


# -- property: any environment gives settings or a ConfigError --------------------------------

_VARIABLES = [f"HTTP_{name.upper()}" for name in HttpSettings.model_fields]
_VARIABLES += [f"HTTP_PROVIDERS__ACME__{name.upper()}" for name in HttpSettings.model_fields]
_VARIABLES += ["HTTP_PROVIDERS__ACME", "HTTP_PROVIDERS__ACME__X__Y"]
_ENV_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
_VALUES = st.one_of(
    _ENV_TEXT,
    st.floats().map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["", "true", "0", "1e300", "{", "[]", "{}", '{"a": 1}', "null", "-0", "inf"]),
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    ).map(lambda v: __import__("json").dumps(v)),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_VARIABLES), _VALUES, max_size=4))
def test_any_environment_gives_settings_or_a_config_error(env: dict[str, str]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("HTTP_")}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        problems: list[str] = []
        try:
            built = HttpSettings()
            for name in built.providers:
                built.for_provider(name)
        except ConfigError as exc:
            problems.append(str(exc))
    assert all("\n" not in text for text in problems)


def test_every_tls_and_proxy_field_is_a_setting_of_both_layers() -> None:
    from httprail import ProviderOverrides

    assert set(HttpSettings.model_fields) >= TLS_PROXY_FIELDS
    assert set(HttpSettings.model_fields) - {"providers"} == set(ProviderOverrides.model_fields)


def test_every_provider_override_has_the_type_and_bounds_of_its_setting() -> None:
    """ProviderOverrides restates HttpSettings' fields as optional: a bound changed in one
    place only (a type, a maximum) fails here."""
    from httprail import ProviderOverrides

    def bare(schema: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in schema.items() if k not in ("default", "title")}

    knobs = HttpSettings.model_json_schema()["properties"]
    overrides = ProviderOverrides.model_json_schema()["properties"]
    for name, schema in overrides.items():
        knob = bare(knobs[name])
        assert bare(schema) == (knob if "anyOf" in knob else {"anyOf": [knob, {"type": "null"}]})


def test_a_proxy_url_that_does_not_parse_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY_URL", "http://[::1")
    with pytest.raises(ConfigError, match=r"HTTP_PROXY_URL .*not a valid URL"):
        HttpSettings()


def test_a_provider_tls_override_that_breaks_a_rule_names_the_provider(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_text("key")
    s = HttpSettings(ca_bundle=pem, providers={"lab": {"verify": False}, "k": {"client_key": pem}})
    with pytest.raises(ConfigError, match=r"for provider 'lab'.*HTTP_CA_BUNDLE is set but"):
        s.for_provider("lab")
    with pytest.raises(ConfigError, match=r"for provider 'k'.*HTTP_CLIENT_KEY is set without"):
        s.for_provider("k")


def test_http_terminal_names_the_terminal_of_clients_built_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_TERMINAL picks the default client's terminal by entry-point name; unset it is
    aiohttp; an unknown name is a ConfigError naming the variable and the known names."""
    from httprail import AsyncClient
    from httprail.terminals import AiohttpTerminal, CurlTerminal

    assert isinstance(AsyncClient("http://x.test").pipeline.terminal, AiohttpTerminal)
    monkeypatch.setenv("HTTP_TERMINAL", "curl")
    assert isinstance(AsyncClient("http://x.test").pipeline.terminal, CurlTerminal)
    monkeypatch.setenv("HTTP_TERMINAL", "carrier-pigeon")
    with pytest.raises(ConfigError, match=r"HTTP_TERMINAL.*'carrier-pigeon'.*known: aiohttp"):
        AsyncClient("http://x.test")
    monkeypatch.setenv("HTTP_TERMINAL", "a b")
    with pytest.raises(ConfigError, match="HTTP_TERMINAL"):
        AsyncClient("http://x.test")
