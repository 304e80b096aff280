"""``httprail request``: one call through a stack, shown with its attempts, headers and body.

The request goes through the default client (or a declared stack with ``--stack``); a retry
observer added to the request's context records each failed attempt, its error and the wait.
Nothing secret is printed: every line built from a URL, a header or an error passes through
the redaction rule (:func:`~httprail._redact.redact_text`: no userinfo, no credential query
value, no known secret; the sensitive ``-H`` values are registered as secrets), response
headers with a credential name are shown as ``[REDACTED]``, and request headers are never shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final

import httpx
import typer
from returns.result import Failure, Success

from .._client import AsyncClient
from .._context import get_context, set_context
from .._errors import (
    CircuitBreakerOpenError,
    ClientStatusError,
    ConfigError,
    InvalidRequestError,
    MaxRetriesExceededError,
    RequestError,
    RequestTimeoutError,
    ServerStatusError,
    StatusError,
    TransportError,
)
from .._events import BreakerEvent, Event, RetryEvent
from .._redact import REDACTED, is_sensitive_header, redact_text, redact_url, register_secret
from .._result import Outcome
from .._settings import HttpSettings, ProviderOverrides, one_line
from .._stack import build_stack
from ._demo import quiet_structlog

__all__ = ["EXIT_CODES", "register", "request"]

PROG = "httprail request"

EXIT_CODES: Final = (
    (0, "ok", "a response below 400 (redirects are not followed)"),
    (1, "other", "another failure (auth, bulkhead, client-side rate limit, decoding)"),
    (2, "usage", "bad option, header, --json text, URL or stack file"),
    (4, "client_status", "a 4xx answer (ClientStatusError)"),
    (5, "server_status", "a 5xx answer (ServerStatusError)"),
    (6, "transport", "no usable response: connect, read, write or protocol error"),
    (7, "timeout", "a deadline passed (RequestTimeoutError)"),
    (8, "circuit_open", "the circuit breaker is open (CircuitBreakerOpenError)"),
    (9, "retries_exhausted", "every attempt failed (MaxRetriesExceededError)"),
    (130, "interrupted", "Ctrl-C"),
)
"""``(code, kind, meaning)`` for every exit code of ``httprail request``."""

_CODE_OF: Final = {kind: code for code, kind, _ in EXIT_CODES}
DEFAULT_MAX_BODY: Final = 64 * 1024
_GUARD_SECONDS: Final = 5.0
"""Beyond the total timeout, how long a stack without a ``Timeout`` stage may take."""
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_TEXT_TYPES: Final = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded", "yaml")


def register(app: typer.Typer) -> None:
    """Add the ``request`` command to ``app``."""
    app.command("request", help=_help())(request)


def _help() -> str:
    table = "\n".join(f"{code:>5}  {meaning}" for code, _, meaning in EXIT_CODES)
    return (
        "Send one request through httprail's default stack (or a declared one) and show "
        "each attempt, the status, the response headers (secrets redacted) and the body "
        "(pretty JSON).\n\n"
        "Example: httprail request POST http://127.0.0.1:8000/items -j '{\"a\": 1}' "
        "-H 'Authorization: Bearer ...'\n\n"
        f"Exit codes:\n\n\b\n{table}"
    )


class _UsageError(Exception):
    """A problem with the command line or the stack file: exit 2."""


def request(
    method: Annotated[str, typer.Argument(help="GET, POST, PUT, PATCH, DELETE, HEAD, ...")],
    url: Annotated[
        str,
        typer.Argument(
            help="Absolute URL ('example.com/x' means http://); with --stack it may be "
            "relative to the stack's base_url."
        ),
    ],
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header",
            "-H",
            metavar="'NAME: VALUE'",
            help="A request header (repeatable).",
        ),
    ] = None,
    json_body: Annotated[
        str | None,
        typer.Option(
            "--json",
            "-j",
            metavar="JSON",
            help="Send this JSON text as the body (application/json).",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", metavar="TEXT", help="Send this text as the body, as is."),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=100,
            metavar="N",
            help="Retries after the first attempt (default: HTTP_MAX_RETRIES, 3).",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            max=86_400.0,
            metavar="SECONDS",
            help="Seconds for the whole call, retries included (default: HTTP_TIMEOUT_TOTAL, 60).",
        ),
    ] = None,
    stack: Annotated[
        str | None,
        typer.Option(
            metavar="FILE:NAME",
            help="Send through the provider or service NAME declared in the stack file FILE.",
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json-output", help="Print one JSON object (for machines) instead."),
    ] = False,
    show_headers: Annotated[
        bool,
        typer.Option("--show-headers/--no-headers", help="Show the response headers."),
    ] = True,
    max_body: Annotated[
        int,
        typer.Option(
            min=0, metavar="CHARS", help="Show at most this many characters of the body (0: all)."
        ),
    ] = DEFAULT_MAX_BODY,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Let the stack's log events reach stderr.")
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", "-k", help="Do not verify the server's TLS certificate (HTTP_VERIFY)."
        ),
    ] = False,
    cacert: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Trust the CAs in this PEM file (HTTP_CA_BUNDLE)."),
    ] = None,
    cert: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Client certificate, PEM; may hold the key too (HTTP_CLIENT_CERT).",
        ),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="The client certificate's key, PEM (HTTP_CLIENT_KEY)."),
    ] = None,
    proxy: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Send through this proxy: http, https, socks5 or socks5h (HTTP_PROXY_URL).",
        ),
    ] = None,
) -> int:
    tls = {
        name: value
        for name, value in (
            ("verify", False if insecure else None),
            ("ca_bundle", cacert),
            ("client_cert", cert),
            ("client_key", key),
            ("proxy_url", proxy),
        )
        if value is not None
    }
    try:
        call = _prepare(
            method, url, header or [], json_body, data, retries, timeout, stack, tls=tls
        )
    except _UsageError as exc:
        return _fail("usage", str(exc))
    try:
        with contextlib.nullcontext() if verbose else quiet_structlog(logging.CRITICAL):
            exchange = asyncio.run(_send(call))
    except KeyboardInterrupt:
        typer.echo(f"{PROG}: interrupted", err=True)
        return _CODE_OF["interrupted"]
    except _UsageError as exc:
        return _fail("usage", str(exc))
    kind = exchange.kind
    if json_output:
        typer.echo(json.dumps(_as_json(call, exchange, max_body), indent=2, ensure_ascii=False))
    else:
        _render(call, exchange, show_headers=show_headers, max_body=max_body)
    error = exchange.error
    if error is not None:
        message = one_line(_sanitize(str(error), call.raw_url))
        name = type(error).__name__
        return _fail(kind, message if message.startswith(f"{name}:") else f"{name}: {message}")
    return _CODE_OF[kind]


def _fail(kind: str, message: str) -> int:
    typer.echo(f"{PROG}: error: {redact_text(message)}", err=True)
    return _CODE_OF[kind]


# -- preparing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    """The validated command line."""

    method: str
    raw_url: str
    headers: tuple[tuple[str, str], ...]
    body: dict[str, Any]
    settings: HttpSettings
    stack_file: str | None
    stack_name: str | None


def _prepare(
    method: str,
    url: str,
    headers: Sequence[str],
    json_body: str | None,
    data: str | None,
    retries: int | None,
    timeout: float | None,
    stack: str | None,
    *,
    tls: Mapping[str, Any] | None = None,
) -> _Call:
    verb = method.strip().upper()
    if not _TOKEN.match(verb):
        raise _UsageError(f"{method!r} is not an HTTP method")
    parsed_headers = tuple(_parse_header(text, index) for index, text in enumerate(headers, 1))
    if json_body is not None and data is not None:
        raise _UsageError("give the body with --json or with --data, not both")
    body: dict[str, Any] = {}
    if json_body is not None:
        try:
            body["json"] = json.loads(json_body)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise _UsageError(f"--json is not valid JSON: {exc}") from None
    elif data is not None:
        body["content"] = data.encode()
    stack_file = stack_name = None
    if stack is not None:
        stack_file, sep, stack_name = stack.rpartition(":")
        if not sep or not stack_file or not stack_name:
            raise _UsageError(
                f"--stack wants FILE:NAME (e.g. httprail.toml:billing), got {stack!r}"
            )
    elif "://" not in url and not url.startswith("/"):
        url = f"http://{url}"
    knobs: dict[str, Any] = dict(tls or {})  # --insecure, --cacert, --cert, --key, --proxy
    try:
        if retries is not None:
            knobs["max_retries"] = retries
        if timeout is not None:
            knobs["timeout_total"] = timeout
            base = HttpSettings()
            for name in ("timeout_connect", "timeout_pool", "timeout_attempt"):
                value = getattr(base, name)  # a phase may not last longer than the total
                if value is not None and value > timeout:
                    knobs[name] = timeout
        settings = HttpSettings(**knobs)  # checks every flag (one line, no secret quoted)
        if stack_name is not None:  # as per-provider overrides, so they win over the stack file's
            settings = HttpSettings(providers={stack_name: ProviderOverrides(**knobs)})
    except ConfigError as exc:
        raise _UsageError(str(exc)) from None
    return _Call(verb, url, parsed_headers, body, settings, stack_file, stack_name)


def _parse_header(text: str, index: int) -> tuple[str, str]:
    """``'Name: value'`` as a pair; errors never quote the value (it may be a secret)."""
    name, sep, value = text.partition(":")
    where = f"header #{index} (-H)"
    if not sep:
        raise _UsageError(f"{where} is malformed: expected 'Name: value', found no ':'")
    name = name.strip()
    if not name:
        raise _UsageError(f"{where} is malformed: the name before ':' is empty")
    if not _TOKEN.match(name):
        raise _UsageError(f"{where} is malformed: the name has characters a header cannot have")
    value = value.strip()
    if any((ord(ch) < 32 and ch != "\t") or ord(ch) == 127 for ch in value):
        raise _UsageError(f"{where} {name!r} is malformed: its value has control characters")
    if is_sensitive_header(name):  # masked wherever a backend or a server would echo it
        register_secret(value)
        register_secret(value.partition(" ")[2])
    return name, value


# -- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Retry:
    """A failed attempt and the wait before the next one."""

    at: float
    event: RetryEvent


@dataclass(slots=True)
class _Exchange:
    """What happened: the outcome, the retry and breaker events, the timings."""

    url: str
    started: float
    finished: float = 0.0
    outcome: Outcome | None = None
    retries: list[_Retry] = field(default_factory=list)
    breaker: list[BreakerEvent] = field(default_factory=list)
    guard_expired: float | None = None

    def observe(self, event: Event) -> None:
        if isinstance(event, RetryEvent):
            self.retries.append(_Retry(time.monotonic(), event))
        elif isinstance(event, BreakerEvent):
            self.breaker.append(event)

    @property
    def error(self) -> RequestError | None:
        if self.guard_expired is not None:
            return RequestTimeoutError(
                f"no outcome within {self.guard_expired:g}s (the stack has no total timeout)",
                phase="total",
            )
        if isinstance(self.outcome, Failure):
            error: RequestError = self.outcome.failure()
            return error
        return None

    @property
    def response(self) -> httpx.Response | None:
        """The final response: the success, or the last status error's."""
        if isinstance(self.outcome, Success):
            response: httpx.Response = self.outcome.unwrap()
            return response
        error = self.error
        if isinstance(error, MaxRetriesExceededError):
            error = error.last
        return error.response if isinstance(error, StatusError) else None

    @property
    def kind(self) -> str:
        return _kind(self.error)

    @property
    def attempts(self) -> int:
        return len(self.retries) + 1


def _kind(error: RequestError | None) -> str:
    match error:
        case None:
            return "ok"
        case MaxRetriesExceededError():
            return "retries_exhausted"
        case CircuitBreakerOpenError():
            return "circuit_open"
        case RequestTimeoutError():
            return "timeout"
        case TransportError():
            return "transport"
        case ClientStatusError():
            return "client_status"
        case ServerStatusError():
            return "server_status"
        case InvalidRequestError():
            return "usage"
        case _:
            return "other"


async def _send(call: _Call) -> _Exchange:
    if call.stack_file is not None and call.stack_name is not None:
        try:
            built = build_stack(call.stack_file, call.stack_name, settings=call.settings)
        except ConfigError as exc:
            raise _UsageError(one_line(str(exc))) from None
        client, settings = built.client, built.settings
        closer: Any = built
    else:
        try:  # the terminal loads the TLS files now: one it cannot use is the caller's mistake
            client = AsyncClient(settings=call.settings)
        except ConfigError as exc:
            raise _UsageError(one_line(str(exc))) from None
        settings, closer = call.settings, client
    async with closer:
        prepared = client.build_request(
            call.method, call.raw_url, headers=call.headers, **call.body
        )
        if isinstance(prepared, Failure):
            message = _sanitize(prepared.failure().message, call.raw_url)
            raise _UsageError(one_line(message))
        outgoing: httpx.Request = prepared.unwrap()
        exchange = _Exchange(redact_url(outgoing.url), time.monotonic())
        ctx = get_context(outgoing)
        set_context(outgoing, ctx.replace(observers=(*ctx.observers, exchange.observe)))
        guard = settings.timeout_total + _GUARD_SECONDS
        try:
            async with asyncio.timeout(guard) as scope:
                exchange.outcome = await client.send(outgoing)
        except TimeoutError:
            if not scope.expired():
                raise
            exchange.guard_expired = guard
        exchange.finished = time.monotonic()
    return exchange


def _sanitize(message: str, raw_url: str) -> str:
    """``message`` with the URL as typed (which may carry a secret) replaced by its redaction,
    then through the redaction rule."""
    if raw_url:
        clean = redact_url(raw_url)
        message = message.replace(repr(raw_url), repr(clean)).replace(raw_url, clean)
    return redact_text(message)


# -- showing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Attempt:
    number: int
    result: str
    kind: str
    seconds: float
    wait: float | None
    wait_source: str | None


def _attempts(exchange: _Exchange) -> list[_Attempt]:
    """Each attempt with what it got and how long it took (the last one ends the call)."""
    rows: list[_Attempt] = []
    start = exchange.started
    for number, retry in enumerate(exchange.retries, 1):
        event = retry.event
        seconds = max(0.0, retry.at - start)
        rows.append(
            _Attempt(number, _outcome_text(event.error), _kind(event.error), seconds, event.delay,
                     event.delay_source)
        )  # fmt: skip
        start = retry.at + event.delay
    error = exchange.error
    if isinstance(error, MaxRetriesExceededError):
        error = error.last
    last = _outcome_text(error) if error is not None else _status_text(exchange.response)
    seconds = max(0.0, exchange.finished - start)
    rows.append(_Attempt(len(rows) + 1, last, _kind(error), seconds, None, None))
    return rows


def _status_text(response: httpx.Response | None) -> str:
    if response is None:
        return "no response"
    return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()


def _outcome_text(error: RequestError) -> str:
    if isinstance(error, StatusError):
        return _status_text(error.response)
    name, message = type(error).__name__, one_line(redact_text(error.message, error.request))
    return message if message.startswith(f"{name}:") else f"{name}: {message}"


def _header_items(response: httpx.Response) -> list[tuple[str, str]]:
    return [
        (name, REDACTED if is_sensitive_header(name) else redact_text(value))
        for name, value in response.headers.multi_items()
    ]


@dataclass(frozen=True, slots=True)
class _Body:
    kind: str  # "empty" | "json" | "text" | "binary"
    text: str
    value: Any
    size: int
    truncated: bool


def _body(response: httpx.Response, limit: int) -> _Body:
    content = response.content
    size = len(content)
    if not size:
        return _Body("empty", "", None, 0, False)
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        with contextlib.suppress(ValueError, RecursionError):  # RecursionError: nested too deep
            value = json.loads(content)
            text, truncated = _cut(json.dumps(value, indent=2, ensure_ascii=False), limit)
            return _Body("json", text, None if truncated else value, size, truncated)
    textual = media.startswith(_TEXT_TYPES) or any(t in media for t in _TEXT_TYPES)
    try:
        decoded = content.decode(response.encoding or "utf-8")
    except (UnicodeError, LookupError):  # UnicodeError: a charset such as idna refusing bytes
        decoded = None
    if decoded is None or (not textual and "\x00" in decoded[:4096]):
        return _Body("binary", f"[binary body: {size:,} bytes, {media or 'no type'}]", None, size,
                     False)  # fmt: skip
    text, truncated = _cut(decoded, limit)
    return _Body("text", text, text, size, truncated)


def _cut(text: str, limit: int) -> tuple[str, bool]:
    if limit and len(text) > limit:
        return text[:limit], True
    return text, False


def _render(call: _Call, exchange: _Exchange, *, show_headers: bool, max_body: int) -> None:
    typer.echo(typer.style(f"{call.method} {exchange.url}", bold=True))
    attempts = _attempts(exchange)
    for row in attempts:
        line = f"  attempt {row.number}: {row.result} after {row.seconds * 1000:,.0f} ms"
        if row.wait is not None:
            line += f"; retrying in {row.wait:.2f} s ({row.wait_source})"
        typer.echo(typer.style(line, dim=True))
    for event in exchange.breaker:
        typer.echo(
            typer.style(
                redact_text(
                    f"  breaker {event.upstream}: {event.old} -> {event.new} ({event.reason})"
                ),
                fg="yellow",
            )
        )
    total_ms = (exchange.finished - exchange.started) * 1000
    summary = f"{len(attempts)} attempt{'s' if len(attempts) != 1 else ''}, {total_ms:,.0f} ms"
    response = exchange.response
    if response is None:
        typer.echo(f"no response ({summary})")
        return
    colour = "green" if response.status_code < 400 else "red"
    status = f"{response.http_version} {response.status_code} {response.reason_phrase}".rstrip()
    typer.echo(typer.style(status, fg=colour, bold=True) + f"  ({summary})")
    if show_headers:
        for name, value in _header_items(response):
            typer.echo(f"{typer.style(name, fg='cyan')}: {value}")
    body = _body(response, max_body)
    if body.kind == "empty":
        return
    typer.echo("")
    typer.echo(body.text)
    if body.truncated:
        typer.echo(
            typer.style(
                f"[truncated: showing {max_body:,} characters of a {body.size:,}-byte body; "
                "--max-body 0 shows all]",
                dim=True,
            )
        )
    elif response.extensions.get("httprail.truncated"):
        typer.echo(typer.style("[the error body was cut by the terminal's size cap]", dim=True))


def _json_body(body: _Body) -> Any:
    """Parsed JSON when it fits, text (cut) for text and cut JSON, ``None`` otherwise."""
    if body.kind == "json" and not body.truncated:
        return body.value
    return body.text if body.kind in ("json", "text") else None


def _as_json(call: _Call, exchange: _Exchange, max_body: int) -> dict[str, Any]:
    response = exchange.response
    error = exchange.error
    kind = exchange.kind
    report: dict[str, Any] = {
        "request": {"method": call.method, "url": exchange.url},
        "ok": error is None,
        "status": None,
        "reason": None,
        "http_version": None,
        "headers": None,
        "body": None,
        "body_kind": None,
        "body_bytes": None,
        "body_truncated": False,
        "attempts": [
            {
                "attempt": row.number,
                "result": row.result,
                "kind": row.kind,
                "elapsed_ms": round(row.seconds * 1000, 3),
                "wait_s": row.wait,
                "wait_source": row.wait_source,
            }
            for row in _attempts(exchange)
        ],
        "elapsed_ms": round((exchange.finished - exchange.started) * 1000, 3),
        "error": None,
        "exit_code": _CODE_OF[kind],
    }
    if response is not None:
        headers: dict[str, str] = {}
        for name, value in _header_items(response):
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        body = _body(response, max_body)
        report.update(
            status=response.status_code,
            reason=response.reason_phrase,
            http_version=response.http_version,
            headers=headers,
            body=_json_body(body),
            body_kind=body.kind,
            body_bytes=body.size,
            body_truncated=body.truncated,
        )
    if error is not None:
        report["error"] = {
            "kind": kind,
            "type": type(error).__name__,
            "message": one_line(_sanitize(str(error), call.raw_url)),
        }
    return report
