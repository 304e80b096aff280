"""pyreqwest's exceptions as the httpx exceptions httpx raises for the same fault.

pyreqwest's own classes do not say it (a reset before the answer is its ``ConnectError``, a
head past the read timeout its ``ConnectTimeoutError``): reqwest's chain of causes does. A
cause ``client error (Connect)`` means the connection was never made; otherwise the request
was handed to a connection, and the innermost cause says what broke.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["translate"]

_CONNECTING = ("client error (Connect)", "tcp connect error", "dns error")
_OS_BROKEN = ("Connection reset", "os error 104", "Connection aborted", "os error 103")
_OS_PIPE = ("Broken pipe", "os error 32")
# A head or body that is not valid HTTP, or cut short.
_FRAMING = ("connection closed", "end of file", "unexpected EOF", "chunk", "invalid HTTP")
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


def translate(exc: Any) -> Exception:
    """The httpx exception for the pyreqwest exception ``exc`` (its ``__cause__`` is ``exc``)."""
    causes = causes_of(exc)
    text = _text(exc, causes)
    chain = " | ".join(causes)
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
