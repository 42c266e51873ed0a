"""What one span costs in-process: opened and ended under a parent with a
query's attributes, without a processor and with the `BatchSpanProcessor`
encoding each batch as OTLP protobuf (sent nowhere, so the network is not
measured). Prints, per set-up, the median of five rounds: microseconds per
span on the caller's thread and CPU per span of all threads, export included.

    python -m bench.tracing.spans
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import Attributes

# Below the processor's default queue (2048), so no span is dropped.
SPANS = 2000
ROUNDS = 5
ATTRIBUTES: Attributes = {
    "db.statement": "SELECT jobs.id, jobs.state FROM jobs WHERE jobs.id = $1::UUID",
    "db.system": "postgresql",
    "net.peer.name": "127.0.0.1",
    "net.peer.port": 15432,
}


class EncodingExporter(SpanExporter):
    """Does the OTLP exporter's work up to the request body."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def one_round(exporting: bool) -> tuple[float, float]:
    provider = TracerProvider()
    if exporting:
        provider.add_span_processor(BatchSpanProcessor(EncodingExporter()))
    tracer = provider.get_tracer("bench")
    cpu, wall = time.process_time(), time.perf_counter()
    with tracer.start_as_current_span("parent"):
        for _ in range(SPANS):
            with tracer.start_as_current_span(
                "SELECT", kind=SpanKind.CLIENT, attributes=ATTRIBUTES
            ):
                pass
    wall = time.perf_counter() - wall
    provider.force_flush()
    cpu = time.process_time() - cpu
    provider.shutdown()
    return wall / SPANS * 1e6, cpu / SPANS * 1e6


def main() -> int:
    for name, exporting in (("no processor", False), ("batch + OTLP", True)):
        rounds = [one_round(exporting) for _ in range(ROUNDS)]
        thread = statistics.median(r[0] for r in rounds)
        cpu = statistics.median(r[1] for r in rounds)
        sys.stdout.write(
            f"{name:14} {thread:6.1f} us/span on the thread"
            f"  {cpu:6.1f} us/span CPU, export included\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
