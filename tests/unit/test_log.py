"""httprail's loggers: the stdlib logger ``httprail.*`` with the fields on the record unless
structlog is configured, then structlog; the ``Logging`` stage's events through both."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from httprail import AsyncClient, Pipeline
from httprail._log import REQUEST_ID, Logger, get_logger, quiet
from httprail.middleware import Logging, Retry
from httprail.testing import FakeClock, MockTerminal

URL = "https://api.test/items?api_key=s3cret"


@pytest.fixture
def no_structlog() -> Iterator[None]:
    """structlog unconfigured during the test (other tests' ``capture_logs`` leave it
    configured), and as it was afterwards."""
    was, saved = structlog.is_configured(), structlog.get_config()
    structlog.reset_defaults()
    yield
    if was:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


def answer_503(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, request=request)


async def failed_request(**logging_options: object) -> None:
    """One GET answered 503 twice (one retry) through Logging and Retry."""
    clock = FakeClock()
    stages = [Logging(**logging_options), Retry(max_retries=1, sleep=clock.sleep, clock=clock)]  # type: ignore[arg-type]
    async with AsyncClient(plugins=stages, terminal=MockTerminal(answer_503)) as client:
        await client.get(URL)


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


@pytest.mark.usefixtures("no_structlog")
async def test_stdlib_app_gets_events_with_fields(caplog: pytest.LogCaptureFixture) -> None:
    """Under stdlib logging, the failure (WARNING) and the retry (INFO) reach the
    ``httprail.http`` logger with every field as a record attribute, the URL redacted, and a
    message that spells the fields out for a plain formatter."""
    caplog.set_level(logging.INFO, logger="httprail")
    await failed_request()
    (failure,) = records(caplog, "http.request")
    assert (failure.name, failure.levelno) == ("httprail.http", logging.WARNING)
    assert failure.method == "GET"  # type: ignore[attr-defined]
    assert failure.error == "MaxRetriesExceededError"  # type: ignore[attr-defined]
    assert failure.upstream == "https://api.test"  # type: ignore[attr-defined]
    assert failure.attempt == 2  # type: ignore[attr-defined]  # the last attempt
    assert "s3cret" not in failure.url  # type: ignore[attr-defined]
    message = failure.getMessage()
    assert message.startswith("http.request method=GET url='https://api.test/items?api_key=")
    assert "error=MaxRetriesExceededError" in message
    assert "s3cret" not in message
    (retry,) = records(caplog, "http.retry")
    assert retry.levelno == logging.INFO
    assert (retry.status, retry.delay_source) == (503, "backoff")  # type: ignore[attr-defined]
    assert failure.filename == "_logging.py"  # the caller's line, not the helper's


@pytest.mark.usefixtures("no_structlog")
async def test_stdlib_levels_filter_before_the_event_is_built(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At WARNING the retry (INFO) is not logged; with success_level=debug and the logger at
    DEBUG, a success is."""
    caplog.set_level(logging.WARNING, logger="httprail")
    await failed_request()
    assert [r.event for r in caplog.records] == ["http.request"]  # type: ignore[attr-defined]
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="httprail")
    ok = MockTerminal(lambda r: httpx.Response(204, request=r))
    async with AsyncClient(plugins=[Logging(min_level="debug")], terminal=ok) as client:
        await client.get(URL)
    (success,) = records(caplog, "http.request")
    assert (success.levelno, success.status) == (logging.DEBUG, 204)  # type: ignore[attr-defined]


@pytest.mark.usefixtures("no_structlog")
def test_processor_formatter_renders_the_fields() -> None:
    """structlog's stdlib integration (``ProcessorFormatter`` + ``ExtraAdder``), with structlog
    itself left unconfigured, renders the event name and its fields."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    logger = logging.getLogger("httprail.test_formatter")
    logger.addHandler(handler)
    try:
        get_logger("httprail.test_formatter").warning("thing.happened", upstream="u", n=3)
    finally:
        logger.removeHandler(handler)
    rendered = json.loads(stream.getvalue())
    assert rendered == {"event": "thing.happened", "upstream": "u", "n": 3}


async def test_structlog_app_gets_events_with_fields() -> None:
    """With structlog configured, the events go through its processors with their fields."""
    with capture_logs() as logs:
        await failed_request()
    events = {entry["event"]: entry for entry in logs}
    assert events["http.retry"]["log_level"] == "info"
    failure = events["http.request"]
    assert failure["log_level"] == "warning"
    assert (failure["method"], failure["error"]) == ("GET", "MaxRetriesExceededError")
    assert "s3cret" not in failure["url"]


@pytest.mark.usefixtures("no_structlog")
async def test_configuring_structlog_later_takes_effect(caplog: pytest.LogCaptureFixture) -> None:
    """The choice is made per event: a logger made before structlog was configured writes to
    stdlib, then to structlog once it is."""
    caplog.set_level(logging.INFO, logger="httprail")
    logger = get_logger("httprail.test_later")
    logger.info("before")
    with capture_logs() as logs:
        logger.info("after", n=1)
    assert [r.getMessage() for r in caplog.records] == ["before"]
    assert logs == [{"event": "after", "n": 1, "log_level": "info"}]


async def test_a_stdlib_logger_given_to_logging_is_used_even_with_structlog(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``Logging(logger=logging.getLogger(...))`` writes there even while structlog is
    configured; ``logger="name"`` picks the name."""
    caplog.set_level(logging.INFO, logger="app.http")
    with capture_logs() as logs:
        await failed_request(logger=logging.getLogger("app.http"))
    assert not logs
    assert {r.event for r in caplog.records if r.name == "app.http"} == {  # type: ignore[attr-defined]
        "http.request",
        "http.retry",
    }
    stage = Logging(logger="app.named")
    assert isinstance(stage._logger, Logger)
    assert stage._logger.name == "app.named"


@pytest.mark.usefixtures("no_structlog")
def test_reserved_record_names_get_an_underscore(caplog: pytest.LogCaptureFixture) -> None:
    """A field named like a LogRecord attribute (``name``, ``message``) is kept as ``name_``;
    ``exc_info`` is the record's exception."""
    caplog.set_level(logging.INFO, logger="httprail")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        get_logger("httprail.test_reserved").info("x", name="n", message="m", exc_info=exc)
    (record,) = caplog.records
    assert (record.name, record.name_, record.message_) == ("httprail.test_reserved", "n", "m")  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError
    assert record.getMessage() == "x name=n message=m"


@pytest.mark.usefixtures("no_structlog")
def test_message_quotes_values_with_blanks_or_quotes(caplog: pytest.LogCaptureFixture) -> None:
    """A string value with blanks, quotes or ``=`` (or empty) is quoted in the message."""
    caplog.set_level(logging.INFO, logger="httprail")
    get_logger().info("e", a="x y", b="", c="plain", d=1.5)
    assert caplog.records[0].getMessage() == "e a='x y' b='' c=plain d=1.5"


@pytest.mark.usefixtures("no_structlog")
def test_request_id_context_is_added(caplog: pytest.LogCaptureFixture) -> None:
    """While a request id is set in the context, every event carries it (a field given
    explicitly wins)."""
    caplog.set_level(logging.INFO, logger="httprail")
    token = REQUEST_ID.set("rid-1")
    try:
        get_logger().info("a")
        get_logger().info("b", request_id="explicit")
    finally:
        REQUEST_ID.reset(token)
    get_logger().info("c")
    assert [getattr(r, "request_id", None) for r in caplog.records] == ["rid-1", "explicit", None]


@pytest.mark.usefixtures("no_structlog")
def test_is_enabled_for_follows_the_configured_side() -> None:
    """``is_enabled_for`` asks the stdlib logger, or structlog's when it is configured (a
    structlog logger without the method is given everything)."""
    logger = get_logger("httprail.test_enabled")
    logging.getLogger("httprail.test_enabled").setLevel(logging.ERROR)
    try:
        assert not logger.is_enabled_for(logging.WARNING)
        assert logger.is_enabled_for(logging.ERROR)
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
        assert Logger("httprail.test_enabled").is_enabled_for(logging.DEBUG)
        structlog.configure(wrapper_class=structlog.BoundLogger)
        assert Logger("httprail.test_enabled2").is_enabled_for(logging.DEBUG)
    finally:
        logging.getLogger("httprail.test_enabled").setLevel(logging.NOTSET)
    assert repr(logger) == "<httprail Logger 'httprail.test_enabled'>"


@pytest.mark.usefixtures("no_structlog")
def test_quiet_raises_the_level_then_restores_it(caplog: pytest.LogCaptureFixture) -> None:
    """``quiet(ERROR)`` drops a warning while it runs and puts the level back after."""
    root = logging.getLogger("httprail")
    before = root.level
    caplog.set_level(logging.INFO, logger="httprail")
    with quiet(logging.ERROR):
        get_logger().warning("dropped")
        get_logger().error("kept")
    get_logger().warning("after")
    assert [r.getMessage() for r in caplog.records] == ["kept", "after"]
    caplog.set_level(before, logger="httprail")


def test_the_package_logger_has_only_a_null_handler() -> None:
    """``httprail`` carries one ``NullHandler`` (so Python's last-resort handler stays quiet)
    and propagates to the application's handlers."""
    root = logging.getLogger("httprail")
    assert [type(h) for h in root.handlers] == [logging.NullHandler]
    assert root.propagate


async def test_pipeline_events_without_request_id_have_none() -> None:
    """Without a RequestId stage, ``Logging``'s events have no ``request_id`` field."""
    with capture_logs() as logs:
        await Pipeline([Logging()], MockTerminal(answer_503)).send(httpx.Request("GET", URL))
    assert "request_id" not in logs[0]
