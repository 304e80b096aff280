"""httprail's loggers: silent until the application configures logging, as a library's should.

Every module that logs takes a :class:`Logger` from :func:`get_logger` and calls
``logger.warning("http.request", method=..., url=...)``. Each event goes to:

- **structlog**, when the application has configured it (``structlog.is_configured()``; asked
  at each event, so configuring it after httprail was imported counts): the event and its
  fields as keyword arguments, through the application's processors.
- otherwise the **stdlib** logger of the same name (``httprail``, ``httprail.http``, ...). The
  fields ride in ``extra`` (so they are attributes of the ``LogRecord``, and structlog's
  ``ProcessorFormatter`` with ``ExtraAdder`` renders them as fields), the event name in
  ``record.event``, and the message reads ``http.request method=GET url=... status=503`` for
  a plain ``%(message)s`` formatter.

The ``httprail`` logger has a ``NullHandler`` and nothing else: with no logging configured,
Python's "last resort" handler (which prints WARNING and above to stderr when no handler at
all is found) stays out of it, so an unconfigured application prints nothing. structlog is
never imported here: if the application configured it, it has imported it.

While a :class:`~httprail.middleware.RequestId` stage runs a request, every event logged in its
task carries ``request_id`` (read from a context variable that stage sets).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["REQUEST_ID", "Logger", "get_logger", "quiet"]

ROOT = "httprail"
logging.getLogger(ROOT).addHandler(logging.NullHandler())

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "httprail.request_id", default=None
)
"""The id of the request the current task works for (set by ``RequestId``)."""

_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
}
# Attributes a LogRecord has of its own: an ``extra`` key among them makes logging raise
# KeyError, so such a field is stored with a trailing underscore (``name`` -> ``name_``).
_RESERVED = frozenset(
    (*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime")
)


class _Message:
    """A record's message, rendered only when a handler formats it."""

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: dict[str, Any]) -> None:
        self.event = event
        self.fields = fields

    def __str__(self) -> str:
        parts = [self.event]
        parts.extend(f"{key}={_value(value)}" for key, value in self.fields.items())
        return " ".join(parts)


def _value(value: object) -> str:
    text = str(value)
    if isinstance(value, str) and (not text or any(c in text for c in " \"'=\n\t")):
        return repr(text)
    return text


class Logger:
    """One named logger: ``debug/info/warning/error(event, **fields)`` and
    :meth:`is_enabled_for` (ask it before building an expensive event).

    Args:
        name: ``httprail`` or ``httprail.<part>``.
        stdlib: write to this stdlib logger only, whether structlog is configured or not (what
            ``Logging(logger=logging.getLogger(...))`` uses).
    """

    __slots__ = ("_fixed", "_stdlib", "_struct", "name")

    def __init__(self, name: str, *, stdlib: logging.Logger | None = None) -> None:
        self.name = name
        self._fixed = stdlib is not None
        self._stdlib = stdlib if stdlib is not None else logging.getLogger(name)
        self._struct: Any = None

    def __repr__(self) -> str:
        return f"<httprail Logger {self.name!r}>"

    def _structlog(self) -> Any:
        """structlog's logger of this name, if the application configured structlog."""
        if self._fixed:
            return None
        structlog = sys.modules.get("structlog")
        if structlog is None or not structlog.is_configured():
            return None
        if self._struct is None:
            self._struct = structlog.get_logger(self.name)
        return self._struct

    def is_enabled_for(self, level: int) -> bool:
        """Whether an event at ``level`` (``logging.DEBUG`` ...) would be kept."""
        struct = self._structlog()
        if struct is None:
            return self._stdlib.isEnabledFor(level)
        # A generic structlog BoundLogger answers any attribute (it would log an event called
        # is_enabled_for): look the method up on the bound logger's class.
        bound = struct.bind()
        enabled = getattr(type(bound), "is_enabled_for", None)
        return enabled is None or bool(enabled(bound, level))

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` at DEBUG."""
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at INFO."""
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` at WARNING."""
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log ``event`` at ERROR."""
        self._emit(logging.ERROR, event, fields)

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if "request_id" not in fields:
            request_id = REQUEST_ID.get()
            if request_id is not None:
                fields["request_id"] = request_id
        struct = self._structlog()
        if struct is not None:
            getattr(struct, _NAMES[level])(event, **fields)
            return
        logger = self._stdlib
        if not logger.isEnabledFor(level):
            return
        exc_info = fields.pop("exc_info", None)
        extra = {(f"{key}_" if key in _RESERVED else key): value for key, value in fields.items()}
        extra["event"] = event
        logger.log(level, _Message(event, fields), exc_info=exc_info, extra=extra, stacklevel=3)


def get_logger(name: str = ROOT) -> Logger:
    """The logger ``name`` (``httprail`` or below it)."""
    return Logger(name)


@contextlib.contextmanager
def quiet(level: int = logging.ERROR) -> Iterator[None]:
    """Drop httprail's stdlib events below ``level`` while the block runs (raises the
    ``httprail`` logger's level, then puts it back). For commands that own the process (the
    CLI's demo); structlog, if configured, is the caller's to filter."""
    root = logging.getLogger(ROOT)
    saved = root.level
    root.setLevel(max(level, root.getEffectiveLevel()))
    try:
        yield
    finally:
        root.setLevel(saved)
