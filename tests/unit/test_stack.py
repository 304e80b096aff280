"""Declared stacks: a stack file or dict becomes a client (and a generator), and every mistake
is a ConfigError naming the file, the provider or service, the plugin and the option."""

from __future__ import annotations

import copy
import functools
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from httprail import (
    AsyncClient,
    ConfigError,
    Failure,
    HttpSettings,
    Next,
    Outcome,
    Pipeline,
    Success,
)
from httprail._discovery import PluginRegistry, default_registry
from httprail._stack import StackDeclaration, build_stack, find_stack_file, load_stack_file
from httprail.middleware import ApiKeyAuth, BearerAuth, CircuitBreaker, Retry
from httprail.testing import MockTerminal


class Echo:
    """A test generator: sends one POST through the middleware and returns the body as text."""

    name = "echo"

    def __init__(self, client: AsyncClient, *, model: str, path: str = "/echo") -> None:
        self.client = client
        self.model = model
        self.path = path
        self.closed = False

    async def generate(self, request: object) -> Outcome:
        return await self.client.post(self.path, json={"model": self.model})

    async def generate_stream(self, request: object) -> AsyncIterator[Outcome]:
        yield await self.generate(request)

    async def aclose(self) -> None:
        self.closed = True


class Mark:
    """A test middleware with typed options."""

    name = "mark"

    def __init__(self, *, value: str = "x", times: int = 1) -> None:
        self.value = value
        self.times = times

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        request.headers["x-mark"] = self.value * self.times
        return await call_next(request)


def registry() -> PluginRegistry:
    """The installed plugins (built-ins, plugin packages) plus the two test plugins."""
    found = PluginRegistry.discover(environ={})
    found.register("generators", "echo", Echo, replace=True)
    found.register("plugins", "mark", Mark, replace=True)
    found.register("transports", "mock", lambda: MockTerminal(_answer), replace=True)
    found.register("plugins", "junk", lambda: 42, replace=True)
    found.register("plugins", "explodes", _explodes, replace=True)
    return found


def _answer(request: httpx.Request) -> httpx.Response:
    headers = request.headers
    return httpx.Response(
        200,
        json={
            "path": request.url.path,
            "auth": headers.get("authorization"),
            "mark": headers.get("x-mark"),
        },
    )


def _explodes() -> Mark:
    raise RuntimeError("cannot start")


DECLARATION: dict[str, Any] = {
    "providers": {
        "acme": {
            "base_url": "https://llm.acme.test/v1",
            "api_key_env": "ACME_KEY",
            "stack": ["logging", "retry", "circuit_breaker", "auth", "mark", "echo"],
            "terminal": "mock",
            "settings": {"max_retries": 1, "timeout_read": 90},
            "options": {
                "retry": {"retry_after_max": 5},
                "mark": {"value": "ab", "times": 2},
                "echo": {"model": "acme-large"},
            },
        }
    },
    "services": {
        "billing": {"base_url": "http://billing.internal", "terminal": "mock"},
    },
}
ENV = {"ACME_KEY": "sk-acme-1234"}


def declared(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(DECLARATION)
    data["providers"]["acme"].update(changes)
    return data


async def test_a_declared_provider_becomes_a_stack_with_its_generator() -> None:
    async with build_stack(DECLARATION, "acme", registry=registry(), environ=ENV) as stack:
        names = [p.name for p in stack.pipeline.plugins]
        assert names == ["logging", "retry", "circuit_breaker", "auth", "mark"]
        assert stack.kind == "provider"
        retry = stack.pipeline.find(Retry)
        assert retry is not None
        assert (retry.max_retries, retry.retry_after_max) == (1, 5)  # file settings + options
        assert stack.settings.timeout_read == 90
        assert isinstance(stack.generator, Echo)
        assert stack.generator.model == "acme-large"
        outcome = await stack.generator.generate(None)
        assert isinstance(outcome, Success)
        assert outcome.unwrap().json() == {
            "path": "/v1/echo",
            "auth": "Bearer sk-acme-1234",
            "mark": "abab",
        }
    assert stack.generator.closed


async def test_a_service_without_a_stack_gets_the_default_stack() -> None:
    async with build_stack(DECLARATION, "billing", registry=registry()) as stack:
        assert stack.kind == "service"
        assert stack.generator is None
        assert [p.name for p in stack.pipeline.plugins] == [
            "logging",
            "metrics",
            "timeout_total",
            "retry",
            "circuit_breaker",
        ]
        assert isinstance(await stack.client.get("/invoices"), Success)


async def test_environment_overrides_win_over_the_file() -> None:
    settings = HttpSettings(providers={"acme": {"max_retries": 4}})
    stack = build_stack(DECLARATION, "acme", registry=registry(), environ=ENV, settings=settings)
    retry = stack.pipeline.find(Retry)
    assert retry is not None
    assert retry.max_retries == 4
    assert stack.settings.timeout_read == 90  # the file's value where the environment is silent
    await stack.aclose()


async def test_auth_options_choose_how_the_key_is_sent() -> None:
    data = declared()
    data["providers"]["acme"]["options"]["auth"] = {"scheme": "header", "name": "api-key"}
    stack = build_stack(data, "acme", registry=registry(), environ=ENV)
    assert isinstance(stack.pipeline.find(ApiKeyAuth), ApiKeyAuth)
    assert stack.pipeline.find(BearerAuth) is None
    await stack.aclose()


async def test_a_plugin_used_twice_is_labelled_and_configured_per_label() -> None:
    """The recommended pair of timeouts: a total deadline outside Retry, one per attempt inside."""
    data = declared(
        stack=["timeout:total", "retry", "timeout:attempt", "echo:main"],
        options={
            "timeout:total": {"seconds": 20},
            "timeout:attempt": {"seconds": 4, "phase": "attempt"},
            "echo:main": {"model": "acme-small"},
        },
    )
    async with build_stack(data, "acme", registry=registry(), environ=ENV) as stack:
        stages = [(p.name, getattr(p, "seconds", None)) for p in stack.pipeline.plugins]
        assert stages == [("timeout_total", 20), ("retry", None), ("timeout_attempt", 4)]
        assert isinstance(stack.generator, Echo)
        assert stack.generator.model == "acme-small"
        assert isinstance(await stack.generator.generate(None), Success)


async def test_pipeline_from_config_gives_the_middleware_and_terminal() -> None:
    pipeline = Pipeline.from_config(DECLARATION, "acme", registry=registry(), environ=ENV)
    assert [p.name for p in pipeline.plugins][-1] == "mark"
    assert pipeline.find(CircuitBreaker) is not None
    await pipeline.aclose()


def test_a_stack_file_and_a_pyproject_table_declare_the_same(tmp_path: Path) -> None:
    body = """
[providers.acme]
base_url = "https://llm.acme.test/v1"
api_key_env = "ACME_KEY"
stack = ["retry", "auth", "echo"]
terminal = "mock"

[providers.acme.options.echo]
model = "m"
"""
    (tmp_path / "httprail.toml").write_text(body)
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        "[project]\nname='x'\n" + body.replace("[providers.", "[tool.httprail.providers.")
    )
    nested = project / "src" / "pkg"
    nested.mkdir(parents=True)
    assert find_stack_file(nested) == project / "pyproject.toml"
    assert find_stack_file(tmp_path) == tmp_path / "httprail.toml"
    for path in (tmp_path / "httprail.toml", project / "pyproject.toml"):
        declaration = load_stack_file(path)
        assert declaration.names() == ("acme",)
        stack = build_stack(path, "acme", registry=registry(), environ=ENV)
        assert isinstance(stack.generator, Echo)


def test_the_nearest_stack_file_is_used_when_none_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no stack file"):
        build_stack(None, "acme")
    (tmp_path / "httprail.toml").write_text('[services.s]\nbase_url = "http://s.test"\n')
    stack = build_stack(None, "s", registry=registry())
    assert stack.name == "s"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[providers.acme\n", "not valid TOML"),
        ("[tool.other]\nx = 1\n", "unknown key 'tool'"),
        (
            "[providers.acme]\nbase_url = 3\n",
            "provider 'acme', base_url: Input should be a valid string",
        ),
        (
            '[providers.acme]\nbase_url = "http://a"\nstak = []\n',
            "provider 'acme', stak: unknown key 'stak'",
        ),
        ("[servers.x]\n", "unknown key 'servers'"),
        (
            '[providers.acme]\nbase_url = "http://a"\n'
            '[providers.acme.options.retry]\nmax_retries = "2"\n',
            None,
        ),
    ],
)
def test_malformed_files_name_the_file_and_the_place(
    tmp_path: Path, text: str, message: str | None
) -> None:
    path = tmp_path / "httprail.toml"
    path.write_text(text)
    if message is None:  # valid file: the problem shows when it is built (see below)
        load_stack_file(path)
        return
    with pytest.raises(ConfigError) as caught:
        load_stack_file(path)
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_missing_and_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the stack file"):
        load_stack_file(tmp_path / "nope.toml")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r"has no \[tool.httprail\] table"):
        load_stack_file(tmp_path / "pyproject.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_stack_file(tmp_path / "bin.toml")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"stack": ["logging", "retyr", "echo"]},
            "provider 'acme': unknown plugin 'retyr' in its stack; known: ",
        ),
        ({"stack": ["echo", "retry"]}, "generator 'echo' can only come last"),
        ({"stack": ["retry", "auth"]}, "a provider's stack must end with a generator"),
        ({"stack": None}, "a provider needs a stack ending with a generator"),
        ({"stack": ["httpx", "echo"]}, "'httpx' is a transport, not a stack plugin"),
        (
            {"terminal": "carrier-pigeon"},
            "terminal: unknown plugin 'carrier-pigeon' in httprail.transports",
        ),
        (
            {"options": {"retry": {"max_retrys": 2}, "echo": {"model": "m"}}},
            "plugin 'retry': unknown option 'max_retrys'; its options: backoff_base",
        ),
        (
            {"options": {"retry": {"max_retries": "2"}, "echo": {"model": "m"}}},
            "plugin 'retry', option 'max_retries': Input should be a valid integer (got '2')",
        ),
        (
            {"options": {"retry": {"max_retries": -1}, "echo": {"model": "m"}}},
            "plugin 'retry': Retry(max_retries=...) must be an int >= 0",
        ),
        (
            {"options": {"mark": {"times": 1.5}, "echo": {"model": "m"}}},
            "plugin 'mark', option 'times'",
        ),
        (
            {"options": {"metrics": {}, "echo": {"model": "m"}}},
            "options given for 'metrics', which is not in its stack",
        ),
        ({"options": {}}, "generator 'echo': missing required option 'model'"),
        (
            {"options": {"echo": {"model": "m", "temperature": 2}}},
            "generator 'echo': unknown option 'temperature'",
        ),
        (
            {"options": {"auth": {"scheme": "carrier"}, "echo": {"model": "m"}}},
            "plugin 'auth', option 'scheme'",
        ),
        (
            {"settings": {"timeout_reed": 3}},
            "provider 'acme', settings.timeout_reed: unknown setting 'timeout_reed'",
        ),
        (
            {"settings": {"timeout_connect": 100, "timeout_total": 10}},
            "HTTP_TIMEOUT_CONNECT (100.0) must be <= HTTP_TIMEOUT_TOTAL",
        ),
        ({"base_url": "not a url"}, "must be absolute"),
        (
            {"stack": ["timeout", "retry", "timeout", "echo"]},
            "'timeout' is listed twice in its stack; to use a plugin twice, label each use",
        ),
        ({"stack": ["timeout:", "echo"]}, "'timeout:' in its stack: expected 'plugin:label'"),
        (
            {"stack": ["timeout:total", "echo"], "options": {"timeout:attempt": {}, "echo": {}}},
            "options given for 'timeout:attempt', which is not in its stack",
        ),
        (
            {
                "stack": ["timeout:attempt", "echo"],
                "options": {"timeout:attempt": {"phase": "attempt"}, "echo": {"model": "m"}},
            },
            "plugin 'timeout:attempt': Timeout(phase='attempt') needs seconds=",
        ),
        (
            {"stack": ["junk", "echo"], "options": {"echo": {"model": "m"}}},
            "plugin 'junk': built 42, not a middleware",
        ),
        (
            {"stack": ["explodes", "echo"], "options": {"echo": {"model": "m"}}},
            "plugin 'explodes': failed to build: RuntimeError: cannot start",
        ),
    ],
)
def test_every_mistake_names_where_it_is(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_stack(declared(**change), "acme", registry=registry(), environ=ENV)
    text = str(caught.value)
    assert text.startswith("<dict>: provider 'acme'"), text
    assert message in text, text


def test_a_missing_api_key_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="provider 'acme': api_key_env 'ACME_KEY' is not set"):
        build_stack(DECLARATION, "acme", registry=registry(), environ={"ACME_KEY": "  "})


def test_an_unknown_name_lists_the_declared_ones() -> None:
    with pytest.raises(ConfigError, match="no provider or service 'acm'; declared: acme, billing"):
        build_stack(DECLARATION, "acm", registry=registry(), environ=ENV)


def test_a_generator_in_a_service_is_refused() -> None:
    data = copy.deepcopy(DECLARATION)
    data["services"]["billing"]["stack"] = ["retry", "echo"]
    with pytest.raises(ConfigError, match="service 'billing': generator 'echo' can only come in"):
        build_stack(data, "billing", registry=registry())


def test_a_declaration_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match="must be a table"):
        build_stack(["providers"], "x", registry=registry())  # type: ignore[arg-type]


def test_the_default_registry_is_used_when_none_is_given() -> None:
    service = {
        "base_url": "http://s.test",
        "stack": ["retry", "template-header"],
        "options": {"template-header": {"headers": {"X-Team": "a"}}},
    }
    data = {"services": {"s": service}}
    stack = build_stack(data, "s")
    assert [p.name for p in stack.pipeline.plugins] == ["retry", "template-header"]
    assert default_registry().get("plugins", "template-header").distribution == (
        "httprail-plugin-template"
    )


async def test_a_broken_provider_stack_never_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[httpx.Request] = []
    terminal = MockTerminal(lambda r: sent.append(r) or httpx.Response(500))  # type: ignore[func-returns-value]
    found = registry()
    found.register("transports", "mock", lambda: terminal, replace=True)
    with pytest.raises(ConfigError):
        build_stack(
            declared(options={"retry": {"max_retrys": 1}}), "acme", registry=found, environ=ENV
        )
    assert sent == []
    stack = build_stack(declared(), "acme", registry=found, environ=ENV)
    outcome = await stack.client.get("/x")
    assert isinstance(outcome, Failure)
    assert len(sent) == 2  # max_retries = 1 from the file's settings
    await stack.aclose()


# -- checked when the file is loaded ----------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("ftp://user:S3CRETPW@files.test/", "must be absolute: http:// or https:// and a host"),
        ("/v1", "must be absolute"),
        ("https://", "must be absolute"),
        ("http://a.test/\r\nx", "the URL contains CR"),
    ],
)
def test_a_base_url_that_is_not_absolute_http_is_refused_at_load(
    tmp_path: Path, base_url: str, message: str
) -> None:
    path = tmp_path / "httprail.toml"
    path.write_text(
        '[services.s]\nbase_url = "' + base_url.encode("unicode_escape").decode() + '"\n'
    )
    with pytest.raises(ConfigError, match=f"service 's', base_url: {message}") as caught:
        load_stack_file(path)
    assert "S3CRETPW" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("X-A", "v\r\nContent-Length: 0\r\n\r\nGET /admin HTTP/1.1", "'X-A' contains CR"),
        ("X-B", "line\nbreak", "'X-B' contains LF"),
        ("X-C", "nul\x00", "'X-C' contains NUL"),
        ("X D", "v", "header name 'X...' contains a space"),
    ],
)
def test_headers_that_would_smuggle_are_refused_at_load(
    name: str, value: str, message: str
) -> None:
    data = {"services": {"s": {"base_url": "http://s.test", "headers": {name: value}}}}
    with pytest.raises(ConfigError, match=f"service 's', headers: .*{message}") as caught:
        StackDeclaration.from_mapping(data)
    assert "GET /admin" not in str(caught.value)


def test_settings_are_checked_at_load_with_their_bounds() -> None:
    data = {
        "services": {"s": {"base_url": "http://s.test", "settings": {"keepalive_expiry": 1e300}}}
    }
    with pytest.raises(ConfigError, match=r"service 's', settings.keepalive_expiry: .*86400"):
        StackDeclaration.from_mapping(data)


def test_a_toml_file_nested_3000_deep_is_a_one_line_config_error(tmp_path: Path) -> None:
    path = tmp_path / "httprail.toml"
    path.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply") as caught:
        load_stack_file(path)
    assert "\n" not in str(caught.value)


def test_a_declaration_nested_too_deep_names_where() -> None:
    value: Any = "leaf"
    for _ in range(5_000):
        value = [value]
    data = {"services": {"s": {"base_url": "http://s.test", "options": {"retry": {"x": value}}}}}
    with pytest.raises(ConfigError, match=r"services.s.options.retry.x\[0\].*more than 32 levels"):
        StackDeclaration.from_mapping(data)


def test_relative_tls_paths_are_relative_to_the_stack_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "certs").mkdir()
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "certs" / "ca.pem"))
    (tmp_path / "httprail.toml").write_text(
        '[services.s]\nbase_url = "https://s.test"\nterminal = "httpx"\n'
        'settings = { ca_bundle = "certs/ca.pem", proxy_url = "http://proxy.test:3128" }\n'
    )
    monkeypatch.chdir("/")
    declaration = load_stack_file(tmp_path / "httprail.toml")
    _, entry = declaration.entry("s")
    assert entry.settings.ca_bundle == tmp_path / "certs" / "ca.pem"
    stack = build_stack(declaration, "s", registry=registry(), settings=HttpSettings())
    assert stack.settings.ca_bundle == tmp_path / "certs" / "ca.pem"
    assert stack.pipeline.terminal.settings.proxy_url == "http://proxy.test:3128"  # type: ignore[attr-defined]


def test_a_secret_option_of_the_wrong_type_is_not_quoted() -> None:
    data = declared(
        stack=["auth", "echo"], options={"auth": {"api_key": ["sk-S3CRET"]}, "echo": {"model": "m"}}
    )
    with pytest.raises(ConfigError, match="plugin 'auth', option 'api_key'") as caught:
        build_stack(data, "acme", registry=registry(), environ=ENV)
    assert "S3CRET" not in str(caught.value)


@functools.cache
def _shared_registry() -> PluginRegistry:
    return registry()


_KEYS = st.sampled_from(
    [
        "providers",
        "services",
        "acme",
        "base_url",
        "stack",
        "options",
        "settings",
        "headers",
        "terminal",
        "api_key_env",
        "timeout_total",
        "verify",
        "proxy_url",
        "retry",
        "x",
    ]
)
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["http://a.test", "ftp://a", "mock", "echo", "retry", "x\r\ny", "1e300"]),
)
_TREES = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_KEYS, _TREES, max_size=3))
def test_any_declaration_gives_a_stack_or_a_config_error(data: dict[str, Any]) -> None:
    """Whatever the table holds, loading and building raise nothing but ConfigError."""
    found = _shared_registry()
    try:
        declaration = StackDeclaration.from_mapping(data)
        for name in declaration.names():
            build_stack(declaration, name, registry=found, environ=ENV)
    except ConfigError as exc:
        assert "\n" not in str(exc)  # noqa: PT017 - the property: one line, whatever failed


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="[]{}=\".,\n #abcpvrs_-1\\'tu:/", max_size=80))
def test_any_text_as_a_stack_file_gives_a_declaration_or_a_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "httprail.toml"
        path.write_text(text)
        try:
            load_stack_file(path)
        except ConfigError as exc:
            assert "\n" not in str(exc)  # noqa: PT017 - the property: one line


def test_more_malformed_declarations_name_the_place(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="service 's', base_url: not a valid URL"):
        StackDeclaration.from_mapping({"services": {"s": {"base_url": "http://[::1"}}})
    with pytest.raises(ConfigError, match=r"service 's', plugin 'retry': Input should be a valid"):
        StackDeclaration.from_mapping(
            {"services": {"s": {"base_url": "http://s.test", "options": {"retry": 3}}}}
        )
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool]\nhttprail = 3\n")
    with pytest.raises(
        ConfigError, match=r"\[tool.httprail\]: a stack declaration must be a table"
    ):
        load_stack_file(pyproject)
