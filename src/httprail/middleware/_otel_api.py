"""What the ``OpenTelemetry`` stage reads of the API's state to let a request pass untouched.

Without an SDK the API hands out proxies (a ``ProxyTracer``, a proxy ``Meter``) that start
recording once the application sets a global provider. Asking them per request through the
public API costs a few calls; these helpers find, once, the objects whose attributes say the
same thing in a couple of reads. Each private name is looked up with ``getattr``: if a future
API moves one, the stage takes the public path for every request (slower, same result).
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter
    from opentelemetry.trace import Tracer

__all__ = ["meter_idle", "quiet", "span_lookup", "tracer_idle"]

_NO_OP = types.SimpleNamespace(_TRACER_PROVIDER=None, _real_meter=None)


def tracer_idle(tracer: Tracer) -> Callable[[], bool] | None:
    """A check, cheap enough for every request, that ``tracer`` is the API's no-op (the global
    proxy while no provider is set); ``None`` for a tracer that records."""
    from opentelemetry import trace

    if isinstance(tracer, trace.NoOpTracer):
        return _always
    if isinstance(tracer, trace.ProxyTracer) and hasattr(trace, "_TRACER_PROVIDER"):
        return lambda: trace._TRACER_PROVIDER is None
    return None


def meter_idle(meter: Meter) -> Callable[[], bool] | None:
    """The same check for ``meter``: the API's no-op, or its proxy while no provider is set."""
    from opentelemetry.metrics import NoOpMeter

    if isinstance(meter, NoOpMeter):
        return _always
    if type(meter).__name__ == "_ProxyMeter" and hasattr(meter, "_real_meter"):
        return lambda: meter._real_meter is None
    return None


def quiet(tracer: Tracer, meter: Meter) -> tuple[bool, Any, Any]:
    """Whether a request may pass untouched, and the two objects it reads to know: a tracer
    that does not record leaves ``_TRACER_PROVIDER`` of the first ``None`` (the API module
    while no global provider is set, or a stand-in for the API's no-op tracer), a meter that
    does not record leaves ``_real_meter`` of the second ``None`` (the global proxy meter
    while no provider is set, or a stand-in). ``False`` when either records."""
    from opentelemetry import trace

    tracer_check, meter_check = tracer_idle(tracer), meter_idle(meter)
    if tracer_check is None or meter_check is None:
        return False, _NO_OP, _NO_OP
    trace_api = _NO_OP if tracer_check is _always else trace
    meter_api = _NO_OP if meter_check is _always else meter
    return True, trace_api, meter_api


def _always() -> bool:
    return True


def span_lookup() -> tuple[Callable[[], Mapping[str, object]], str]:
    """How to read the current context cheaply (the context variable itself when the runtime
    context is the default one), and the key the current span is kept under (empty if this
    API keeps it elsewhere)."""
    from opentelemetry import context
    from opentelemetry.trace import propagation

    key = getattr(propagation, "_SPAN_KEY", "")
    runtime = getattr(context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if isinstance(variable, contextvars.ContextVar):
        return variable.get, key
    return context.get_current, key
