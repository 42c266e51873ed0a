"""Tracing: one OpenTelemetry set-up every service calls at start, and the
helpers that carry a trace across Kafka.

Configured only through the standard `OTEL_*` variables: spans are exported by
OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set,
sampled by `OTEL_TRACES_SAMPLER`/`_ARG`, batched by `OTEL_BSP_*`, and
`OTEL_SDK_DISABLED=true` turns the SDK off. Without an endpoint spans are still
made (trace ids reach callers and jobs) but sent nowhere.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry import context, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    Sampler,
    SamplingResult,
    _get_from_env_or_default,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from sqlalchemy.engine import Engine

from comfyserve.contracts.headers import TRACEPARENT, headers_to_carrier

__all__ = [
    "HousekeepingFilter",
    "configure_tracing",
    "context_from_headers",
    "current_trace_id",
    "current_traceparent",
    "inject_headers",
    "instrument",
    "trace_id_hex",
]

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_OUTWARD = (SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER)


# The `tracestate` entry a dropped housekeeping span hands on, so what it
# calls (a gRPC server, a record's consumer, a query) is dropped with it
# whatever the sampler: always_on would otherwise start a trace at each one.
_HOUSEKEEPING = TraceState([("comfyserve", "housekeeping")])


class HousekeepingFilter(Sampler):
    """Drops traces that would start at a client call, a message or a query:
    polls, heartbeats and sweeps, which would bury the jobs' traces, and
    everything they cause in any service. A trace starts where work enters
    (an HTTP or gRPC request, a span opened by hand); everything else is left
    to `sampler`."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler

    def should_sample(
        self,
        parent_context: context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and kind in _OUTWARD:
            return SamplingResult(Decision.DROP, trace_state=_HOUSEKEEPING)
        if (
            parent.is_valid
            and not parent.trace_flags.sampled
            and parent.trace_state.get("comfyserve") == "housekeeping"
        ):
            return SamplingResult(Decision.DROP, trace_state=parent.trace_state)
        return self._sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"HousekeepingFilter{{{self._sampler.get_description()}}}"


def configure_tracing(
    service: str,
    instrumentors: Iterable[BaseInstrumentor] = (),
    instance: str | None = None,
) -> TracerProvider:
    """Install the global tracer provider and W3C propagation for `service`,
    and instrument aiokafka and the service's own `instrumentors`. Call once,
    before any client, engine or server is made; the provider flushes its
    spans when the process exits."""
    resource = Resource.create(
        {
            SERVICE_NAME: service,
            SERVICE_INSTANCE_ID: instance or f"{socket.gethostname()}-{os.getpid()}",
        }
    )
    provider = TracerProvider(
        resource=resource, sampler=HousekeepingFilter(_get_from_env_or_default())
    )
    if any(os.environ.get(name) for name in _ENDPOINTS):
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    for instrumentor in (AIOKafkaInstrumentor(), *instrumentors):
        instrument(instrumentor, provider)
    return provider


def instrument(instrumentor: BaseInstrumentor, provider: TracerProvider) -> None:
    """Install `instrumentor` as every service does: past the version range it
    declares (those lag their libraries: SQLAlchemy's stops short of 2.1,
    which it traces fine), and for SQLAlchemy without its `connect` spans,
    which it opens at every `Engine.connect` (ten of a job's sixty spans) and
    which say nothing the statements' spans do not."""
    instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
    if isinstance(instrumentor, SQLAlchemyInstrumentor):
        unwrap(Engine, "connect")


def context_from_headers(
    headers: Iterable[tuple[str, bytes | str | None]] | None,
) -> context.Context:
    """The trace context a Kafka record carries, to continue its trace."""
    return propagate.extract(headers_to_carrier(headers))


def inject_headers(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """`headers` with the current span's trace context in place of any
    context they held."""
    carrier = {
        key: value
        for key, value in (headers or {}).items()
        if key not in propagate.get_global_textmap().fields
    }
    propagate.inject(carrier)
    return carrier


def trace_id_hex(span: trace.Span) -> str | None:
    """The span's trace id as W3C writes it; None for an invalid span."""
    span_context = span.get_span_context()
    if not span_context.is_valid:
        return None
    return trace.format_trace_id(span_context.trace_id)


def current_trace_id() -> str | None:
    """The trace id of the current span, if there is one."""
    return trace_id_hex(trace.get_current_span())


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, if there is one."""
    return inject_headers().get(TRACEPARENT)
