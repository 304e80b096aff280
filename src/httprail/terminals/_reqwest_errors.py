"""pyreqwest's exceptions as the httpx exceptions httpx raises for the same fault.

pyreqwest's own classes do not say it (a reset before the answer is its ``ConnectError``, a
head past the read timeout its ``ConnectTimeoutError``): reqwest's chain of causes does. A
cause ``client error (Connect)`` means the connection was never made; otherwise the request
was handed to a connection, and the innermost cause says what broke.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx

__all__ = ["Rotations", "cut_before_head", "stream_cut", "translate"]

_CONNECTING = ("client error (Connect)", "tcp connect error", "dns error")
_OS_BROKEN = ("Connection reset", "os error 104", "Connection aborted", "os error 103")
_OS_PIPE = ("Broken pipe", "os error 32")
# A head or body that is not valid HTTP, or cut short; an HTTP/2 stream the server reset with
# an error (h2's "stream error received: <reason>"; REFUSED_STREAM ones hyper sends again);
# HTTP/2 frames that break the protocol (h2's "connection error detected: ..." and "stream
# error detected: ...": a bad or missing :status, a PUSH_PROMISE, ...).
_FRAMING = (
    "connection closed",
    "end of file",
    "unexpected EOF",
    "chunk",
    "invalid HTTP",
    "stream error received",
    "error detected:",
)
# The request was handed to a connection (hyper-util's ``SendRequest``), and that connection
# ended with the request's HTTP/2 stream still open: h2's words for an end of the connection,
# and for a reset of it (an I/O error of its kind alone; the OS's own says "Connection reset by
# peer (os error 104)", as over HTTP/1.1).
_SENT = "client error (SendRequest)"
_STREAM_CUT = ("stream closed because of a broken pipe", "connection reset")
# Causes that only say where it happened: left out of the message (one of them holds the URL).
_NOISE = ("error sending request", "client error (", "builder error for url")


def causes_of(exc: Any) -> list[str]:
    """reqwest's chain of causes, outermost first."""
    details = getattr(exc, "details", None)
    found = details.get("causes") if isinstance(details, dict) else None
    return [str(cause.get("message", "")) for cause in found or ()]


def _text(exc: Any, causes: list[str]) -> str:
    message = str(getattr(exc, "message", "") or type(exc).__name__)
    said = [c for c in causes if c and c != message and not c.startswith(_NOISE)]
    return ": ".join([message, *dict.fromkeys(said)])


# rustls refuses a server certificate that says it is a CA: what ``openssl req -x509`` makes
# with OpenSSL's default configuration (OpenSSL, so aiohttp, httpx and curl, accept it).
_CA_AS_LEAF = "CaUsedAsEndEntity"
_CA_AS_LEAF_HINT = (
    " (rustls does not accept a CA certificate as the server's own; a self-signed certificate "
    "for the reqwest terminal needs basicConstraints CA:FALSE, e.g. openssl req -x509 "
    "-addext basicConstraints=critical,CA:FALSE, or a server certificate signed by that CA)"
)


def translate(exc: Any) -> Exception:
    """The httpx exception for the pyreqwest exception ``exc`` (its ``__cause__`` is ``exc``)."""
    causes = causes_of(exc)
    text = _text(exc, causes)
    chain = " | ".join(causes)
    if _CA_AS_LEAF in chain:
        text += _CA_AS_LEAF_HINT
    names = {cls.__name__ for cls in type(exc).__mro__}
    connecting = any(marker in chain for marker in _CONNECTING)
    translated: Exception
    if "BuilderError" in names:
        if "scheme is not allowed" in chain or "URL scheme" in chain:
            translated = httpx.UnsupportedProtocol(text)
        else:
            translated = httpx.LocalProtocolError(text)
    elif "RequestTimeoutError" in names:
        if "PoolTimeoutError" in names:
            translated = httpx.PoolTimeout(text)
        elif connecting:
            translated = httpx.ConnectTimeout(text)
        elif "WriteTimeoutError" in names:
            translated = httpx.WriteTimeout(text)
        else:  # the head or a body chunk did not come within the read timeout
            translated = httpx.ReadTimeout(text)
    elif connecting:
        translated = httpx.ConnectError(text)
    elif any(marker in chain for marker in _OS_PIPE):
        translated = httpx.WriteError(text)
    elif any(marker in chain for marker in _OS_BROKEN):
        translated = httpx.ReadError(text)
    elif "RedirectError" in names:
        translated = httpx.TooManyRedirects(text)
    elif "DecodeError" in names or any(marker in chain for marker in _FRAMING):
        # reqwest decodes no content (its decompression is off): a head or framing that is
        # not valid HTTP/1.1 or HTTP/2, or a body cut short
        translated = httpx.RemoteProtocolError(text)
    elif "ReadError" in names:
        translated = httpx.ReadError(text)
    elif "WriteError" in names:
        translated = httpx.WriteError(text)
    elif "NetworkError" in names:
        translated = httpx.ReadError(text)
    else:  # a closed client, a panic in reqwest, anything new
        translated = httpx.TransportError(text)
    translated.__cause__ = exc
    return translated


def stream_cut(exc: Any) -> bool:
    """Whether the pyreqwest exception ``exc`` says the HTTP/2 connection carrying the request
    ended while the request's stream was open (h2's own words: the server closed or lost the
    connection, a rotation, a restart), as opposed to a connect failure, a timeout or a stream
    the server reset.

    A GOAWAY naming a stream as unprocessed and a ``REFUSED_STREAM`` reset never get here:
    hyper sends such a request again by itself, on another connection or stream.
    """
    if "RequestTimeoutError" in {cls.__name__ for cls in type(exc).__mro__}:
        return False
    return any(cause in _STREAM_CUT for cause in causes_of(exc))


def cut_before_head(exc: Any) -> bool:
    """:func:`stream_cut` before the response head came (the request had been handed to a
    connection); a cut once the head was in (pyreqwest reads ahead into the body before it
    hands the head over) is not."""
    return _SENT in causes_of(exc)


_MAX_ORIGINS = 4096  # origins remembered; one forgotten makes its next break an ordinary error
_MAX_BREAKS = 16  # breaks remembered per origin
GRACE = 1.0
"""Seconds after a used connection broke during which more breaks of the same origin with no
answer between them are taken as the same event: requests sent (often the retries of the
first failures) before hyper noticed the connection was gone."""


class _Break(NamedTuple):
    seq: int  # when it was seen, in the numbering of answers and breaks
    since: float  # when the event it belongs to began (monotonic seconds)
    served: bool  # whether the connection had answered


class Rotations:
    """Whether the HTTP/2 connection a request was on had answered before it broke.

    reqwest says neither which connection carried a request nor whether it had answered. It
    keeps one HTTP/2 connection per origin, so "that connection had served requests" is taken
    as: the origin answered over HTTP/2 after the last break of its connection seen before the
    request started. The streams that one break fails are all judged against the break before
    it; requests sent on the dead connection before hyper noticed (up to :data:`GRACE` seconds
    after a used connection broke, no answer since) belong to that break too. A fresh
    connection that breaks before answering says nothing good about the server, so past that
    its failures are ordinary (counted) ones, as on ``HttpxTerminal``.

    ``seq`` numbers answers and breaks; a request notes it when it starts (its ``mark``).
    """

    __slots__ = ("_answers", "_breaks", "_clock", "_last", "seq")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.seq = 0
        self._clock = clock
        self._answers: dict[bytes, int] = {}
        self._breaks: dict[bytes, list[_Break]] = {}
        self._last: tuple[httpx.URL | None, bytes] = (None, b"")

    def _origin(self, url: httpx.URL) -> bytes:
        last, origin = self._last
        if url is not last:  # the client hands out one URL object per distinct URL
            origin = url.netloc
            self._last = (url, origin)
        return origin

    def answered(self, url: httpx.URL) -> None:
        """``url``'s origin answered a request over HTTP/2."""
        origin = self._origin(url)
        answers = self._answers
        if len(answers) >= _MAX_ORIGINS and origin not in answers:
            del answers[next(iter(answers))]
        self.seq += 1
        answers[origin] = self.seq

    def broke(self, url: httpx.URL, mark: int) -> bool:
        """The connection under a request to ``url`` started at ``mark`` broke: whether it had
        served requests (see the class docstring). The break is recorded."""
        origin = self._origin(url)
        now = self._clock()
        breaks = self._breaks.setdefault(origin, [])
        answered = self._answers.get(origin, 0)
        before = max((b.seq for b in breaks if b.seq <= mark), default=0)
        served, since = answered > before, now
        if breaks and not served:
            last = breaks[-1]
            if last.served and answered < last.seq and now - last.since <= GRACE:
                served, since = True, last.since  # the same event as the last break
        self.seq += 1
        breaks.append(_Break(self.seq, since, served))
        del breaks[:-_MAX_BREAKS]
        if len(self._breaks) > _MAX_ORIGINS:
            del self._breaks[next(iter(self._breaks))]
        return served
