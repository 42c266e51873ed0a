"""A delivery joins the trace of the event it was recorded from: the consumer
span continues the record's `traceparent`, and every attempt, replays too,
runs in a span whose parent is that consumer span, read back from Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from comfyserve.contracts.events import (
    FinalStatus,
    JobFinished,
    JobFinishedData,
    dump_event,
)
from comfyserve.notifier.app import App, running
from comfyserve.notifier.deliveries.models import DeliveryFilter
from comfyserve.notifier.settings import Settings

from ..conftest import Receiver, eventually
from ..support import FakeJobs

pytestmark = pytest.mark.integration

TENANT = "tenant-t"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(
    settings: Settings, jobs: FakeJobs, exporter: InMemorySpanExporter
) -> AsyncIterator[App]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with running(settings, jobs=jobs, tracer_provider=provider) as started:
        yield started


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def publish_finished(
    producer: AIOKafkaProducer,
    settings: Settings,
    webhook_url: str,
    traceparent: str | None,
) -> JobFinished:
    event = JobFinished(
        source="workflow/test",
        subject=f"job-{uuid.uuid4().hex[:8]}",
        tenant_id=TENANT,
        data=JobFinishedData(
            status=FinalStatus.COMPLETED, attempt=1, webhook_url=webhook_url
        ),
    )
    headers = [] if traceparent is None else [("traceparent", traceparent.encode())]
    await producer.send_and_wait(
        settings.finished_topic,
        dump_event(event),
        key=event.subject.encode(),
        headers=headers,
    )
    return event


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_attempts_and_replays_are_children_of_the_stored_context(
    traced: App,
    producer: AIOKafkaProducer,
    settings: Settings,
    receiver: Receiver,
    exporter: InMemorySpanExporter,
) -> None:
    # A secret in the query, as receivers put them: no span may show it.
    url = f"{receiver.url}?token=s3cret-token"
    event = await publish_finished(
        producer, settings, url, f"00-{TRACE_ID}-{PRODUCER_SPAN}-01"
    )
    await eventually(
        lambda: len(named(exporter, "webhook.deliver")) == 1, what="the attempt"
    )

    [consumed] = named(exporter, f"notifier.event.record {settings.finished_topic}")
    assert consumed.kind is SpanKind.CONSUMER
    assert format_trace_id(consumed.context.trace_id) == TRACE_ID
    assert consumed.parent is not None
    assert format_span_id(consumed.parent.span_id) == PRODUCER_SPAN
    assert (consumed.attributes or {})["comfyserve.job.id"] == event.subject

    [delivery] = (await traced.deliveries.list(TENANT, _for(event), 10, "")).deliveries
    assert delivery.traceparent == (
        f"00-{TRACE_ID}-{format_span_id(consumed.context.span_id)}-01"
    )
    await traced.deliveries.replay(TENANT, delivery.id)
    await eventually(
        lambda: len(named(exporter, "webhook.deliver")) == 2, what="the replay"
    )

    attempts = named(exporter, "webhook.deliver")
    for number, span in enumerate(attempts, start=1):
        assert span.context.trace_id == consumed.context.trace_id
        assert span.parent is not None
        assert span.parent.span_id == consumed.context.span_id
        assert dict(span.attributes or {}) == {
            "comfyserve.delivery.id": delivery.id,
            "comfyserve.delivery.attempt": number,
            "comfyserve.event.type": "job.completed",
            "comfyserve.job.id": event.subject,
            "http.response.status_code": 200,
            "comfyserve.delivery.outcome": "succeeded",
        }
    assert [r.headers["webhook-id"] for r in receiver.received] == [delivery.id] * 2
    assert not [
        span.name
        for span in exporter.get_finished_spans()
        for value in (span.attributes or {}).values()
        if "s3cret" in str(value)
    ]


async def test_an_event_without_a_trace_is_delivered_in_a_trace_of_its_own(
    traced: App,
    producer: AIOKafkaProducer,
    settings: Settings,
    receiver: Receiver,
    exporter: InMemorySpanExporter,
) -> None:
    event = await publish_finished(producer, settings, receiver.url, None)
    await eventually(
        lambda: len(named(exporter, "webhook.deliver")) == 1, what="the attempt"
    )

    [delivery] = (await traced.deliveries.list(TENANT, _for(event), 10, "")).deliveries
    assert delivery.traceparent is None
    [attempt] = named(exporter, "webhook.deliver")
    assert attempt.parent is None


def _for(event: JobFinished) -> DeliveryFilter:
    return DeliveryFilter(job_id=event.subject)
