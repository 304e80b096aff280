"""HmacSigning over a MockTerminal with a fixed clock: the headers, the documented signing
string, retries, and the failures and option errors it reports."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from httprail import (
    ConfigError,
    ConnectError,
    Failure,
    InvalidRequestError,
    MiddlewarePlugin,
    Pipeline,
    Success,
)
from httprail.middleware import Retry
from httprail.testing import FakeClock, MockTerminal

import httprail_signing
from httprail_signing import (
    CONTENT_SHA256_HEADER,
    TIMESTAMP_HEADER,
    HmacSigning,
    SigningError,
    signing_string,
    verify,
)

SECRET = "s3cret-key"
NOW = 1_700_000_000.75
URL = "https://api.test/v1/items?b=2&a=1"
BODY = b'{"name":"widget"}'
SIGNATURE = re.compile(
    r'keyId="(?P<key_id>[^"]*)",algorithm="(?P<algorithm>[^"]*)",'
    r'headers="(?P<headers>[^"]*)",signature="(?P<signature>[^"]*)"'
)


def fixed(at: float = NOW) -> Callable[[], float]:
    return lambda: at


def ok() -> MockTerminal:
    return MockTerminal(lambda request: httpx.Response(200))


def snapshot(request: httpx.Request) -> httpx.Request:
    """A copy of the request as it was sent on this attempt (the original is reused)."""
    return httpx.Request(
        request.method, request.url, headers=request.headers.copy(), content=request.read()
    )


def recording(*replies: httpx.Response) -> tuple[MockTerminal, list[httpx.Request]]:
    """A terminal answering ``replies`` in order that keeps a copy of every attempt."""
    sent: list[httpx.Request] = []
    answers = iter(replies)

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(snapshot(request))
        return next(answers)

    return MockTerminal(handler), sent


async def sign(stage: HmacSigning, request: httpx.Request) -> httpx.Request:
    terminal = ok()
    outcome = await Pipeline([stage], terminal).send(request)
    assert isinstance(outcome, Success), outcome
    (sent,) = terminal.requests
    return sent


def test_public_names_are_exactly_these() -> None:
    assert httprail_signing.__all__ == [
        "CONTENT_SHA256_HEADER",
        "TIMESTAMP_HEADER",
        "Algorithm",
        "HmacSigning",
        "RequestParts",
        "SigningError",
        "signing_string",
        "verify",
    ]


def test_it_is_a_middleware_plugin_named_like_its_entry_point() -> None:
    stage = HmacSigning("k1", SECRET)
    assert isinstance(stage, MiddlewarePlugin)
    assert stage.name == "hmac-signing"


async def test_it_adds_the_timestamp_body_hash_and_signature_headers() -> None:
    sent = await sign(
        HmacSigning("client-1", SECRET, clock=fixed()), httpx.Request("POST", URL, content=BODY)
    )
    assert sent.headers[TIMESTAMP_HEADER] == "1700000000"  # whole seconds, rounded down
    assert sent.headers[CONTENT_SHA256_HEADER] == hashlib.sha256(BODY).hexdigest()
    match = SIGNATURE.fullmatch(sent.headers["Signature"])
    assert match is not None, sent.headers["Signature"]
    assert match["key_id"] == "client-1"
    assert match["algorithm"] == "hmac-sha256"
    assert match["headers"] == "(request-target) x-signature-timestamp x-content-sha256 host"
    assert verify(sent, SECRET, 300, clock=fixed())


async def test_the_signature_is_the_hmac_of_the_signing_string_documented_in_the_readme() -> None:
    """The README's worked example, recomputed with nothing but the standard library."""
    sent = await sign(
        HmacSigning("client-1", SECRET, clock=fixed()), httpx.Request("POST", URL, content=BODY)
    )
    documented = (
        "(request-target): post /v1/items?b=2&a=1\n"
        "x-signature-timestamp: 1700000000\n"
        "x-content-sha256: 256e2b36195d6c9d25b78bf0df70019cb60421b088cf96ca21e570fbfc34f6b2\n"
        "host: api.test"
    )
    by_hand = base64.b64encode(
        hmac.new(SECRET.encode(), documented.encode(), hashlib.sha256).digest()
    ).decode()
    assert by_hand == "No8e9lm2+ZfLphCKFW21ly1D1774E9EZZvz4zrgEhww="  # the value in the README
    assert sent.headers["Signature"] == (
        'keyId="client-1",algorithm="hmac-sha256",'
        'headers="(request-target) x-signature-timestamp x-content-sha256 host",'
        f'signature="{by_hand}"'
    )
    pairs = [
        ("X-Signature-Timestamp", "1700000000"),
        ("X-Content-SHA256", hashlib.sha256(BODY).hexdigest()),
        ("Host", " api.test "),
    ]
    assert signing_string("POST", "/v1/items?b=2&a=1", pairs) == documented


async def test_an_empty_body_is_hashed_and_the_target_stays_percent_encoded() -> None:
    sent = await sign(
        HmacSigning("k1", SECRET, clock=fixed()),
        httpx.Request("GET", "https://api.test/a%20b/%C3%A9?q=x%2Fy"),
    )
    assert sent.headers[CONTENT_SHA256_HEADER] == hashlib.sha256(b"").hexdigest()
    text = signing_string(
        "get",
        "/a%20b/%C3%A9?q=x%2Fy",
        [
            (TIMESTAMP_HEADER, "1700000000"),
            (CONTENT_SHA256_HEADER, hashlib.sha256(b"").hexdigest()),
            ("host", "api.test"),
        ],
    )
    mac = base64.b64encode(hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).digest())
    assert sent.headers["Signature"].endswith(f'signature="{mac.decode()}"')


async def test_sha512_custom_header_and_extra_signed_headers() -> None:
    stage = HmacSigning(
        "k1",
        b"\x00raw-bytes-key",
        header="X-Sig",
        algorithm="sha512",
        clock=fixed(),
        signed_headers=("Host", "Content-Type", "X-Tenant"),
    )
    request = httpx.Request(
        "PUT",
        URL,
        content=BODY,
        headers=[("Content-Type", "application/json"), ("X-Tenant", "a"), ("X-Tenant", " b ")],
    )
    sent = await sign(stage, request)
    assert "signature" not in sent.headers
    match = SIGNATURE.fullmatch(sent.headers["X-Sig"])
    assert match is not None
    assert match["algorithm"] == "hmac-sha512"
    assert match["headers"] == (
        "(request-target) x-signature-timestamp x-content-sha256 host content-type x-tenant"
    )
    assert len(base64.b64decode(match["signature"])) == 64
    text = signing_string(
        "put",
        "/v1/items?b=2&a=1",
        [
            (TIMESTAMP_HEADER, "1700000000"),
            (CONTENT_SHA256_HEADER, hashlib.sha256(BODY).hexdigest()),
            ("host", "api.test"),
            ("content-type", "application/json"),
            ("x-tenant", "a, b"),  # repeated header: values stripped, joined with ", "
        ],
    )
    expected = hmac.new(b"\x00raw-bytes-key", text.encode(), hashlib.sha512).digest()
    assert base64.b64decode(match["signature"]) == expected
    names = ("host", "content-type", "x-tenant")
    key = b"\x00raw-bytes-key"
    assert verify(
        sent, key, 60, header="X-Sig", algorithm="sha512", signed_headers=names, clock=fixed()
    )
    assert not verify(sent, key, 60, header="X-Sig", signed_headers=names, clock=fixed())


async def test_each_retry_is_signed_afresh_with_a_new_timestamp() -> None:
    """Inside Retry, the second attempt gets its own timestamp and its own valid signature."""
    clock = FakeClock(start=NOW)
    terminal, sent = recording(
        httpx.Response(503, headers={"Retry-After": "2"}), httpx.Response(200)
    )
    stack: list[MiddlewarePlugin] = [
        Retry(clock=clock, sleep=clock.sleep),
        HmacSigning("k1", SECRET, clock=clock),
    ]
    outcome = await Pipeline(stack, terminal).send(httpx.Request("PUT", URL, content=BODY))
    assert isinstance(outcome, Success)
    first, second = sent
    assert first.headers[TIMESTAMP_HEADER] == "1700000000"
    assert second.headers[TIMESTAMP_HEADER] == "1700000002"
    assert first.headers["Signature"] != second.headers["Signature"]
    assert second.headers.get_list("Signature") == [second.headers["Signature"]]  # replaced
    assert verify(first, SECRET, 300, clock=clock)
    assert verify(second, SECRET, 300, clock=clock)


async def test_outside_retry_every_attempt_carries_the_first_signature_which_goes_stale() -> None:
    """The documented order example: signed once, the retried attempt is too old for the
    server after a 120 s Retry-After; signed inside Retry, it is fresh."""
    results = {}
    for order in ("outside", "inside"):
        clock = FakeClock(start=NOW)
        retry = Retry(clock=clock, sleep=clock.sleep, retry_after_max=300)
        signing = HmacSigning("k1", SECRET, clock=clock)
        stack: list[MiddlewarePlugin] = [signing, retry] if order == "outside" else [retry, signing]
        terminal, sent = recording(
            httpx.Response(503, headers={"Retry-After": "120"}), httpx.Response(200)
        )
        await Pipeline(stack, terminal).send(httpx.Request("GET", URL))
        first, second = sent
        results[order] = (
            first.headers["Signature"] == second.headers["Signature"],
            verify(second, SECRET, max_age=60, clock=clock),
        )
    assert results == {"outside": (True, False), "inside": (False, True)}


async def test_a_streamed_body_is_not_signed_and_not_sent() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield BODY

    terminal = ok()
    stage = HmacSigning("k1", SECRET, clock=fixed())
    request = httpx.Request("POST", URL, content=chunks())
    outcome = await Pipeline([stage], terminal).send(request)
    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert isinstance(error, InvalidRequestError)
    assert isinstance(error, SigningError)
    assert "streamed request body" in str(error)
    assert error.request is request
    assert terminal.requests == []
    assert "Signature" not in request.headers


async def test_a_streamed_body_read_into_memory_first_is_signed() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield BODY[:5]
        yield BODY[5:]

    request = httpx.Request("POST", URL, content=chunks())
    await request.aread()
    sent = await sign(HmacSigning("k1", SECRET, clock=fixed()), request)
    assert sent.headers[CONTENT_SHA256_HEADER] == hashlib.sha256(BODY).hexdigest()
    assert verify(sent, SECRET, 300, clock=fixed())


async def test_a_missing_signed_header_is_a_signing_error_naming_it() -> None:
    terminal = ok()
    stage = HmacSigning("k1", SECRET, clock=fixed(), signed_headers=("host", "x-tenant"))
    outcome = await Pipeline([stage], terminal).send(httpx.Request("GET", URL))
    assert isinstance(outcome, Failure)
    assert isinstance(outcome.failure(), SigningError)
    assert "'x-tenant'" in str(outcome.failure())
    assert terminal.requests == []


async def test_a_clock_that_raises_is_a_signing_error_with_the_cause() -> None:
    boom = RuntimeError("no time")

    def broken() -> float:
        raise boom

    terminal = ok()
    outcome = await Pipeline([HmacSigning("k1", SECRET, clock=broken)], terminal).send(
        httpx.Request("GET", URL)
    )
    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert isinstance(error, SigningError)
    assert "clock failed: RuntimeError" in str(error)
    assert error.__cause__ is boom
    assert terminal.requests == []


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, "1700000000", True])
async def test_a_clock_returning_something_other_than_seconds_is_a_signing_error(
    value: object,
) -> None:
    terminal = ok()
    stage = HmacSigning("k1", SECRET, clock=lambda: value)  # type: ignore[arg-type,return-value]
    outcome = await Pipeline([stage], terminal).send(httpx.Request("GET", URL))
    assert isinstance(outcome, Failure)
    assert isinstance(outcome.failure(), SigningError)
    assert terminal.requests == []


async def test_a_failure_from_further_down_passes_through_untouched() -> None:
    error = ConnectError("refused")
    stage = HmacSigning("k1", SECRET, clock=fixed())
    outcome = await Pipeline([stage], MockTerminal(lambda request: error)).send(
        httpx.Request("GET", URL)
    )
    assert outcome == Failure(error)


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"key_id": ""}, "key_id"),
        ({"key_id": " k1"}, "key_id"),
        ({"key_id": 'k"1'}, "key_id"),
        ({"key_id": "k1\r\nX-Injected: 1"}, "key_id"),
        ({"key_id": "clé"}, "key_id"),
        ({"key_id": None}, "key_id"),
        ({"secret": ""}, "secret"),
        ({"secret": b""}, "secret"),
        ({"secret": 12345}, "secret"),
        ({"algorithm": "md5"}, "algorithm"),
        ({"algorithm": "SHA256"}, "algorithm"),
        ({"header": "X-Sig\r\nX-Injected: 1"}, "header"),
        ({"header": "X-Sig\n"}, "header"),
        ({"header": ""}, "header"),
        ({"header": "X-Content-SHA256"}, "header"),
        ({"header": "Host"}, "header"),
        ({"signed_headers": "host"}, "signed_headers"),
        ({"signed_headers": ("host", "x-a\r\nx-b")}, "signed_headers"),
        ({"signed_headers": ("x-signature-timestamp",)}, "signed_headers"),
        ({"signed_headers": ("signature",)}, "signed_headers"),
        ({"signed_headers": ("host", "Host")}, "signed_headers"),
        ({"signed_headers": (None,)}, "signed_headers"),
        ({"clock": 1_700_000_000}, "clock"),
    ],
)
def test_bad_options_are_a_config_error_naming_the_option(
    options: dict[str, object], option: str
) -> None:
    arguments: dict[str, object] = {"key_id": "k1", "secret": SECRET, **options}
    with pytest.raises(ConfigError, match=rf"HmacSigning\({option}=\.\.\.\)") as caught:
        HmacSigning(**arguments)  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("secret", [SECRET, SECRET.encode()])
def test_repr_never_shows_the_secret(secret: str | bytes) -> None:
    stage = HmacSigning("client-1", secret, signed_headers=("host", "x-tenant"))
    text = repr(stage)
    assert SECRET not in text
    assert "s3cret" not in text
    assert text == (
        "HmacSigning(key_id='client-1', algorithm='sha256', header='Signature', "
        "signed_headers=('host', 'x-tenant'), secret=[REDACTED])"
    )
    assert str(stage) == text


def test_the_options_it_was_built_with_are_readable_but_not_the_secret() -> None:
    stage = HmacSigning("k1", SECRET, header="X-Sig", algorithm="sha512", signed_headers=["Host"])
    assert (stage.key_id, stage.algorithm, stage.header, stage.signed_headers) == (
        "k1",
        "sha512",
        "X-Sig",
        ("host",),
    )
    assert not hasattr(stage, "secret")
