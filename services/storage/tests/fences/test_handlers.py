"""The finished-topic subscriber: in FastStream's in-memory broker for what a
record becomes, and on the real Kafka for retries, commits and the DLQ."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import TestKafkaBroker
from sqlalchemy.exc import IntegrityError, OperationalError

from comfyserve.contracts.events import (
    FinalStatus,
    JobFinished,
    JobFinishedData,
    dump_event,
)
from comfyserve.contracts.topics import dlq
from comfyserve.runtime.kafka import DLQ_REASON_HEADER
from comfyserve.storage.errors import InvalidArgument
from comfyserve.storage.fences.handlers import Record, create_broker, subscribe
from comfyserve.storage.fences.models import FenceReport, FinishedJob
from comfyserve.storage.objects import ObjectStoreError
from comfyserve.storage.settings import Settings
from comfyserve.storage.telemetry import Metrics


class FakeFinishedJobs:
    """Records each job end; raises `error` while `outage` is set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.seen: list[FinishedJob] = []
        self.error = error
        self.outage = asyncio.Event()
        if error is not None:
            self.outage.set()

    async def on_job_finished(self, finished: FinishedJob) -> FenceReport:
        self.seen.append(finished)
        if self.error is not None and self.outage.is_set():
            raise self.error
        return FenceReport(attempt=finished.attempt, deleted=1, failed=0)


def settings(**changes) -> Settings:
    unique = uuid.uuid4().hex[:12]
    values = {
        "database_url": "postgresql://u:p@db/x",
        "s3_endpoint": "s3:9000",
        "s3_access_key": "a",
        "s3_secret_key": "s",
        "s3_bucket": "files",
        "finished_topic": f"test.storage.{unique}.finished",
        "consumer_group": f"test.storage.{unique}",
    }
    values.update(changes)
    return Settings.model_validate(values)


def finished_event(job_id: str = "job1", **changes) -> JobFinished:
    values = {
        "source": "test",
        "subject": job_id,
        "tenant_id": "tenant1",
        "data": JobFinishedData(status=FinalStatus.COMPLETED, attempt=2),
    }
    values.update(changes)
    return JobFinished(**values)


class DeadLetters:
    """Subscribes the broker to the DLQ of `topic` and keeps what arrives."""

    def __init__(self, broker, topic: str) -> None:
        self.records: list = []
        broker.subscriber(dlq(topic), decoder=self._raw)(self._keep)

    async def _raw(self, message) -> bytes:
        return message.body

    async def _keep(self, body: bytes, record: Record) -> None:
        self.records.append(record)


async def test_a_finished_event_reaches_the_service() -> None:
    config = settings()
    broker = create_broker(config)
    jobs = FakeFinishedJobs()
    metrics = Metrics()
    subscribe(broker, config, jobs, metrics)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            dump_event(finished_event()), topic=config.finished_topic, key=b"job1"
        )
    assert jobs.seen == [FinishedJob(job_id="job1", tenant_id="tenant1", attempt=2)]
    assert metrics.registry.get_sample_value("storage_fenced_jobs_total") == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json{", "unparseable"),
        (b'{"type": "workflow.job.submitted.v2"}', "unparseable"),
        (dump_event(finished_event(tenant_id=None)), "tenant_id: missing"),
    ],
)
async def test_a_record_that_cannot_apply_goes_to_the_dlq(body, reason) -> None:
    config = settings()
    broker = create_broker(config)
    jobs = FakeFinishedJobs()
    subscribe(broker, config, jobs, Metrics())
    dead = DeadLetters(broker, config.finished_topic)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            body, topic=config.finished_topic, headers={"traceparent": "00-x"}
        )
    [record] = dead.records
    headers = dict(record.headers)
    assert headers[DLQ_REASON_HEADER].decode().startswith(reason)
    assert headers["traceparent"] == b"00-x"
    assert record.value == body
    assert jobs.seen == []


@pytest.mark.parametrize(
    "error",
    [
        InvalidArgument("job_id", "must be 1-128 letters"),
        IntegrityError("INSERT", {}, Exception("value too long")),
    ],
)
async def test_values_the_service_refuses_go_to_the_dlq(error) -> None:
    config = settings()
    broker = create_broker(config)
    subscribe(broker, config, FakeFinishedJobs(error), Metrics())
    dead = DeadLetters(broker, config.finished_topic)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            dump_event(finished_event()), topic=config.finished_topic
        )
    assert len(dead.records) == 1


async def eventually(check, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


@pytest.fixture
async def kafka(stack):
    producer = AIOKafkaProducer(bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"])
    admin = AIOKafkaAdminClient(bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"])
    await producer.start()
    await admin.start()
    try:
        yield producer, admin
    finally:
        await producer.stop()
        await admin.close()


async def committed(admin, group: str) -> int | None:
    offsets = await admin.list_consumer_group_offsets(group)
    return next((meta.offset for meta in offsets.values()), None)


@pytest.mark.integration
@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, ConnectionRefusedError()),
        ObjectStoreError("the store is down"),
    ],
    ids=["database", "object-store"],
)
async def test_an_outage_retries_the_record_without_committing_it(
    stack, kafka, test_topics, error
) -> None:
    producer, admin = kafka
    config = settings(kafka_bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"])
    await test_topics.create(config.finished_topic)
    jobs = FakeFinishedJobs(error)
    broker = create_broker(config)
    subscribe(broker, config, jobs, Metrics(), retry_seconds=0.05)
    await broker.start()
    try:
        await producer.send_and_wait(
            config.finished_topic, dump_event(finished_event()), key=b"job1"
        )

        async def retried() -> bool:
            return len(jobs.seen) >= 3

        await eventually(retried)
        assert await committed(admin, config.consumer_group) is None
        jobs.outage.clear()

        async def committed_past_it() -> bool:
            return await committed(admin, config.consumer_group) == 1

        await eventually(committed_past_it)
    finally:
        await broker.stop()
    assert {job.job_id for job in jobs.seen} == {"job1"}


@pytest.mark.integration
async def test_a_poison_record_is_dead_lettered_and_committed(
    stack, kafka, test_topics
) -> None:
    producer, admin = kafka
    bootstrap = stack["KAFKA_BOOTSTRAP_SERVERS"]
    config = settings(kafka_bootstrap_servers=bootstrap)
    await test_topics.create(config.finished_topic, dlq(config.finished_topic))
    jobs = FakeFinishedJobs()
    broker = create_broker(config)
    subscribe(broker, config, jobs, Metrics())
    await broker.start()
    try:
        await producer.send_and_wait(config.finished_topic, b"not json{", key=b"k")
        await producer.send_and_wait(
            config.finished_topic, dump_event(finished_event()), key=b"job1"
        )

        async def both_handled() -> bool:
            return await committed(admin, config.consumer_group) == 2

        await eventually(both_handled)
    finally:
        await broker.stop()
    assert [job.job_id for job in jobs.seen] == ["job1"]

    consumer = AIOKafkaConsumer(
        dlq(config.finished_topic),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"k", b"not json{")
    assert dict(record.headers)[DLQ_REASON_HEADER].startswith(b"unparseable")


async def test_a_record_whose_handler_keeps_failing_is_dead_lettered() -> None:
    # A bug, not an outage: retried a few times with a pause, then put aside.
    config = settings()
    broker = create_broker(config)
    jobs = FakeFinishedJobs(KeyError("a handler bug"))
    subscribe(broker, config, jobs, Metrics(), retry_seconds=0)
    dead = DeadLetters(broker, config.finished_topic)
    async with TestKafkaBroker(broker) as test_broker:
        for _ in range(3):
            # The in-memory broker does not redeliver a nacked record: each
            # publish stands for one redelivery (same partition and offset).
            await test_broker.publish(
                dump_event(finished_event()), topic=config.finished_topic, key=b"j"
            )
    assert len(jobs.seen) == 3
    [record] = dead.records
    assert dict(record.headers)[DLQ_REASON_HEADER] == (
        b"handler failed 3 times: KeyError"
    )
