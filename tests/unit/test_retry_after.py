"""``parse_server_delay`` turns any ``Retry-After`` / ``retry-after-ms`` text into a ServerDelay."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from httprail.middleware._retry_after import MAX_SERVER_DELAY, ServerDelay, parse_server_delay

NOW = 1_900_000_000.0  # 2030-03-17


def parse(**headers: str | bytes) -> ServerDelay:
    return parse_server_delay(
        httpx.Headers([(k.replace("_", "-"), v) for k, v in headers.items()]), NOW
    )


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 2030 99999999999999999999:49:37 GMT",  # hour too big for a C long
        "Sun, 06 Nov 99999999999999999 08:49:37 GMT",  # year too big
        "Sun, 06 Nov 2030 08:49:37 -9999999999999999999",  # zone too big
        "Sun, 06 Nov 2030 08:49:99999 GMT",  # second out of range
        "\xb2",  # a superscript two: str.isdigit() says yes, int() says no
        "\u0661\u0662",  # Arabic-Indic digits
        "1" * 5000,  # more digits than int() accepts
        "inf",
        "nan",
        "",
        "Sun, 06 Nov 2030 08:49:37",  # a date without a zone
    ],
)
def test_hostile_retry_after_values_give_a_delay_value_never_an_exception(value: str) -> None:
    """Overflowing dates, non-ASCII digits and huge numbers are reported, not raised."""
    delay = parse(retry_after=value.encode("utf-8"))
    if delay.seconds is None:
        assert delay.malformed is not None
        assert len(delay.malformed) <= 67
    else:
        assert 0.0 <= delay.seconds <= MAX_SERVER_DELAY


def test_a_huge_number_of_seconds_is_capped_not_malformed() -> None:
    """A delay of 5,000 digits is a (capped) request to wait, as long as we ever report."""
    delay = parse(retry_after="9" * 5000)
    assert delay == ServerDelay(MAX_SERVER_DELAY, "retry-after")


def test_a_long_malformed_value_is_shortened_in_the_report() -> None:
    """Only the first 64 characters of a malformed value are kept (it goes to a log line)."""
    delay = parse(retry_after="x" * 10_000)
    assert delay.malformed == "x" * 64 + "..."


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("250", 0.25), ("1.5", 0.0015), (".5", 0.0005), ("7.", 0.007), ("1e400", None)],
)
def test_retry_after_ms_accepts_ascii_decimals_only(value: str, seconds: float | None) -> None:
    """``retry-after-ms`` is a plain decimal; exponents, words and other digits are malformed."""
    delay = parse(retry_after_ms=value)
    assert delay.seconds == seconds
    assert (delay.malformed is None) is (seconds is not None)


@pytest.mark.parametrize("value", ["\u0661", "-5", "1_000", "infinity", "NaN", "1e3"])
def test_unusual_retry_after_ms_falls_back_to_retry_after(value: str) -> None:
    """A malformed ``retry-after-ms`` is reported; ``Retry-After`` is used instead."""
    delay = parse(retry_after_ms=value.encode("utf-8"), retry_after="3")
    assert delay.seconds == 3.0
    assert delay.source == "retry-after"
    assert delay.malformed is not None


def test_both_malformed_are_reported_together() -> None:
    """When neither header is usable, both raw values are named."""
    delay = parse(retry_after_ms="soon", retry_after="later")
    assert delay == ServerDelay(None, "", "'soon', 'later'")


def test_dates_give_the_time_until_them_capped_to_the_maximum() -> None:
    """An HTTP-date in the future is the time until it; far future is capped; past is 0."""
    soon = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)
    assert parse(retry_after=soon) == ServerDelay(30.0, "retry-after")
    assert parse(retry_after="Fri, 31 Dec 9999 23:59:59 GMT").seconds == MAX_SERVER_DELAY
    assert parse(retry_after="Sun, 06 Nov 1994 08:49:37 GMT").seconds == 0.0


@settings(max_examples=400, deadline=None)
@given(
    ms=st.none() | st.text() | st.from_regex(r"\A[0-9.eE+-]{0,30}\Z"),
    after=st.none()
    | st.text()
    | st.from_regex(r"\A[0-9]{0,400}\Z")
    | st.builds(
        "{}, {:02d} {} {} {}:{}:{} {}".format,
        st.sampled_from(["Sun", "Mon", "Xyz", ""]),
        st.integers(-5, 99),
        st.sampled_from(["Nov", "Feb", "Foo"]),
        st.integers(-(10**30), 10**30),
        st.integers(-(10**30), 10**30),
        st.integers(-99, 99),
        st.integers(-99, 10**25),
        st.sampled_from(["GMT", "+0000", "-2359", "+99999999999999999999", "", "UT", "EST"]),
    ),
)
def test_any_text_gives_a_finite_bounded_delay_or_a_report(
    ms: str | None, after: str | None
) -> None:
    """Property: for any header text, the result is None or 0..MAX_SERVER_DELAY, never raised."""
    headers = []
    if ms is not None:
        headers.append(("retry-after-ms", ms.encode("utf-8", "surrogatepass")))
    if after is not None:
        headers.append(("retry-after", after.encode("utf-8", "surrogatepass")))
    delay = parse_server_delay(httpx.Headers(headers), NOW)
    assert isinstance(delay, ServerDelay)
    if delay.seconds is None:
        assert delay.source == ""
    else:
        assert math.isfinite(delay.seconds)
        assert 0.0 <= delay.seconds <= MAX_SERVER_DELAY
        assert delay.source in ("retry-after", "retry-after-ms")
