"""aiohttp's request without ``ClientSession._request``: the aiohttp terminal's short road.

``ClientSession._request`` is aiohttp's general request. Around the four steps that send it
(build a ``ClientRequest``, take a connection from the connector, write the request, read the
response head) it merges session headers, joins the URL, strips and checks credentials, reads
cookies, looks up proxies and ``.netrc``, arms the total timer, runs trace hooks and client
middlewares, retries a dropped pooled connection and follows redirects. The terminal uses none
of that (no session headers, a dummy cookie jar, ``trust_env`` off, no total timeout, the retry
and redirects off), yet it costs about a quarter of a raw aiohttp request's instructions
(``benchmarks/results/instructions.md``). :class:`DirectRoad` takes the four steps itself, with
the arguments ``_request`` passes to them and the same exception wrapping.

It is only taken where it does what ``_request`` would (the terminal's session road otherwise):

- aiohttp 3.14, whose ``_request`` this mirrors, with the parameter names of the four steps
  checked (:func:`DirectRoad.of` returns ``None`` for any other version);
- a session of aiohttp's own classes, whose ``_request`` is aiohttp's own (aioresponses and
  vcrpy replace it: a test that mocks aiohttp is never sent past its mock), with no trace
  configs (OpenTelemetry's aiohttp instrumentation adds one) and no client middlewares, checked
  on every request;
- a request without a proxy, to an http(s) URL with a host and without userinfo (checked once
  per distinct URL by the terminal: :func:`plain_url`).
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["DirectRoad", "plain_url"]

_SCHEMES = frozenset({"http", "https"})

# What each step is given by ``_request`` (aiohttp 3.14) and so by the short road.
_REQUEST_PARAMS = frozenset(
    {"headers", "skip_auto_headers", "data", "version", "loop", "response_class", "timer"}
    | {"session", "ssl", "traces", "trust_env"}
)
_CONNECT_PARAMS = frozenset({"req", "traces", "timeout"})
_RESPONSE_PARAMS = frozenset(
    {"timer", "skip_payload", "read_until_eof", "auto_decompress", "read_timeout"}
    | {"read_bufsize", "timeout_ceil_threshold", "max_line_size", "max_field_size"}
    | {"max_headers"}
)


def plain_url(url: Any) -> bool:
    """Whether a ``yarl.URL`` may take the short road: http(s), a host, no userinfo.

    ``_request`` strips userinfo into a ``BasicAuth`` (and a proxied request would otherwise
    carry it in its request line), refuses other schemes and host-less URLs with its own
    errors: such URLs keep the session road.
    """
    return (
        url.scheme in _SCHEMES
        and bool(url.raw_host)
        and url.raw_user is None
        and url.raw_password is None
    )


def _takes(function: Any, names: frozenset[str]) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # pragma: no cover - aiohttp's are Python functions
        return False
    return names <= parameters.keys()


def _own_request(function: Any) -> bool:
    """Whether ``function`` is aiohttp's ``ClientSession._request`` (not a mock's)."""
    return (
        inspect.iscoroutinefunction(function)
        and getattr(function, "__module__", None) == "aiohttp.client"
        and getattr(function, "__qualname__", None) == "ClientSession._request"
    )


class DirectRoad:
    """The four steps of ``ClientSession._request`` for one session, taken directly.

    :meth:`send` returns the ``ClientResponse`` with its head read, or raises what
    ``session.request`` raises for the same fault; cancelling it closes the connection.
    """

    __slots__ = (
        "_auto_decompress",
        "_client_error",
        "_client_os_error",
        "_connect",
        "_connect_timeout",
        "_empty_body_methods",
        "_loop",
        "_max_field_size",
        "_max_headers",
        "_max_line_size",
        "_read_bufsize",
        "_request_class",
        "_response_class",
        "_threshold",
        "_timer",
        "_version",
        "own_request",
        "session",
    )

    def __init__(self, aiohttp: Any, session: Any) -> None:
        client = aiohttp.client
        self.session = session
        self.own_request = type(session)._request
        self._request_class = session._request_class
        self._response_class = session._response_class
        self._loop = session._loop
        self._version = session._version
        self._read_bufsize = session._read_bufsize
        self._max_line_size = session._max_line_size
        self._max_field_size = session._max_field_size
        self._max_headers = session._max_headers
        self._auto_decompress = session._auto_decompress
        connector = session.connector
        self._connect = connector.connect
        self._threshold = connector._timeout_ceil_threshold
        self._timer = aiohttp.helpers.TimerNoop()  # what ``_request`` times with, no total
        self._empty_body_methods = client.EMPTY_BODY_METHODS
        self._connect_timeout = aiohttp.ConnectionTimeoutError
        self._client_error = aiohttp.ClientError
        self._client_os_error = aiohttp.ClientOSError

    @classmethod
    def of(cls, aiohttp: Any, session: Any) -> DirectRoad | None:
        """The short road for ``session``, or ``None`` where it would not do what
        ``session.request`` does (another aiohttp version, classes of one's own, a patched
        ``_request``, trace configs or middlewares)."""
        version = getattr(aiohttp, "__version__", "")
        if not version.startswith("3.14."):
            return None
        client = getattr(aiohttp, "client", None)
        reqrep = getattr(aiohttp, "client_reqrep", None)
        if client is None or reqrep is None or not hasattr(client, "EMPTY_BODY_METHODS"):
            return None  # pragma: no cover - every 3.14 has them
        if (
            type(session) is not aiohttp.ClientSession
            or getattr(session, "_request_class", None) is not reqrep.ClientRequest
            or getattr(session, "_response_class", None) is not reqrep.ClientResponse
            or not _own_request(type(session)._request)
            or not isinstance(session.connector, aiohttp.TCPConnector)
            or session._trace_configs
            or session._middlewares
        ):
            return None
        protocol = aiohttp.client_proto.ResponseHandler
        if not (
            _takes(reqrep.ClientRequest, _REQUEST_PARAMS)
            and _takes(session.connector.connect, _CONNECT_PARAMS)
            and _takes(protocol.set_response_params, _RESPONSE_PARAMS)
        ):
            return None  # pragma: no cover - a 3.14 release that renamed them
        return cls(aiohttp, session)

    def usable(self) -> bool:
        """Whether the session is still as :meth:`of` found it (checked per request: a trace
        config or a patched ``_request`` may come later, or the session be closed, for which
        ``_request`` has its own error)."""
        session = self.session
        return (
            type(session)._request is self.own_request
            and not session._trace_configs
            and not session._middlewares
            and not session.closed
        )

    async def send(
        self,
        method: str,
        url: Any,
        headers: Any,
        skip: tuple[str, ...] | None,
        data: Any,
        timeout: Any,
    ) -> Any:
        """``session.request(method, url, ...)`` for a plain URL and no proxy, redirects off."""
        timer = self._timer
        request = self._request_class(
            method,
            url,
            headers=headers,
            skip_auto_headers=skip,
            data=data,
            version=self._version,
            loop=self._loop,
            response_class=self._response_class,
            timer=timer,
            session=self.session,
            ssl=True,
            traces=[],
            trust_env=False,
        )
        try:
            try:
                connection = await self._connect(request, traces=[], timeout=timeout)
            except TimeoutError as exc:
                raise self._connect_timeout(f"Connection timeout to host {request.url}") from exc
            protocol = connection.protocol
            protocol.set_response_params(
                timer=timer,
                skip_payload=method in self._empty_body_methods,
                read_until_eof=True,
                auto_decompress=self._auto_decompress,
                read_timeout=timeout.sock_read,
                read_bufsize=self._read_bufsize,
                timeout_ceil_threshold=self._threshold,
                max_line_size=self._max_line_size,
                max_field_size=self._max_field_size,
                max_headers=self._max_headers,
            )
            try:
                response = await request.send(connection)
                try:
                    await response.start(connection)
                except BaseException:
                    response.close()
                    raise
            except BaseException:
                connection.close()
                raise
        except OSError as exc:
            if isinstance(exc, self._client_error) or (
                exc.errno is None and isinstance(exc, TimeoutError)
            ):
                raise
            raise self._client_os_error(*exc.args) from exc  # as ``_request`` wraps it
        finally:
            body = request._body  # the request's payload, closed on every way out
            if body is not None:
                await body.close()
        return response
