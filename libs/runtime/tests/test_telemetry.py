from __future__ import annotations

from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

from comfyserve.contracts.headers import carrier_to_headers
from comfyserve.runtime.telemetry import (
    HousekeepingFilter,
    context_from_headers,
    inject_headers,
    trace_id_hex,
)

STALE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _tracer() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=HousekeepingFilter(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_a_trace_never_starts_at_a_poll_or_a_message() -> None:
    tracer, exporter = _tracer()
    for kind in (SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER):
        with tracer.start_as_current_span(f"root {kind.name}", kind=kind):
            pass
    with tracer.start_as_current_span("request", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("query", kind=SpanKind.CLIENT):
            pass
    with tracer.start_as_current_span("job run"):
        pass

    assert sorted(s.name for s in exporter.get_finished_spans()) == [
        "job run",
        "query",
        "request",
    ]


def test_what_a_dropped_poll_causes_is_dropped_too_even_with_always_on() -> None:
    tracer, exporter = _tracer()
    # A heartbeat's record, and the consumer that handles it in another service.
    with tracer.start_as_current_span("heartbeat send", kind=SpanKind.PRODUCER):
        headers = carrier_to_headers(inject_headers())
    token = context.attach(context_from_headers(headers))
    try:
        with tracer.start_as_current_span("heartbeat receive", kind=SpanKind.CONSUMER):
            with tracer.start_as_current_span("UPDATE", kind=SpanKind.CLIENT):
                pass
    finally:
        context.detach(token)
    # A caller's unsampled request is still the sampler's to decide.
    unsampled = carrier_to_headers({"traceparent": STALE[:-2] + "00"})
    token = context.attach(context_from_headers(unsampled))
    try:
        with tracer.start_as_current_span("request", kind=SpanKind.SERVER):
            pass
    finally:
        context.detach(token)

    assert [s.name for s in exporter.get_finished_spans()] == ["request"]


def test_headers_carry_the_current_span_not_a_stale_one() -> None:
    tracer, _ = _tracer()
    with tracer.start_as_current_span("publish") as span:
        carrier = inject_headers({"traceparent": STALE, "other": "kept"})

    span_context = span.get_span_context()
    assert carrier["other"] == "kept"
    assert carrier["traceparent"] == (
        f"00-{trace_id_hex(span)}-{trace.format_span_id(span_context.span_id)}"
        f"-{span_context.trace_flags:02x}"
    )


def test_a_record_continues_the_trace_its_headers_name() -> None:
    tracer, exporter = _tracer()
    headers = carrier_to_headers({"traceparent": STALE})

    token = context.attach(context_from_headers(headers))
    try:
        with tracer.start_as_current_span("claim") as span:
            pass
    finally:
        context.detach(token)

    assert trace_id_hex(span) == "0af7651916cd43dd8448eb211c80319c"
    [finished] = exporter.get_finished_spans()
    assert finished.parent is not None
    assert trace.format_span_id(finished.parent.span_id) == "b7ad6b7169203331"


def test_no_trace_id_outside_a_span() -> None:
    assert trace_id_hex(trace.INVALID_SPAN) is None
