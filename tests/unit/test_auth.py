"""Auth stages put credentials on the request and never show them in reprs."""

from __future__ import annotations

import base64

import httpx
import pytest

from httprail import AuthError, ConfigError, Pipeline, Success
from httprail.middleware import ApiKeyAuth, BasicAuth, BearerAuth, Retry
from httprail.testing import FakeClock, MockTerminal

URL = "https://api.test/x?q=1"


def ok() -> MockTerminal:
    return MockTerminal(lambda request: httpx.Response(200))


async def send(plugin: object, terminal: MockTerminal | None = None) -> tuple[object, MockTerminal]:
    terminal = terminal or ok()
    outcome = await Pipeline([plugin], terminal).send(httpx.Request("GET", URL))  # type: ignore[list-item]
    return outcome, terminal


async def test_static_bearer() -> None:
    outcome, terminal = await send(BearerAuth("tok-s3cret"))
    assert isinstance(outcome, Success)
    assert terminal.requests[0].headers["authorization"] == "Bearer tok-s3cret"
    assert "s3cret" not in repr(BearerAuth("tok-s3cret"))


async def test_token_provider_is_called_per_attempt_so_a_refresh_is_used_on_retry() -> None:
    tokens = iter(["old", "new"])

    async def provider() -> str:
        return next(tokens)

    clock = FakeClock()
    seen: list[str] = []
    statuses = iter([503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(next(statuses))

    terminal = MockTerminal(handler)
    pipeline = Pipeline(
        [Retry(sleep=clock.sleep, clock=clock), BearerAuth(token_provider=provider)], terminal
    )
    outcome = await pipeline.send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert seen == ["Bearer old", "Bearer new"]


async def test_failing_token_provider_is_an_auth_error() -> None:
    async def provider() -> str:
        raise RuntimeError("vault down")

    outcome, terminal = await send(BearerAuth(token_provider=provider))
    error = outcome.failure()  # type: ignore[attr-defined]
    assert isinstance(error, AuthError)
    assert isinstance(error.__cause__, RuntimeError)
    assert terminal.requests == []


@pytest.mark.parametrize("token", ["", "   ", "a\nb", 42])
async def test_unusable_provided_token_is_an_auth_error(token: object) -> None:
    async def provider() -> object:
        return token

    outcome, _ = await send(BearerAuth(token_provider=provider))  # type: ignore[arg-type]
    assert isinstance(outcome.failure(), AuthError)  # type: ignore[attr-defined]


async def test_api_key_in_header_and_query() -> None:
    _, terminal = await send(ApiKeyAuth("k-s3cret"))
    assert terminal.requests[0].headers["x-api-key"] == "k-s3cret"
    _, terminal = await send(ApiKeyAuth("k-s3cret", name="api_key", location="query"))
    assert terminal.requests[0].url.params["api_key"] == "k-s3cret"
    assert terminal.requests[0].url.params["q"] == "1"
    _, terminal = await send(ApiKeyAuth("k", name="Authorization", prefix="Token "))
    assert terminal.requests[0].headers["authorization"] == "Token k"
    assert "s3cret" not in repr(ApiKeyAuth("k-s3cret"))


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://api.test/p?flag&x=%2F&y=a%20b&w=%7E&e=", "flag&x=%2F&y=a%20b&w=%7E&e=&k=v%2B1"),
        ("https://api.test/p", "k=v%2B1"),
        ("https://api.test/p?k=v%2B1&b=%7E", "k=v%2B1&b=%7E"),  # sent again: left as it is
        ("https://api.test/p?k=other", "k=v%2B1"),  # the URL names it: the key wins
    ],
)
async def test_an_api_key_in_the_query_leaves_the_callers_query_as_written(
    url: str, sent: str
) -> None:
    """The key is appended; the rest of the query keeps its bytes (re-encoding all of it
    turned ``flag`` into ``flag=`` and ``%7E`` into ``~``, which breaks signed URLs)."""
    stage = ApiKeyAuth("v+1", name="k", location="query")
    request = httpx.Request("GET", url)
    assert (await stage.process_request(request)).unwrap().url.query.decode() == sent


async def test_basic() -> None:
    _, terminal = await send(BasicAuth("ann", "pw-s3cret"))
    expected = base64.b64encode(b"ann:pw-s3cret").decode()
    assert terminal.requests[0].headers["authorization"] == f"Basic {expected}"
    assert "s3cret" not in repr(BasicAuth("ann", "pw-s3cret"))


@pytest.mark.parametrize(
    "build",
    [
        lambda: BearerAuth(),
        lambda: BearerAuth("a", token_provider=lambda: None),
        lambda: BearerAuth(""),
        lambda: BearerAuth("a\r\nX-Evil: 1"),
        lambda: BearerAuth(token_provider="nope"),
        lambda: ApiKeyAuth(""),
        lambda: ApiKeyAuth("k", location="body"),
        lambda: BasicAuth("a:b", "c"),
        lambda: BasicAuth("a", None),
    ],
)
def test_bad_arguments_are_config_errors(build: object) -> None:
    with pytest.raises(ConfigError):
        build()  # type: ignore[operator]
