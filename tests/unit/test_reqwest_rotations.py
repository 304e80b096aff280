"""How the reqwest terminal tells a rotated HTTP/2 connection from a broken server: which
pyreqwest errors say the connection ended under the request, and whether it had answered."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from httprail.terminals import _reqwest_errors
from httprail.terminals._reqwest_errors import Rotations, cut_before_head, stream_cut, translate

exceptions = pytest.importorskip("pyreqwest.exceptions")

SENT = ("error sending request for url (http://a.test/)", "client error (SendRequest)")
CUT = "stream closed because of a broken pipe"
A, B = httpx.URL("https://a.test/x"), httpx.URL("https://b.test/x")


def error(kind: str, *causes: str) -> Any:
    return getattr(exceptions, kind)(kind, {"causes": [{"message": c} for c in causes]})


BODY = ("request or response body error", "error reading a body from connection")


@pytest.mark.parametrize(
    ("raised", "cut", "before_head"),
    [
        (error("ConnectError", *SENT, "connection error", CUT), True, True),
        (error("ReadError", *SENT, "connection error", CUT), True, True),
        (error("ReadError", "response body connection error", *BODY, CUT), True, False),
        (
            error("ReadError", "response body connection error", *BODY, "connection reset"),
            True,
            False,
        ),
        (
            error("ConnectError", SENT[0], "client error (Connect)", "tcp connect error"),
            False,
            False,
        ),
        (error("ConnectError", *SENT, "connection error", "Connection reset by peer"), False, True),
        (error("ReadTimeoutError", *SENT, "connection error", CUT), False, True),
        (
            error("RequestError", *SENT, "http2 error", "stream error received: refused"),
            False,
            True,
        ),
    ],
)
def test_only_an_http2_connection_ending_under_the_request_is_a_cut(
    raised: Exception, cut: bool, before_head: bool
) -> None:
    """h2's end-of-connection error is a cut, before the head (the request handed over) or
    after it (the body); a connect failure, a timeout, another error or a stream reset is
    not."""
    assert stream_cut(raised) is cut
    assert cut_before_head(raised) is before_head


def test_a_stream_reset_with_an_error_is_a_remote_protocol_error() -> None:
    """``stream error received`` (RST_STREAM with an error code) maps like httpcore's."""
    raised = error("RequestError", *SENT, "http2 error", "stream error received: internal error")
    assert type(translate(raised)) is httpx.RemoteProtocolError


def test_a_break_after_answers_is_a_used_connection_and_a_fresh_one_is_not() -> None:
    """The origin answered since the last break before the request: served. A request started
    after that break, with no answer since: part of the same event for ``GRACE`` seconds (sent
    on the dead connection before hyper noticed), an ordinary failure after. Origins are
    apart."""
    now = [0.0]
    rotations = Rotations(clock=lambda: now[0])
    assert rotations.broke(A, rotations.seq) is False  # never answered
    rotations.answered(A)
    first = second = rotations.seq  # two requests in flight on the answering connection
    now[0] = 10.0
    assert rotations.broke(A, first) is True
    assert rotations.broke(A, second) is True  # the same break, judged the same way
    now[0] = 10.0 + _reqwest_errors.GRACE
    assert rotations.broke(A, rotations.seq) is True  # a request sent before hyper noticed
    now[0] += 0.01
    assert rotations.broke(A, rotations.seq) is False  # a fresh connection that never answered
    assert rotations.broke(B, rotations.seq) is False  # another origin's answers are its own
    rotations.answered(A)
    assert rotations.broke(A, rotations.seq) is True


def test_what_is_remembered_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most so many origins and breaks per origin are kept; a forgotten origin's next break
    is an ordinary (counted) error."""
    monkeypatch.setattr(_reqwest_errors, "_MAX_ORIGINS", 3)
    rotations = Rotations()
    urls = [httpx.URL(f"https://h{i}.test/") for i in range(5)]
    for url in urls:
        rotations.answered(url)
        rotations.broke(url, rotations.seq)
    assert len(rotations._answers) == 3
    assert len(rotations._breaks) == 3
    assert rotations.broke(urls[0], rotations.seq) is False  # forgotten
    for _ in range(40):
        rotations.broke(A, rotations.seq)
    assert len(rotations._breaks[A.netloc]) == _reqwest_errors._MAX_BREAKS
