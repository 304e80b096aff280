"""HttpSettings: defaults, environment variables, validation errors naming the variable."""

from __future__ import annotations

import pytest

from httprail import ConfigError, HttpSettings


def test_defaults_match_the_design() -> None:
    s = HttpSettings()
    assert (s.timeout_connect, s.timeout_read, s.timeout_write, s.timeout_pool) == (5, 30, 30, 5)
    assert (s.timeout_total, s.max_retries, s.backoff_base, s.backoff_max) == (60, 3, 1, 20)
    assert s.retry_statuses == {408, 429, 500, 502, 503, 504}
    assert (s.circuit_breaker_threshold, s.circuit_breaker_cooldown) == (5, 30)
    assert (s.max_connections, s.max_keepalive, s.keepalive_expiry, s.http2) == (100, 20, 30, True)
    assert s.timeout_attempt is None


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


def test_provider_override_that_breaks_a_rule_names_the_provider() -> None:
    s = HttpSettings(providers={"slow": {"timeout_connect": 100}})
    with pytest.raises(ConfigError, match=r"for provider 'slow'.*HTTP_TIMEOUT_CONNECT"):
        s.for_provider("slow")


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
    ],
)
def test_bad_environment_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=fragment) as info:
        HttpSettings()
    assert value in str(info.value) or value.lower() in str(info.value).lower()


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"timeout_connect": 90}, r"HTTP_TIMEOUT_CONNECT \(90.0\) must be <= HTTP_TIMEOUT_TOTAL"),
        ({"timeout_attempt": 61}, r"HTTP_TIMEOUT_ATTEMPT .* must be <= HTTP_TIMEOUT_TOTAL"),
        ({"backoff_base": 30}, r"HTTP_BACKOFF_BASE .* must be <= HTTP_BACKOFF_MAX"),
        ({"max_keepalive": 500}, r"HTTP_MAX_KEEPALIVE .* must be <= HTTP_MAX_CONNECTIONS"),
    ],
)
def test_ordering_rules(values: dict[str, float], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        HttpSettings(**values)


def test_settings_are_frozen() -> None:
    s = HttpSettings()
    with pytest.raises(Exception, match="frozen"):
        s.max_retries = 9  # type: ignore[misc]


def test_env_example_documents_every_variable() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / ".env.example").read_text()
    docs = (Path(__file__).parents[2] / "docs" / "settings.md").read_text()
    for name in HttpSettings.model_fields:
        if name == "providers":
            continue
        variable = f"HTTP_{name.upper()}"
        assert variable in text, f"{variable} missing from .env.example"
        assert variable in docs, f"{variable} missing from docs/settings.md"
