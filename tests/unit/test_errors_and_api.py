"""The error tree in code, in the module docstrings and in docs/errors.md stay the same; the
public namespace is exactly what we promise."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

import httprail
import httprail.generators
import httprail.middleware
import httprail.terminals
import httprail.testing
from httprail import _errors

ROOT = Path(__file__).parents[2]
ERROR_NAME = re.compile(r"([A-Z][A-Za-z]+Error)\b")


def parse_tree(text: str) -> set[tuple[str, str | None]]:
    """(class, parent) for every line of the first box-drawn error tree in ``text``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("HttprailError"))
    base = lines[start].index("HttprailError")
    stack: list[str] = []
    pairs: set[tuple[str, str | None]] = set()
    for line in lines[start:]:
        match = ERROR_NAME.search(line)
        if match is None or not hasattr(_errors, match[1]):
            break
        depth = (match.start(1) - base) // 4
        del stack[depth:]
        pairs.add((match[1], stack[-1] if stack else None))
        stack.append(match[1])
    return pairs


def actual_tree() -> set[tuple[str, str | None]]:
    pairs: set[tuple[str, str | None]] = set()

    def walk(cls: type, parent: str | None) -> None:
        pairs.add((cls.__name__, parent))
        for sub in cls.__subclasses__():
            if sub.__module__ == _errors.__name__:
                walk(sub, cls.__name__)

    walk(_errors.HttprailError, None)
    return pairs


@pytest.mark.parametrize(
    "source",
    [_errors.__doc__ or "", httprail.__doc__ or "", (ROOT / "docs" / "errors.md").read_text()],
    ids=["_errors docstring", "httprail docstring", "docs/errors.md"],
)
def test_documented_tree_matches_the_classes(source: str) -> None:
    assert parse_tree(source) == actual_tree()


def test_every_error_is_an_exception_and_exported() -> None:
    for name, _ in actual_tree():
        cls = getattr(httprail, name)
        assert issubclass(cls, Exception)
        assert name in httprail.__all__


def test_status_error_subclass_by_code() -> None:
    request = httpx.Request("GET", "https://api.test")
    assert (
        type(httprail.StatusError.from_response(httpx.Response(404, request=request)))
        is httprail.ClientStatusError
    )
    assert (
        type(httprail.StatusError.from_response(httpx.Response(502, request=request)))
        is httprail.ServerStatusError
    )
    assert (
        type(httprail.StatusError.from_response(httpx.Response(302, request=request)))
        is httprail.StatusError
    )


def test_max_retries_needs_attempts() -> None:
    with pytest.raises(ValueError, match="at least one"):
        httprail.MaxRetriesExceededError([])


def test_errors_can_be_raised_with_their_cause() -> None:
    cause = httpx.ReadError("boom")
    error = httprail.ReadError("broken", request=httpx.Request("GET", "https://api.test"))
    error.__cause__ = cause
    with pytest.raises(httprail.TransportError) as info:
        raise error
    assert info.value.__cause__ is cause


EXPECTED_TOP_LEVEL = [
    "AsyncClient", "AuthError", "BreakerEvent", "BulkheadFullError", "CircuitBreakerOpenError",
    "CircuitState", "Client", "ClientStatusError", "ConfigError", "ConnectError",
    "ConnectionRotatedError", "DecodeError", "Event", "EventObserver", "Failure", "HealthSnapshot",
    "HedgeEvent", "HttpSettings", "HttprailError", "InsecureRedirectError", "InvalidRequestError",
    "MaxRetriesExceededError", "MiddlewarePlugin", "Next", "Observer", "OpenTelemetry", "Outcome",
    "PaginationError", "Pipeline", "PluginRegistry", "PluginSpec", "ProtocolError",
    "ProviderNotFoundError", "ProviderOverrides", "RateLimitedError", "ReadError", "RedirectError",
    "RefusedStreamError", "RejectionEvent", "RequestContext", "RequestError",
    "RequestResponsePlugin", "RequestTimeoutError", "ResponseTooLargeError",
    "ResponseValidationError", "Result", "RetryBudgetExhaustedError", "RetryEvent",
    "ServerStatusError", "ServiceNotFoundError", "Stack", "StackDeclaration", "StatusError",
    "Success", "TerminalPlugin", "TimeoutPhase", "TooManyRedirectsError", "TransportError",
    "UpstreamHealth", "WriteError", "__version__", "build_stack", "decode_json",
    "default_registry", "find_stack_file", "get_context", "load_stack_file", "redact_headers",
    "redact_text", "redact_url", "register_secret", "register_sensitive_param", "set_context",
    "unwrap", "upstream_of"
]  # fmt: skip


@pytest.mark.parametrize(
    "module",
    [httprail, httprail.generators, httprail.middleware, httprail.terminals, httprail.testing],
    ids=lambda m: m.__name__,
)
def test_all_is_sorted_and_importable(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    # ruff's RUF022 order: CONSTANTS, then Classes, then everything else, each alphabetical.
    assert names == sorted(
        names, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)
    )
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(module, name), name


def test_top_level_names_are_exactly_the_promised_ones() -> None:
    assert httprail.__all__ == EXPECTED_TOP_LEVEL
