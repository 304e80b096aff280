"""The pipeline: an ordered, frozen chain of middleware stages in front of one terminal.

The first plugin listed is the outermost: it sees the request first and the outcome last.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import FunctionType, MethodType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import httpx
from returns.result import Failure, Result, Success

from ._args import items_of
from ._closing import ClosesOnExit
from ._context import EXTENSION_KEY, RequestContext
from ._errors import ConfigError, InvalidRequestError, RequestError
from ._events import Event, Observer
from ._result import Next, Outcome, resolved

if TYPE_CHECKING:
    from typing import Unpack

    from ._health import HealthSnapshot
    from .terminals._httpx2 import Httpx2PipelineTransport
    from .terminals._transport import PipelineTransport, TransportOptions

__all__ = [
    "EventObserver",
    "MiddlewarePlugin",
    "Pipeline",
    "RequestResponsePlugin",
    "TerminalPlugin",
]

P = TypeVar("P")


@runtime_checkable
class MiddlewarePlugin(Protocol):
    """One stage of the chain: gets the request and the rest of the chain, returns an outcome."""

    name: str

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome: ...


@runtime_checkable
class TerminalPlugin(Protocol):
    """The end of the chain: sends the request and owns the connection pool."""

    name: str

    async def send(self, request: httpx.Request) -> Outcome: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class EventObserver(Protocol):
    """A stage that also wants the pipeline's instrumentation events (retries, breaker moves)."""

    def on_event(self, event: Event) -> None: ...


class RequestResponsePlugin:
    """Base for stages that only change the request on the way in and the response on the way out.

    Override :meth:`process_request` and/or :meth:`process_response`; a ``Failure`` from either
    short-circuits the chain. A ``Failure`` coming from further down passes through untouched.
    """

    name = "request_response"

    async def process_request(self, request: httpx.Request) -> Result[httpx.Request, RequestError]:
        """Return the (possibly modified) request, or a Failure to stop here."""
        return Success(request)

    async def process_response(
        self, response: httpx.Response, request: httpx.Request
    ) -> Result[httpx.Response, RequestError]:
        """Return the (possibly modified) response, or a Failure."""
        return Success(response)

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        processed = await self.process_request(request)
        if type(processed) is Failure:
            return processed
        outcome = await call_next(processed.unwrap())
        if type(outcome) is Failure:
            return outcome
        return await self.process_response(outcome.unwrap(), request)


def _link(plugin: MiddlewarePlugin, call_next: Next) -> Next:
    # A plain function returning the plugin's coroutine: no extra coroutine frame per stage.
    # The bound ``__call__`` is looked up once here instead of on every request.
    bound: Callable[[httpx.Request, Next], Awaitable[Outcome]] = (
        plugin if isinstance(plugin, FunctionType | MethodType) else plugin.__call__
    )

    def call(request: httpx.Request) -> Awaitable[Outcome]:
        return bound(request, call_next)

    return call


class Pipeline(ClosesOnExit):
    """An immutable chain of middleware stages in front of a terminal.

    Args:
        plugins: the stages, outermost first.
        terminal: what finally sends the request.
        observers: extra receivers of instrumentation events (stages that have an
            ``on_event`` method are subscribed automatically).

    A stage with a ``wrap_send(send) -> send`` method is given the terminal's ``send`` to wrap,
    once, here: ``OpenTelemetry`` opens its span per physical attempt that way.

    Example:
        >>> pipeline = Pipeline([Logging(), Retry()], HttpxTerminal())  # doctest: +SKIP
        >>> outcome = await pipeline.send(httpx.Request("GET", "https://example.com"))
    """

    __slots__ = ("_handler", "_observers", "_plugins", "_terminal")

    _plugins: tuple[MiddlewarePlugin, ...]
    _terminal: TerminalPlugin
    _observers: tuple[Observer, ...]
    _handler: Next

    def __init__(
        self,
        plugins: Iterable[MiddlewarePlugin],
        terminal: TerminalPlugin,
        *,
        observers: Sequence[Observer] = (),
    ) -> None:
        stages = items_of("Pipeline", "plugins", plugins, "a list of middleware plugins")
        observers = items_of("Pipeline", "observers", observers, "a list of callables")
        for index, plugin in enumerate(stages):
            if isinstance(plugin, TerminalPlugin) and not isinstance(plugin, MiddlewarePlugin):
                raise ConfigError(
                    f"plugins[{index}] ({plugin!r}) is a terminal, not a middleware: "
                    "pass it as `terminal`"
                )
            if not callable(plugin) or not isinstance(getattr(plugin, "name", None), str):
                raise ConfigError(
                    f"plugins[{index}] ({plugin!r}) is not a middleware plugin: it needs a str "
                    "`name` and `async __call__(request, call_next)`"
                )
        if not isinstance(terminal, TerminalPlugin):
            raise ConfigError(
                f"terminal {terminal!r} is not a terminal plugin: it needs a str `name`, "
                "`async send(request)` and `async aclose()`"
            )
        for index, observer in enumerate(observers):
            if not callable(observer):
                raise ConfigError(f"observers[{index}] ({observer!r}) is not callable")
        subscribed = tuple(p.on_event for p in stages if isinstance(p, EventObserver))
        handler: Next = terminal.send
        for plugin in stages:  # a stage may wrap each call of the terminal (OpenTelemetry)
            wrap_send = getattr(plugin, "wrap_send", None)
            if wrap_send is not None:
                handler = wrap_send(handler)
        for plugin in reversed(stages):
            handler = _link(plugin, handler)
        object.__setattr__(self, "_plugins", stages)
        object.__setattr__(self, "_terminal", terminal)
        object.__setattr__(self, "_observers", (*subscribed, *observers))
        object.__setattr__(self, "_handler", handler)

    @classmethod
    def from_config(
        cls,
        source: Any,
        name: str,
        **options: Any,
    ) -> Pipeline:
        """The middleware and terminal of provider or service ``name`` declared in ``source``
        (a stack file path, a dict, or ``None`` for the nearest stack file).

        Keyword arguments are those of :func:`httprail.build_stack`; a provider's generator is
        left out (use ``build_stack`` to get it). The pipeline owns its connection pool: close it
        with :meth:`aclose`.

        Raises:
            ConfigError: anything wrong in the declaration, naming where.
        """
        from ._stack import build_stack  # the stack builder needs the client, which needs us

        return build_stack(source, name, **options).pipeline

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Pipeline is frozen; cannot set {name!r}. Build a new Pipeline.")

    def __repr__(self) -> str:
        names = " → ".join([*(p.name for p in self._plugins), self._terminal.name])
        return f"Pipeline({names})"

    @property
    def plugins(self) -> tuple[MiddlewarePlugin, ...]:
        """The stages, outermost first."""
        return self._plugins

    @property
    def terminal(self) -> TerminalPlugin:
        """The terminal at the end of the chain."""
        return self._terminal

    @property
    def observers(self) -> tuple[Observer, ...]:
        """Every receiver of this pipeline's instrumentation events."""
        return self._observers

    def find(self, kind: type[P]) -> P | None:
        """The first stage (or the terminal) that is an instance of ``kind``, if any."""
        for stage in (*self._plugins, self._terminal):
            if isinstance(stage, kind):
                return stage
        return None

    def new_context(self, **fields: Any) -> RequestContext:
        """A request context wired to this pipeline's observers."""
        return RequestContext(observers=self._observers, **fields)

    def send(self, request: httpx.Request) -> Awaitable[Outcome]:
        """Run ``request`` through every stage and the terminal (anything but an
        ``httpx.Request`` is answered ``Failure(InvalidRequestError)``)."""
        if not isinstance(request, httpx.Request):
            return resolved(Failure(_not_a_request(request)))
        ctx = request.extensions.get(EXTENSION_KEY)
        if not isinstance(ctx, RequestContext):
            request.extensions[EXTENSION_KEY] = RequestContext(observers=self._observers)
        elif not ctx.observers and self._observers:
            request.extensions[EXTENSION_KEY] = ctx.replace(observers=self._observers)
        return self._handler(request)

    def as_handler(self) -> Callable[[httpx.Request], Awaitable[Outcome]]:
        """The chain as a plain callable (what a stage calls as ``call_next``)."""
        return self.send

    def as_httpx_transport(
        self, *, context: RequestContext | None = None, **options: Unpack[TransportOptions]
    ) -> PipelineTransport:
        """The whole chain as an ``httpx.AsyncBaseTransport``, for httpx-based SDKs.

        Responses (and error responses, so the SDK's status handling works) are returned to the
        SDK; other failures are raised as the matching httpx exception, with the httprail error
        as ``__cause__``. It serves ``httpx2`` clients too. Closing the transport closes this
        pipeline. Arguments are those of :class:`~httprail.terminals.PipelineTransport`; see
        ``docs/openai-sdk.md``.

        Example:
            >>> sdk = openai.AsyncOpenAI(  # doctest: +SKIP
            ...     http_client=httpx.AsyncClient(transport=pipeline.as_httpx_transport()),
            ...     max_retries=0,
            ... )
        """
        from .terminals._transport import PipelineTransport  # terminals import the core

        return PipelineTransport(self, context=context, **options)

    def as_httpx2_transport(
        self, *, context: RequestContext | None = None, **options: Unpack[TransportOptions]
    ) -> Httpx2PipelineTransport:
        """:meth:`as_httpx_transport` on ``httpx2``'s base class (for anthropic's
        ``DefaultAsyncHttpxClient`` and type checkers); a ``ConfigError`` without httpx2."""
        from .terminals._transport import httpx2_transport  # terminals import the core

        return httpx2_transport(self, context=context, **options)

    async def health(self) -> HealthSnapshot:
        """Each upstream's breaker, budget, bulkhead and recent figures, read from the stages
        (see :class:`~httprail.HealthSnapshot`)."""
        from ._health import pipeline_health  # it reads the middleware, which imports the core

        return await pipeline_health(self)

    async def aclose(self) -> None:
        """Close the terminal (and with it the connection pool)."""
        await self._terminal.aclose()


def _not_a_request(given: object) -> InvalidRequestError:
    return InvalidRequestError(f"send() takes an httpx.Request, got {type(given).__name__}")
