"""``Client``: the synchronous face of :class:`AsyncClient`, for threads, WSGI views and scripts.

One background thread per client runs an event loop (started on first use, a daemon); every
call is handed to it and waited for. Many threads may call one client at once: their requests
run concurrently on that loop, sharing its pool, breaker and budgets. Closing (``close()``, a
``with`` block, garbage collection, or interpreter exit) closes the pool on that loop, then
stops the loop and its thread.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack, overload

import httpx
from returns.result import Failure, Result, Success

from ._client import AsyncClient, ClientOptions, RequestOptions
from ._errors import RequestError, RequestTimeoutError
from ._health import HealthSnapshot
from ._loop_thread import LoopThread, SyncBody, SyncTransport
from ._result import Outcome
from .middleware._metrics import MetricsSnapshot
from .terminals._transport import TransportOptions

__all__ = ["Client"]

T = TypeVar("T")

# Beyond the total deadline, how long a caller waits for the loop to answer before giving up
# on the call (the Timeout stage normally ends it first).
_GRACE = 1.0


def _shutdown(runner: LoopThread, client: AsyncClient) -> None:
    """Close ``client`` on ``runner``'s loop and stop it (``close()``, or a never-closed
    Client's finaliser at garbage collection or interpreter exit; it runs once)."""
    runner.stop(client.aclose())


class Client:
    """A synchronous HTTP client whose every call returns ``Result[httpx.Response, RequestError]``.

    It takes :class:`AsyncClient`'s arguments and offers its verbs, returning the same
    ``Result`` values, without ``await``: ``request``, ``get``, ``post``, ``put``, ``patch``,
    ``delete``, ``head``, ``options``, ``get_json`` and ``stream`` (a ``with`` block whose
    response is read with ``iter_bytes()``/``iter_lines()``/``read()``).

    Safe to share between threads (one module-level client for a whole WSGI app): calls from
    many threads run concurrently on the client's own event loop, in a daemon thread started on
    first use. A caller waits at most the total deadline (``timeout_total``) plus a second; a
    caller interrupted meanwhile (``KeyboardInterrupt``) cancels its request on the loop.

    Close it with ``close()`` or a ``with`` block; one never closed is closed when collected or
    at interpreter exit, quietly.

    Example:
        >>> with Client(base_url="https://api.example.com") as client:  # doctest: +SKIP
        ...     match client.get("/users/1"):
        ...         case Success(response):
        ...             print(response.json())
        ...         case Failure(error):
        ...             print("failed:", error)
    """

    def __init__(self, base_url: httpx.URL | str = "", **options: Unpack[ClientOptions]) -> None:
        self._async = AsyncClient(base_url, **options)
        self.settings = self._async.settings
        total = self.settings.timeout_total
        self._wait: float | None = total + _GRACE if math.isfinite(total) else None
        self._runner = LoopThread(f"httprail-client-{id(self):x}")
        self._finalizer = weakref.finalize(self, _shutdown, self._runner, self._async)

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncClient", "Client", 1)

    @property
    def async_client(self) -> AsyncClient:
        """The :class:`AsyncClient` underneath (use it only on this client's loop)."""
        return self._async

    def _call(self, coroutine: Coroutine[Any, Any, Any], request: str) -> Any:
        """Run ``coroutine`` on the loop; a ``Failure(RequestTimeoutError)`` if it outlasts the
        total deadline (it is then cancelled there)."""
        try:
            return self._runner.call(coroutine, self._wait)  # interrupted: cancelled there too
        except TimeoutError:
            return Failure(
                RequestTimeoutError(
                    f"no answer within the total deadline ({request}); the request was cancelled",
                    phase="total",
                )
            )

    def request(
        self, method: str, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]
    ) -> Outcome:
        """Send one request and wait for its outcome (arguments as httpx's)."""
        call = self._async

        async def send() -> Outcome:
            return await call.request(method, url, **kwargs)

        outcome: Outcome = self._call(send(), method)
        return outcome

    def get(self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]) -> Outcome:
        """Send a GET request."""
        return self.request("GET", url, **kwargs)

    def head(self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]) -> Outcome:
        """Send a HEAD request."""
        return self.request("HEAD", url, **kwargs)

    def options(self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]) -> Outcome:
        """Send an OPTIONS request."""
        return self.request("OPTIONS", url, **kwargs)

    def post(self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]) -> Outcome:
        """Send a POST request."""
        return self.request("POST", url, **kwargs)

    def put(self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]) -> Outcome:
        """Send a PUT request."""
        return self.request("PUT", url, **kwargs)

    def patch(self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]) -> Outcome:
        """Send a PATCH request."""
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: httpx.URL | str, **kwargs: Unpack[RequestOptions]) -> Outcome:
        """Send a DELETE request."""
        return self.request("DELETE", url, **kwargs)

    @overload
    def get_json(
        self, url: httpx.URL | str, model: None = None, **kwargs: Any
    ) -> Result[Any, RequestError]: ...
    @overload
    def get_json(
        self, url: httpx.URL | str, model: type[T], **kwargs: Any
    ) -> Result[T, RequestError]: ...
    def get_json(
        self, url: httpx.URL | str, model: Any = None, **kwargs: Any
    ) -> Result[Any, RequestError]:
        """GET ``url`` and decode its JSON body (as ``model`` if given), as
        :meth:`AsyncClient.get_json`."""
        decoded: Result[Any, RequestError] = self._call(
            self._async.get_json(url, model, **kwargs), "GET"
        )
        return decoded

    @contextmanager
    def stream(self, method: str, url: httpx.URL | str, **kwargs: Any) -> Iterator[Outcome]:
        """Send a request whose body the caller reads (``iter_bytes()``, ``iter_lines()``,
        ``read()``) inside the ``with`` block; the response is closed on exit.

        Example:
            >>> with client.stream("GET", "/events") as outcome:  # doctest: +SKIP
            ...     for line in outcome.unwrap().iter_lines(): ...
        """
        outcome: Outcome = self._call(self._async._open_stream(method, url, **kwargs), method)
        body: SyncBody | None = None
        if type(outcome) is Success:
            response = outcome.unwrap()
            if isinstance(response.stream, httpx.AsyncByteStream):
                body = SyncBody(response.stream, self._runner)
                response.stream = body
        try:
            yield outcome
        finally:
            if body is not None:
                body.close()

    def as_httpx_transport(self, **options: Unpack[TransportOptions]) -> httpx.BaseTransport:
        """This client's chain as an ``httpx.BaseTransport``, for ``httpx.Client`` and sync
        SDKs (``openai.OpenAI(http_client=httpx.Client(transport=...))``).

        The sync counterpart of :meth:`AsyncClient.as_httpx_transport` (whose transport only an
        ``httpx.AsyncClient`` can use): requests run on this client's loop; closing the
        transport closes this client's pipeline too.
        """
        return SyncTransport(self._async.as_httpx_transport(**options), self._runner)

    def metrics(self) -> MetricsSnapshot:
        """Per-upstream counters and latency from the stack's ``Metrics`` stage."""
        return self._async.metrics()

    def health(self) -> HealthSnapshot:
        """The pipeline's health snapshot, as :meth:`AsyncClient.health` (read on the
        client's loop)."""
        snapshot: HealthSnapshot = self._runner.call(self._async.health(), self._wait)
        return snapshot

    def close(self) -> None:
        """Close the connections (on the client's loop), then stop the loop and its thread."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
