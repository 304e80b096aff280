"""The real OpenTelemetry SDK, wired to in-memory exporters, for the OTel tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from httprail.middleware import OpenTelemetry


@dataclass
class Sdk:
    """A tracer and a meter provider of their own (the global ones can be set only once)."""

    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)

    def __post_init__(self) -> None:
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def stage(self, **options: Any) -> OpenTelemetry:
        """An ``OpenTelemetry`` stage recording to this SDK."""
        return OpenTelemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )

    def finished(self) -> list[ReadableSpan]:
        """Every ended span, in the order they ended."""
        return list(self.spans.get_finished_spans())

    def logical(self) -> ReadableSpan:
        """The one span without a parent (the logical request)."""
        (root,) = [span for span in self.finished() if span.parent is None]
        return root

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """The attempt spans under ``parent``, in the order they started."""
        found = [
            span
            for span in self.finished()
            if span.parent is not None and span.parent.span_id == parent.context.span_id
        ]
        return sorted(found, key=lambda span: span.start_time or 0)

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, value or count)`` of every data point of instrument ``name``."""
        found: list[tuple[dict[str, Any], Any]] = []
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        value = getattr(point, "count", None)
                        if value is None:
                            value = point.value  # type: ignore[union-attr]
                        found.append((dict(point.attributes or {}), value))
        return found

    def total(self, name: str, **match: Any) -> Any:
        """The sum over the data points of ``name`` whose attributes include ``match``
        (attribute names with ``.`` written as ``__``)."""
        wanted = {key.replace("__", "."): value for key, value in match.items()}
        return sum(
            value
            for attributes, value in self.points(name)
            if all(attributes.get(k) == v for k, v in wanted.items())
        )

    def everything_text(self) -> str:
        """Every span's name, attributes, events and status, and every metric label, as text."""
        parts: list[str] = []
        for span in self.finished():
            parts.append(span.name)
            parts.append(repr(dict(span.attributes or {})))
            for event in span.events:
                parts.append(event.name)
                parts.append(repr(dict(event.attributes or {})))
            parts.append(repr(span.status.description))
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        parts.append(repr(dict(point.attributes or {})))
        return "\n".join(parts)
