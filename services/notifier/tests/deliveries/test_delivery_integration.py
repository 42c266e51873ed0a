"""Deliveries end to end in one notifier: events from real Kafka, rows in real
Postgres, signed requests to a real HTTP receiver verified by the
independent `standardwebhooks` implementation."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from comfyserve.contracts.events import (
    DeliveryDead,
    FinalStatus,
    JobFinished,
    JobFinishedData,
    JobStarted,
    JobStartedData,
    dump_event,
)
from comfyserve.contracts.pb.notifier.v1 import notifier_pb2 as pb
from comfyserve.contracts.topics import dlq
from comfyserve.notifier.app import App
from comfyserve.notifier.deliveries.models import DeliveryFilter
from comfyserve.notifier.settings import Settings
from comfyserve.runtime.kafka import DLQ_REASON_HEADER

from ..conftest import Receiver, eventually

pytestmark = pytest.mark.integration

TENANT = "tenant-a"


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


def finished(
    webhook_url: str | None,
    *,
    status: FinalStatus = FinalStatus.COMPLETED,
    tenant_id: str = TENANT,
) -> JobFinished:
    return JobFinished(
        source="workflow/test",
        subject=f"job-{uuid.uuid4().hex[:8]}",
        tenant_id=tenant_id,
        data=JobFinishedData(
            status=status, attempt=1, output_file_ids=["f1"], webhook_url=webhook_url
        ),
    )


async def publish(
    producer: AIOKafkaProducer, topic: str, event: JobFinished | JobStarted
) -> None:
    await producer.send_and_wait(topic, dump_event(event), key=event.subject.encode())


def _filter(job_id: str) -> DeliveryFilter:
    return DeliveryFilter(job_id=job_id)


async def test_a_finished_job_is_delivered_signed_to_its_url_and_endpoints(
    app: App, client, producer, settings: Settings, receiver: Receiver
) -> None:
    created = await client.CreateEndpoint(
        pb.CreateEndpointRequest(tenant_id=TENANT, url=receiver.url + "?endpoint")
    )
    tenant_secret = await client.GetSigningSecret(
        pb.GetSigningSecretRequest(tenant_id=TENANT)
    )
    event = finished(receiver.url)

    await publish(producer, settings.finished_topic, event)
    await eventually(lambda: len(receiver.succeeded()) == 2, what="two deliveries")

    by_secret = {}
    for request in receiver.received:
        for name, secret in (
            ("endpoint", created.secret),
            ("job", tenant_secret.secret),
        ):
            try:
                body = Webhook(secret).verify(request.body, request.headers)
            except WebhookVerificationError:
                continue  # the other secret signed it
            by_secret[name] = body
    assert set(by_secret) == {"endpoint", "job"}
    body = by_secret["job"]
    assert body["type"] == "job.completed"
    assert body["data"]["execution_id"] == event.subject
    assert body["data"]["outputs"][0]["url"].startswith("http://s3.test/")
    assert body["timestamp"].startswith(event.time.strftime("%Y-%m-%dT%H:%M:%S"))
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(ids) == 2
    assert all(i.startswith("msg_") for i in ids)


async def test_a_redelivered_event_makes_no_second_delivery(
    app: App, producer, settings: Settings, receiver: Receiver
) -> None:
    event = finished(receiver.url)

    await publish(producer, settings.finished_topic, event)
    await publish(producer, settings.finished_topic, event)
    marker = finished(receiver.url)
    await publish(producer, settings.finished_topic, marker)
    await eventually(lambda: len(receiver.succeeded()) >= 2, what="both events")

    async with app.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT job_id, count(*) FROM deliveries GROUP BY job_id")
        )
        counts = {str(job_id): int(n) for job_id, n in rows.all()}
    assert counts == {event.subject: 1, marker.subject: 1}
    assert len(receiver.received) == 2


async def test_a_receiver_down_for_several_windows_gets_one_success_same_id(
    app: App, producer, settings: Settings, receiver: Receiver
) -> None:
    await receiver.stop()
    event = finished(receiver.url)
    await publish(producer, settings.finished_topic, event)

    async def failed_attempts() -> int:
        async with app.engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        text("SELECT coalesce(sum(attempt_count), 0) FROM deliveries")
                    )
                ).scalar_one()
            )

    async def three_failed() -> bool:
        return await failed_attempts() >= 3

    await eventually(three_failed, what="three failed attempts")
    await receiver.start()
    await eventually(lambda: len(receiver.succeeded()) == 1, what="the delivery")

    (delivery,) = (
        await app.deliveries.list(TENANT, _filter(event.subject), 10, "")
    ).deliveries
    full = await app.deliveries.get(TENANT, delivery.id)
    assert full.status == "succeeded"
    assert full.attempt_count >= 4
    assert [a.status_code for a in full.attempts][-1] == 200
    assert all(a.status_code is None and a.error for a in full.attempts[:-1])
    assert receiver.received[0].headers["webhook-id"] == delivery.id
    assert len(receiver.received) == 1


async def test_every_attempt_carries_the_same_webhook_id(
    app: App, producer, settings: Settings, receiver: Receiver
) -> None:
    receiver.statuses = [503, 500, 429]
    event = finished(receiver.url)

    await publish(producer, settings.finished_topic, event)
    await eventually(lambda: len(receiver.succeeded()) == 1, what="the delivery")

    assert [r.status for r in receiver.received] == [503, 500, 429, 200]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1


async def test_retries_run_out_and_the_dead_delivery_is_published(
    app: App, producer, settings: Settings, receiver: Receiver
) -> None:
    receiver.default = 503
    consumer = AIOKafkaConsumer(
        settings.dead_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        event = finished(receiver.url)
        await publish(producer, settings.finished_topic, event)
        record = await consumer.getone()
    finally:
        await consumer.stop()

    dead = DeliveryDead.model_validate_json(record.value)
    assert dead.data.job_id == event.subject
    assert dead.data.reason == "retries exhausted"
    # The first attempt and one retry per step of the schedule.
    assert dead.data.attempts == len(settings.retry_schedule_seconds) + 1
    assert len(receiver.received) == dead.data.attempts
    full = await app.deliveries.get(TENANT, dead.data.delivery_id)
    assert (full.status, full.next_attempt_at) == ("dead", None)


async def test_a_4xx_ends_the_delivery_without_retries(
    app: App, producer, settings: Settings, receiver: Receiver
) -> None:
    receiver.default = 400
    event = finished(receiver.url)

    await publish(producer, settings.finished_topic, event)
    await eventually(lambda: len(receiver.received) == 1, what="the attempt")

    async def dead() -> bool:
        page = await app.deliveries.list(TENANT, _filter(event.subject), 10, "")
        return page.deliveries[0].status == "dead"

    await eventually(dead, what="the delivery dying")
    assert len(receiver.received) == 1


async def test_410_disables_the_endpoint(
    app: App, client, producer, settings: Settings, receiver: Receiver
) -> None:
    receiver.default = 410
    created = await client.CreateEndpoint(
        pb.CreateEndpointRequest(tenant_id=TENANT, url=receiver.url)
    )

    await publish(producer, settings.finished_topic, finished(None))

    async def disabled() -> bool:
        found = await client.GetEndpoint(
            pb.GetEndpointRequest(tenant_id=TENANT, endpoint_id=created.endpoint.id)
        )
        return not found.enabled and found.disabled_reason == "gone"

    await eventually(disabled, what="the endpoint being disabled")
    receiver.default = 200
    await publish(producer, settings.finished_topic, finished(None))
    marker = finished(receiver.url)
    await publish(producer, settings.finished_topic, marker)
    await eventually(lambda: len(receiver.succeeded()) == 1, what="the marker")
    # Only the marker's own webhook_url: the disabled endpoint got nothing.
    assert len(receiver.received) == 2


async def test_replay_sends_the_same_payload_and_id_as_a_new_attempt(
    app: App, client, producer, settings: Settings, receiver: Receiver
) -> None:
    event = finished(receiver.url)
    await publish(producer, settings.finished_topic, event)
    await eventually(lambda: len(receiver.succeeded()) == 1, what="the delivery")
    first = receiver.received[0]

    replayed = await client.ReplayDelivery(
        pb.ReplayDeliveryRequest(
            tenant_id=TENANT, delivery_id=first.headers["webhook-id"]
        )
    )
    assert replayed.status == pb.DELIVERY_STATUS_PENDING
    await eventually(lambda: len(receiver.succeeded()) == 2, what="the replay")

    second = receiver.received[1]
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert json.loads(second.body) == json.loads(first.body)
    full = await client.GetDelivery(
        pb.GetDeliveryRequest(tenant_id=TENANT, delivery_id=replayed.id)
    )
    assert [a.number for a in full.attempts] == [1, 2]
    assert [a.status_code for a in full.attempts] == [200, 200]
    assert full.attempts[0].response_excerpt == "answered 200"


async def test_started_goes_only_to_endpoints_that_ask_for_it(
    app: App, client, producer, settings: Settings, receiver: Receiver
) -> None:
    await client.CreateEndpoint(
        pb.CreateEndpointRequest(tenant_id=TENANT, url=receiver.url + "?all")
    )
    await client.CreateEndpoint(
        pb.CreateEndpointRequest(
            tenant_id=TENANT, url=receiver.url + "?started", event_types=["job.started"]
        )
    )
    started = JobStarted(
        source="executor/test",
        subject="job-s",
        tenant_id=TENANT,
        data=JobStartedData(attempt=1, worker_id="w1"),
    )

    await publish(producer, settings.started_topic, started)
    await publish(producer, settings.finished_topic, finished(None))
    await eventually(lambda: len(receiver.received) == 2, what="two deliveries")

    types = sorted(json.loads(r.body)["type"] for r in receiver.received)
    assert types == ["job.completed", "job.started"]


async def test_a_record_that_can_never_apply_goes_to_the_dlq_and_the_rest_flow(
    app: App, producer, settings: Settings, receiver: Receiver
) -> None:
    consumer = AIOKafkaConsumer(
        dlq(settings.finished_topic),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await producer.send_and_wait(settings.finished_topic, b"not an event")
        await publish(producer, settings.finished_topic, finished(receiver.url))
        record = await consumer.getone()
        await eventually(lambda: len(receiver.succeeded()) == 1, what="the next")
    finally:
        await consumer.stop()

    assert record.value == b"not an event"
    assert dict(record.headers)[DLQ_REASON_HEADER].startswith(b"unparseable")


async def test_metrics_show_attempts_latency_backlog_and_dead(
    app: App, producer, settings: Settings, receiver: Receiver
) -> None:
    receiver.statuses = [503]
    await publish(producer, settings.finished_topic, finished(receiver.url))
    await eventually(lambda: len(receiver.succeeded()) == 1, what="the delivery")

    async def scraped() -> str:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{app.metrics_port}/metrics")
        return answer.text

    async def counted() -> bool:
        return 'notifier_delivery_attempts_total{outcome="succeeded"} 1.0' in (
            await scraped()
        )

    await eventually(counted, what="the success counted")
    text_ = await scraped()
    assert 'notifier_delivery_attempts_total{outcome="retry"} 1.0' in text_
    assert "notifier_delivery_attempt_duration_seconds_count 2.0" in text_
    assert "notifier_deliveries_due " in text_
    assert "notifier_deliveries_dead_total 0.0" in text_
