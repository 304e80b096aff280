"""No secrets leak: one redaction rule for URLs, headers, backend text, errors and log records."""

from __future__ import annotations

import gc
import logging
import uuid

import httpx
import pytest
from structlog.testing import capture_logs

from httprail import (
    AsyncClient,
    ClientStatusError,
    ConfigError,
    MaxRetriesExceededError,
    Pipeline,
    ReadError,
    _redact,
    redact_headers,
    redact_text,
    redact_url,
    register_secret,
    register_sensitive_param,
)
from httprail._redact import (
    BACKEND_LOGGERS,
    MAX_SECRETS_PER_OWNER,
    MAX_UNOWNED_SECRETS,
    REDACTED,
    RedactingFilter,
    _registry,
    install_backend_log_filters,
    is_sensitive_param,
)
from httprail.middleware import ApiKeyAuth, BasicAuth, BearerAuth, Logging, default_plugins
from httprail.terminals import HttpxTerminal, map_exception
from httprail.terminals._mapping import RedactedBackendError, safe_cause
from httprail.testing import FakeClock, MockTerminal


def secret() -> str:
    """A fresh value no other test registered."""
    return f"CANARY-{uuid.uuid4().hex}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.test/x?api_key=s3cret&q=1", "https://api.test/x?api_key=REDACTED&q=1"),
        ("https://api.test/x?token=s3cret", "https://api.test/x?token=REDACTED"),
        (
            "https://api.test/x?X-Amz-Signature=s3cret",
            "https://api.test/x?X-Amz-Signature=REDACTED",
        ),
        ("https://user:s3cret@api.test/x", "https://api.test/x"),
        ("https://api.test/x?page=2", "https://api.test/x?page=2"),
        ("https://api.test/x", "https://api.test/x"),
    ],
)
def test_urls_lose_credentials(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "s3cret" not in redact_url(httpx.URL(url))


def test_an_invalid_url_is_scrubbed_as_text() -> None:
    assert redact_url("http://user:s3cret@[::1?api_key=k3y") == "http://[::1?api_key=REDACTED"
    assert redact_url(123) == "<invalid url>"  # type: ignore[arg-type]


def test_sensitive_headers_are_redacted() -> None:
    headers = {
        "Authorization": "Bearer s3cret",
        "Cookie": "session=s3cret",
        "X-API-Key": "s3cret",
        "X-Custom-Token": "s3cret",
        "Accept": "application/json",
    }
    redacted = redact_headers(headers)
    assert "s3cret" not in repr(redacted)
    assert redacted["Accept"] == "application/json"
    assert redact_headers(list(headers.items())) == redacted


def test_error_str_and_repr_do_not_contain_secrets() -> None:
    request = httpx.Request(
        "GET",
        "https://user:pw-s3cret@api.test/x?api_key=s3cret",
        headers={"Authorization": "Bearer s3cret"},
    )
    errors = [
        ReadError("connection reset", request=request),
        ClientStatusError(httpx.Response(401, request=request)),
    ]
    errors.append(MaxRetriesExceededError(errors[:1], request=request))
    for error in errors:
        assert "s3cret" not in str(error)
        assert "s3cret" not in repr(error)
        assert "api.test" in str(error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "ClientResponseError: 400, message='Bad status line', "
            "url='http://u:pw1234@h:1/g?api_key=k3y123&page=2'",
            "ClientResponseError: 400, message='Bad status line', "
            "url='http://h:1/g?api_key=REDACTED&page=2'",
        ),
        (
            'HTTP Request: GET https://user:pw@host/?key=abc "HTTP/1.1 200 OK"',
            'HTTP Request: GET https://host/?key=REDACTED "HTTP/1.1 200 OK"',
        ),
        (
            "LocalProtocolError: Illegal header value b'session=s3cret\\n'",
            f"LocalProtocolError: Illegal header value {REDACTED}",
        ),
        (
            "return_value=(b'HTTP/1.1', 200, b'OK', [(b'Set-Cookie', b'id=s3cret'), "
            "(b'Content-Type', b'text/plain')])",
            f"return_value=(b'HTTP/1.1', 200, b'OK', [(b'Set-Cookie', {REDACTED}), "
            "(b'Content-Type', b'text/plain')])",
        ),
        (
            "Adding b'x-auth-token'=b's3cret' to the header table, sensitive:False",
            f"Adding b'x-auth-token'={REDACTED} to the header table, sensitive:False",
        ),
        (
            "Evicting b'cookie': b'id=s3cret' from the header table",
            f"Evicting b'cookie': {REDACTED} from the header table",
        ),
        ("Authorization: Basic czNjcmV0\nAccept: */*", f"Authorization: {REDACTED}\nAccept: */*"),
        ("sent Bearer abc.def-ghi= upstream", f"sent Bearer {REDACTED} upstream"),
        ("ReadError: connection reset by peer", "ReadError: connection reset by peer"),
        ("reset [GET http://h/x?api_key=k3y]", "reset [GET http://h/x?api_key=REDACTED]"),
        ("at (http://[::1]:80/?token=k3y)", "at (http://[::1]:80/?token=REDACTED)"),
        (
            "ValueError: Invalid header value: s3cret-value\x01",
            f"ValueError: Invalid header value: {REDACTED}",
        ),
        (
            "refused: invalid header value:  s3cret [GET http://h/x]\nnext line",
            f"refused: invalid header value:  {REDACTED}\nnext line",
        ),
        (
            "GET https://h/x?auth_token=t0k&accessToken=t1k&private-key=k2&jwt=j3&page=2",
            "GET https://h/x?auth_token=REDACTED&accessToken=REDACTED&private-key=REDACTED"
            "&jwt=REDACTED&page=2",
        ),
        ("", ""),
    ],
)
def test_redact_text_rewrites_urls_header_values_and_tokens(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert redact_text(expected) == expected  # idempotent


def test_a_long_run_of_letters_in_front_of_a_url_is_redacted_in_one_pass() -> None:
    """A hostile header echoed in an error (``b'X-Huge: aaaa...'``, then the request's URL):
    with an unbounded scheme every letter started a scan to the run's end, and 64 KB took
    ~14 s of CPU per error; 2 MB would take hours, so this test hits pytest's timeout."""
    run = "a" * 2_000_000
    text = f"Bad status line: b'X-Huge: {run}' [GET http://ann:s3cret@h/x?token=k3y]"
    clean = redact_text(text)
    assert clean == f"Bad status line: b'X-Huge: {run}' [GET http://h/x?token=REDACTED]"
    glued = redact_text(run + "http://ann:s3cret@h/")  # a scheme glued to the run
    assert glued.endswith("http://h/")
    assert "s3cret" not in glued


def test_a_registered_secret_is_masked_wherever_it_appears_even_percent_encoded() -> None:
    value = secret() + "/+ ="
    owner = BearerAuth("unrelated-token")
    register_secret(value, owner=owner)
    url = httpx.URL("http://h/x").copy_set_param("other", value)
    assert value not in redact_text(f"the key {value} and again {value}")
    assert "CANARY" not in redact_text(str(url))
    assert "CANARY" not in redact_url(url)


def test_short_values_are_not_registered() -> None:
    register_secret("abc")
    assert redact_text("abc abc") == "abc abc"


def test_a_secret_is_forgotten_with_its_owner() -> None:
    value = secret()

    class Owner:
        pass

    owner = Owner()
    register_secret(value, owner=owner)
    assert value not in redact_text(value)
    del owner
    gc.collect()
    assert redact_text(value) == value
    assert value not in _registry.current()


def test_an_owner_keeps_its_most_recent_values_only() -> None:
    owner = BearerAuth("unrelated-token")
    values = [secret() for _ in range(MAX_SECRETS_PER_OWNER + 1)]
    for value in values:
        register_secret(value, owner=owner)
    assert redact_text(values[0]) == values[0]
    assert all(redact_text(value) == REDACTED for value in values[1:])


def test_unowned_secrets_are_bounded() -> None:
    values = [secret() for _ in range(MAX_UNOWNED_SECRETS + 1)]
    for value in values:
        register_secret(value)
    register_secret(values[-1])  # registering again keeps it the most recent
    assert redact_text(values[0]) == values[0]
    assert redact_text(values[-1]) == REDACTED


def test_a_registered_parameter_name_is_redacted_in_urls_and_text() -> None:
    register_sensitive_param("Subscription-Key")
    url = "https://api.test/x?subscription-key=s3cret-value&q=1"
    assert redact_url(url) == "https://api.test/x?subscription-key=REDACTED&q=1"
    assert "s3cret" not in redact_text(f"failed: url='{url}'")
    register_sensitive_param("subscription-key")  # already known: nothing changes
    assert is_sensitive_param("SUBSCRIPTION-KEY")
    assert not is_sensitive_param("page")


@pytest.mark.parametrize(
    "name",
    [
        "auth_token",
        "private_token",
        "accessToken",
        "access-token",
        "session_token",
        "SESSION.SECRET",
        "jwt",
        "x-api-key",
        "db_password",
        "passwd",
        "sessionid",
        "aws_credentials",
        "request.signature",
    ],
)
def test_a_parameter_named_like_a_credential_is_sensitive(name: str) -> None:
    """Names ending in token, secret, key, ... (separators and case aside) need no registering."""
    assert is_sensitive_param(name)
    url = f"https://api.test/x?{name}=s3cret-value&q=1"
    assert redact_url(url) == f"https://api.test/x?{name}=REDACTED&q=1"


@pytest.mark.parametrize("name", ["page", "q", "limit", "max_tokens", "keys", "tokenizer", "id"])
def test_other_parameter_names_are_not(name: str) -> None:
    assert not is_sensitive_param(name)
    assert redact_url(f"https://api.test/x?{name}=1") == f"https://api.test/x?{name}=1"


def test_registered_parameter_names_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_redact, "MAX_EXTRA_PARAMS", 1)
    first, second = f"p-{uuid.uuid4().hex}", f"p-{uuid.uuid4().hex}"
    register_sensitive_param(first)
    register_sensitive_param(second)
    assert is_sensitive_param(second)
    assert not is_sensitive_param(first)
    assert is_sensitive_param("api_key")  # the built-in names stay


def test_auth_stages_register_their_credentials() -> None:
    token, key, custom, password = secret(), secret(), secret(), secret()
    stages = [
        BearerAuth(token),
        ApiKeyAuth(key, prefix="Token "),
        ApiKeyAuth(custom, name=f"k-{custom[-8:]}", location="query"),
        BasicAuth("user", password),
    ]
    text = f"{token} {key} {custom} {password} url http://h/?k-{custom[-8:]}=x1y2z3w4"
    clean = redact_text(text)
    assert "CANARY" not in clean
    assert "x1y2z3w4" not in clean
    assert len(stages) == 4


async def test_a_provided_token_is_registered_when_it_is_fetched() -> None:
    tokens = [secret(), secret()]

    async def provider() -> str:
        return tokens[0]

    stage = BearerAuth(token_provider=provider)
    pipeline = Pipeline([stage], MockTerminal(lambda r: httpx.Response(200)))
    assert redact_text(tokens[0]) == tokens[0]
    await pipeline.send(httpx.Request("GET", "http://h/"))
    await pipeline.send(httpx.Request("GET", "http://h/"))
    assert redact_text(tokens[0]) == REDACTED


def test_the_request_s_own_credentials_are_masked() -> None:
    cookie, bearer, password, key = secret(), secret(), secret(), secret()
    request = httpx.Request(
        "GET",
        f"http://user:{password}@h/x?token={key}",
        headers={"Cookie": f"a=1; session={cookie}", "Authorization": f"Bearer {bearer}"},
    )
    text = f"refused {cookie} / {bearer} / {password} / {key} / short 1"
    clean = redact_text(text, request)
    assert "CANARY" not in clean
    assert clean.endswith("short 1")


def test_an_error_message_is_redacted_when_built_and_when_shown() -> None:
    value = secret()
    register_secret(value)
    error = ReadError(f"broke at http://u:pw@h/?key={value}")
    assert "CANARY" not in error.message
    assert "pw" not in str(error)
    error.message = f"changed to {value}"
    assert "CANARY" not in str(error)
    assert "CANARY" not in repr(error)


def test_a_backend_exception_that_prints_a_secret_is_rewritten_or_stood_in_for() -> None:
    request = httpx.Request("GET", "http://h/?api_key=k3y-value-1")
    plain = httpx.ReadError("failed for http://h/?api_key=k3y-value-1")
    assert safe_cause(plain, request) is plain
    assert "k3y" not in str(plain)

    class Custom(Exception):
        def __str__(self) -> str:
            return "url='http://u:pw-s3cret@h/'"

    custom = Custom()
    stand_in = safe_cause(custom, request)
    assert isinstance(stand_in, RedactedBackendError)
    assert str(stand_in) == "Custom: url='http://h/'"

    outer = httpx.ReadError("outer")
    outer.__cause__ = Custom()
    assert safe_cause(outer, request) is outer
    assert isinstance(outer.__cause__, RedactedBackendError)
    assert outer.__suppress_context__


def test_an_exception_that_cannot_print_is_kept() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    broken = Broken()
    assert safe_cause(broken, None) is broken


def test_the_mapping_seam_redacts_with_the_request() -> None:
    cookie = secret()
    request = httpx.Request("GET", "http://h/", headers={"Cookie": f"session={cookie}"})
    exc = httpx.LocalProtocolError(f"Illegal header value b'session={cookie}\\n'")
    error = map_exception(exc, request)
    assert "CANARY" not in str(error)
    assert "CANARY" not in str(error.__cause__)
    echo = map_exception(httpx.ReadError(f"peer said {cookie}"), request)
    assert "CANARY" not in repr(echo)


def test_the_filter_rewrites_a_leaking_record_and_leaves_others_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_backend_log_filters()
    logger = logging.getLogger("httpx")
    url = httpx.URL("https://user:pw-s3cret@api.test/?key=k3y-s3cret")
    with caplog.at_level(logging.DEBUG, logger="httpx"):
        logger.info('HTTP Request: %s %s "%s %d %s"', "GET", url, "HTTP/1.1", 200, "OK")
        logger.info("plain %s", "text")
    leaked, plain = caplog.records
    assert "s3cret" not in caplog.text
    assert (
        leaked.getMessage() == 'HTTP Request: GET https://api.test/?key=REDACTED "HTTP/1.1 200 OK"'
    )
    assert plain.args == ("text",)


def test_the_filter_passes_a_record_that_cannot_be_formatted() -> None:
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "%d", ("x",), None)
    assert RedactingFilter().filter(record)
    assert record.args == ("x",)


def test_building_a_terminal_puts_the_filter_on_every_backend_logger_once() -> None:
    HttpxTerminal()
    install_backend_log_filters()
    for name in BACKEND_LOGGERS:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RedactingFilter) for f in filters) == 1


async def test_the_client_never_prints_userinfo_and_registers_its_credential_headers() -> None:
    token = secret()
    async with AsyncClient(plugins=[], headers={"Authorization": f"Bearer {token}"}) as client:
        outcome = await client.get("ftp://user:pw-s3cret@h/x")
        assert "s3cret" not in repr(outcome)
        assert "ftp://h/x" in repr(outcome)
        built = await client.get("http://user:pw-s3cret@[::1/x")
        assert "s3cret" not in repr(built)
    assert redact_text(token) == REDACTED
    with pytest.raises(ConfigError) as caught:
        AsyncClient(base_url="user:pw-s3cret@/x")
    assert "s3cret" not in str(caught.value)
    async with AsyncClient(base_url="http://user:pw-base-s3cret@h/", plugins=[]):
        assert redact_text("pw-base-s3cret") == REDACTED


async def test_logging_redacts_a_message_set_after_the_error_was_built() -> None:
    value = secret()

    def failing(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("x")

    class Late:
        name = "late"

        async def __call__(self, request: httpx.Request, call_next: object) -> object:
            outcome = await call_next(request)  # type: ignore[operator]
            outcome.failure().message = f"late http://u:{value}@h/"
            return outcome

    pipeline = Pipeline([Logging(), Late()], HttpxTerminal(transport=httpx.MockTransport(failing)))
    with capture_logs() as logs:
        await pipeline.send(httpx.Request("GET", "http://h/"))
    await pipeline.aclose()
    assert logs
    assert value not in repr(logs)


async def test_a_successful_request_on_the_default_stack_never_runs_the_redactor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redaction is paid when text is built for a failure, never by a success (the hot path)."""
    calls: list[str] = []
    mask = _redact._mask_secrets

    def counting(text: str, secrets: object) -> str:
        calls.append(text)
        return mask(text, secrets)  # type: ignore[arg-type]

    monkeypatch.setattr(_redact, "_mask_secrets", counting)
    status = {"/ok": 200, "/bad": 404}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status[request.url.path])

    clock = FakeClock()
    async with AsyncClient(
        "http://user:pw-s3cret@api.test",
        headers={"Authorization": f"Bearer {secret()}"},
        plugins=[BearerAuth(secret()), *default_plugins(clock=clock, sleep=clock.sleep)],
        terminal=HttpxTerminal(transport=httpx.MockTransport(answer)),
    ) as client:
        for _ in range(3):
            ok = await client.get("/ok", params={"api_key": "k3y-s3cret"})
            assert ok.unwrap().status_code == 200
        assert calls == []
        failed = await client.get("/bad", params={"api_key": "k3y-s3cret"})
    assert isinstance(failed.failure(), ClientStatusError)
    assert calls  # the failure's text was redacted: the counter sees the redactor run
