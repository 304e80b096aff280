"""verify: a request signed by HmacSigning passes; any change, age or malformation fails."""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import AsyncIterator, Callable, Mapping

import httpx
import pytest
from httprail import ConfigError, Pipeline, Success
from httprail.testing import MockTerminal, RecordedRequest

from httprail_signing import HmacSigning, RequestParts, verify

SECRET = "s3cret-key"
NOW = 1_700_000_000.0
URL = "https://api.test/v1/items?b=2&a=1"
BODY = b'{"name":"widget"}'


def at(seconds: float) -> Callable[[], float]:
    return lambda: seconds


@dataclasses.dataclass(frozen=True)
class Parts:
    """A received request as a server framework would expose it."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...] | Mapping[str, str]
    body: bytes


async def signed(stage: HmacSigning | None = None) -> Parts:
    """A request signed at NOW, as parts a server receives (lower-case names, in order)."""
    terminal = MockTerminal(lambda r: httpx.Response(200))
    stage = stage or HmacSigning("client-1", SECRET, clock=at(NOW))
    built = httpx.Request("POST", URL, content=BODY)
    outcome = await Pipeline([stage], terminal).send(built)
    assert isinstance(outcome, Success)
    return Parts(
        method=built.method,
        path=built.url.raw_path.decode().partition("?")[0],
        query=built.url.query.decode(),
        headers=tuple((k.lower(), v) for k, v in built.headers.multi_items()),
        body=built.read(),
    )


def with_header(parts: Parts, name: str, value: str | None) -> Parts:
    """``parts`` with header ``name`` replaced (or removed when ``value`` is None)."""
    assert isinstance(parts.headers, tuple)
    kept = tuple((k, v) for k, v in parts.headers if k != name)
    return dataclasses.replace(parts, headers=kept if value is None else (*kept, (name, value)))


def header(parts: Parts, name: str) -> str:
    assert isinstance(parts.headers, tuple)
    return dict(parts.headers)[name]


async def test_a_signed_request_verifies_as_parts_and_with_a_mapping_of_headers() -> None:
    parts = await signed()
    assert isinstance(parts, RequestParts)
    assert verify(parts, SECRET, 300, clock=at(NOW))
    assert verify(parts, SECRET.encode(), max_age=300, key_id="client-1", clock=at(NOW))
    as_mapping = dataclasses.replace(parts, headers=dict(parts.headers))
    assert verify(as_mapping, SECRET, 300, clock=at(NOW))


def test_a_recorded_request_has_the_shape_verify_reads() -> None:
    recorded = RecordedRequest("GET", "/", "", (), b"", 0.0, 1)
    assert isinstance(recorded, RequestParts)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: dataclasses.replace(p, body=b'{"name":"gadget"}'), id="body"),
        pytest.param(lambda p: dataclasses.replace(p, method="PUT"), id="method"),
        pytest.param(lambda p: dataclasses.replace(p, path="/v1/other"), id="path"),
        pytest.param(lambda p: dataclasses.replace(p, query="b=2&a=2"), id="query"),
        pytest.param(lambda p: dataclasses.replace(p, query=""), id="query-dropped"),
        pytest.param(lambda p: with_header(p, "host", "evil.test"), id="host"),
        pytest.param(lambda p: with_header(p, "host", None), id="host-missing"),
        pytest.param(
            lambda p: with_header(p, "x-signature-timestamp", "1700000001"), id="timestamp"
        ),
        pytest.param(lambda p: with_header(p, "x-signature-timestamp", None), id="no-timestamp"),
        pytest.param(lambda p: with_header(p, "x-content-sha256", "0" * 64), id="content-hash"),
        pytest.param(lambda p: with_header(p, "x-content-sha256", None), id="no-content-hash"),
        pytest.param(lambda p: with_header(p, "signature", None), id="no-signature"),
        pytest.param(
            lambda p: with_header(
                p, "signature", header(p, "signature").replace("hmac-sha256", "hmac-sha512")
            ),
            id="algorithm-param",
        ),
        pytest.param(
            lambda p: with_header(p, "signature", header(p, "signature").replace(" host", "")),
            id="headers-param",
        ),
        pytest.param(
            lambda p: with_header(
                p, "signature", header(p, "signature").replace('signature="', 'signature="AAAA')
            ),
            id="signature-value",
        ),
    ],
)
async def test_any_change_to_what_is_signed_fails(tamper: Callable[[Parts], Parts]) -> None:
    parts = await signed()
    assert verify(parts, SECRET, 300, clock=at(NOW))
    assert not verify(tamper(parts), SECRET, 300, clock=at(NOW))


async def test_another_secret_or_key_id_fails() -> None:
    parts = await signed()
    assert not verify(parts, "other-secret", 300, clock=at(NOW))
    assert not verify(parts, SECRET, 300, key_id="client-2", clock=at(NOW))


@pytest.mark.parametrize(
    ("now", "valid"),
    [
        (NOW, True),
        (NOW + 300, True),
        (NOW + 300.5, False),  # too old
        (NOW - 300, True),
        (NOW - 301, False),  # too far in the future
    ],
)
async def test_the_timestamp_must_be_within_max_age_of_now(now: float, valid: bool) -> None:
    parts = await signed()
    assert verify(parts, SECRET, 300, clock=at(now)) is valid


async def test_the_signature_must_cover_exactly_the_expected_headers() -> None:
    """A signature over fewer headers than the verifier expects is refused, and vice versa."""
    fewer = await signed(HmacSigning("client-1", SECRET, clock=at(NOW), signed_headers=()))
    assert not verify(fewer, SECRET, 300, clock=at(NOW))
    assert verify(fewer, SECRET, 300, signed_headers=(), clock=at(NOW))
    default = await signed()
    assert not verify(default, SECRET, 300, signed_headers=(), clock=at(NOW))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        'keyId="client-1"',  # parameters missing
        'keyId="a",keyId="b",algorithm="hmac-sha256",headers="x",signature="AA=="',
        'keyId="client-1";algorithm="hmac-sha256"',
        'keyId="client-1",algorithm="hmac-sha256",headers="(request-target) '
        'x-signature-timestamp x-content-sha256 host",signature="not base64!"',
    ],
)
async def test_a_malformed_signature_header_is_false_not_an_exception(value: str) -> None:
    parts = await signed()
    assert not verify(with_header(parts, "signature", value), SECRET, 300, clock=at(NOW))


@pytest.mark.parametrize("timestamp", ["", "soon", "-5", "1e9", "1700000000, 1700000000"])
async def test_a_malformed_timestamp_is_false(timestamp: str) -> None:
    parts = await signed()
    changed = with_header(parts, "x-signature-timestamp", timestamp)
    assert not verify(changed, SECRET, 10**12, clock=at(NOW))


async def test_unknown_signature_parameters_are_ignored() -> None:
    parts = await signed()
    value = header(parts, "signature") + ',created="1"'
    assert verify(with_header(parts, "signature", value), SECRET, 300, clock=at(NOW))


async def test_an_httpx_request_verifies_but_not_with_a_streamed_body() -> None:
    terminal = MockTerminal(lambda r: httpx.Response(200))
    request = httpx.Request("POST", URL, content=BODY)
    await Pipeline([HmacSigning("k1", SECRET, clock=at(NOW))], terminal).send(request)
    assert verify(request, SECRET, 300, clock=at(NOW))

    async def chunks() -> AsyncIterator[bytes]:
        yield BODY

    streamed = httpx.Request("POST", URL, content=chunks(), headers=request.headers)
    assert not verify(streamed, SECRET, 300, clock=at(NOW))


async def test_the_digests_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = await signed()
    compared: list[tuple[object, object]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert verify(parts, SECRET, 300, clock=at(NOW))
    assert len(compared) == 2  # the body hash, then the HMAC


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"secret": ""}, "secret"),
        ({"max_age": -1}, "max_age"),
        ({"max_age": float("nan")}, "max_age"),
        ({"max_age": "300"}, "max_age"),
        ({"algorithm": "md5"}, "algorithm"),
        ({"header": "Sig\r\nX: 1"}, "header"),
        ({"signed_headers": "host"}, "signed_headers"),
        ({"key_id": ""}, "key_id"),
        ({"clock": 5}, "clock"),
    ],
)
async def test_bad_options_are_a_config_error_naming_the_option(
    options: dict[str, object], option: str
) -> None:
    parts = await signed()
    arguments: dict[str, object] = {"secret": SECRET, "max_age": 300, **options}
    with pytest.raises(ConfigError, match=rf"verify\({option}=\.\.\.\)"):
        verify(parts, **arguments)  # type: ignore[arg-type]
