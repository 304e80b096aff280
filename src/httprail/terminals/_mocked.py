"""While a test mocks httpx, the lean terminals send where the mock answers.

respx patches httpx's and httpcore's transports, and ``httpx2-pytest`` patches httpx2's; the
aiohttp and curl terminals use neither, so a request of the default client under
``respx.mock`` would quietly go to the network (and be retried there). While such a mock is
active, :class:`MockDetour` sends the request through httpx (or httpx2), where the mock answers
it, or raises as the mock does for a request no route matches: never a real network call
behind the test's back.

Cheap on the hot path: :func:`mocking` first looks the mock libraries up in ``sys.modules``
(one dict lookup each when they are not imported, which is the case outside tests).
"""

from __future__ import annotations

import sys
from typing import Any

import httpx

from .._settings import HttpSettings

__all__ = ["MockDetour", "mocking", "raised_by_mock"]

_modules = sys.modules

# The test libraries whose failed expectations must reach the test as they are.
_MOCK_LIBRARIES = ("respx", "pytest_httpx", "pytest_httpx2")
# Headers of the body as it came; the body handed on is already decoded.
_FRAMING = (b"content-encoding", b"content-length", b"transfer-encoding")


def mocking() -> str | None:
    """``"respx"`` or ``"httpx2-pytest"`` while that library mocks requests, else ``None``."""
    mocks = _modules.get("respx.mocks")
    if mocks is not None and any(m.routers for m in mocks.Mocker.registry.values()):
        return "respx"
    if "pytest_httpx2" in _modules:
        httpx2 = _modules.get("httpx2")
        send = getattr(getattr(httpx2, "AsyncHTTPTransport", None), "handle_async_request", None)
        if getattr(send, "__module__", "").startswith("pytest_httpx2"):
            return "httpx2-pytest"
    return None


def raised_by_mock(exc: BaseException) -> bool:
    """Whether ``exc`` is a mock library's assertion (respx: no route matched the request).

    It is raised to the test, never turned into a ``Failure`` that Retry would repeat.
    """
    return isinstance(exc, AssertionError) and (
        type(exc).__module__.partition(".")[0] in _MOCK_LIBRARIES
    )


class MockDetour:
    """Sends through httpx (for respx) or httpx2 (for httpx2-pytest) while one mocks it.

    The clients are made on first use and closed by :meth:`aclose`; they never follow
    redirects and ignore the environment, as the terminals do.
    """

    __slots__ = ("_clients", "_settings")

    def __init__(self, settings: HttpSettings) -> None:
        self._settings = settings
        self._clients: dict[str, Any] = {}

    async def open(self, library: str, request: httpx.Request) -> httpx.Response:
        """Send ``request`` where ``library`` answers it; the head is in, the body is read."""
        if library == "respx":
            client = self._client("respx", httpx)
            return await client.send(request, stream=True)  # type: ignore[no-any-return]
        import httpx2

        client = self._client("httpx2", httpx2)
        sent = httpx2.Request(
            request.method,
            str(request.url),
            headers=request.headers.raw,
            content=await request.aread(),
            extensions={"timeout": request.extensions.get("timeout", self._timeouts())},
        )
        answer = await client.send(sent)
        return httpx.Response(
            answer.status_code,
            headers=[(k, v) for k, v in answer.headers.raw if k.lower() not in _FRAMING],
            content=answer.content,
            request=request,
            extensions={
                "http_version": answer.extensions.get("http_version", b"HTTP/1.1"),
                "reason_phrase": answer.extensions.get("reason_phrase", b""),
            },
        )

    def _timeouts(self) -> dict[str, float | None]:
        return self._settings.httpx_timeout().as_dict()

    def _client(self, key: str, module: Any) -> Any:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = module.AsyncClient(
                timeout=module.Timeout(**self._timeouts()),
                follow_redirects=False,
                trust_env=False,
            )
        return client

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()
