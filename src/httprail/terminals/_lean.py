"""What the lean (non-httpx) terminals add to :class:`~._gated.GatedTerminal`.

A lean terminal goes to its backend directly: besides opening a response it translates its
backend's exceptions into httpx ones, so the error tree comes out exactly as from
:class:`HttpxTerminal`. It imports its backend only when built.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import httpx

from .._errors import ConfigError, RequestError
from ._gated import GatedTerminal
from ._mapping import map_exception, safe_cause
from ._mocked import MockDetour

__all__ = ["CLOSED_UNDER", "LeanTerminal", "http_version", "import_backend", "timeout_of"]

CLOSED_UNDER = "the terminal was closed while the response was arriving"
"""The error text of a body cut short by the terminal's own ``aclose()``."""


def import_backend(module: str, extra: str) -> ModuleType:
    """Import an optional backend, or raise a :class:`ConfigError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"the {extra} terminal needs the {module!r} package, which is not installed: "
            f"pip install 'httprail[{extra}]'"
        ) from exc


def timeout_of(request: httpx.Request, phase: str, default: float) -> float | None:
    """The request's own timeout for ``phase`` (``extensions["timeout"]``), else ``default``."""
    values = request.extensions.get("timeout")
    if isinstance(values, dict) and phase in values:
        value: float | None = values[phase]
        return value
    return default


_VERSIONS = {(1, 1): b"HTTP/1.1", (1, 0): b"HTTP/1.0"}


def http_version(major: int, minor: int) -> bytes:
    """``b"HTTP/1.1"`` and friends, as httpx stores them in ``response.extensions``."""
    known = _VERSIONS.get((major, minor))
    if known is not None:
        return known
    if major == 2:
        return b"HTTP/2"
    return f"HTTP/{major}.{minor}".encode("ascii")


class LeanTerminal(GatedTerminal):
    """Base of the terminals that drive a backend directly (aiohttp, curl_cffi).

    Subclasses implement :meth:`_open`, :meth:`_translate` and :meth:`_close_backend`; they may
    override :meth:`_read` when the backend can read a whole body faster than chunk by chunk.
    """

    name = "lean"

    def _translate(self, exc: Exception) -> Exception | None:
        """The httpx exception equivalent to a backend exception (``None``: not a backend one)."""
        raise NotImplementedError

    async def _open_mocked(self, library: str, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through httpx (or httpx2), where the active ``library`` mocks it
        (see ``_mocked``): a test's mock is never bypassed for the network."""
        detour: MockDetour | None = self.__dict__.get("_mock_detour")
        if detour is None:
            detour = self._mock_detour = MockDetour(self.settings)
        return await detour.open(library, request)

    def map_error(self, exc: Exception, request: httpx.Request) -> RequestError:
        """The error-tree value for ``exc``, exactly as :class:`HttpxTerminal` would give it."""
        translated = self._translate(exc)
        if translated is None:
            error = map_exception(exc, request)
            cause = exc.__cause__
            if isinstance(exc, httpx.HTTPError) and isinstance(cause, Exception):
                # a body read failed: the backend's own exception
                error.__cause__ = safe_cause(cause, request)
            return error
        error = map_exception(translated, request)
        error.__cause__ = safe_cause(exc, request)
        return error
