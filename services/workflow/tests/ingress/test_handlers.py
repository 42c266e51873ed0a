"""The submit-requested subscriber in FastStream's in-memory broker: what each
outcome publishes, and what an outage or a bug does to the record."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import TestKafkaBroker
from sqlalchemy.exc import OperationalError

from comfyserve.contracts.events import (
    JobRejected,
    JobRejectedData,
    RejectionCode,
    parse_event,
)
from comfyserve.contracts.topics import REJECTED, dlq
from comfyserve.runtime.consumer import Record
from comfyserve.runtime.kafka import DLQ_REASON_HEADER
from comfyserve.workflow.ingress.handlers import create_broker, subscribe
from comfyserve.workflow.ingress.service import (
    Accepted,
    Command,
    Outcome,
    Refused,
    Unreadable,
)
from comfyserve.workflow.settings import Settings
from comfyserve.workflow.telemetry import Metrics


class FakeIngress:
    """Answers `outcome` (or raises `error`) and keeps the commands it saw."""

    def __init__(
        self, outcome: Outcome | None = None, error: Exception | None = None
    ) -> None:
        self.commands: list[Command] = []
        self.outcome = outcome or Accepted(job_id="j1", replayed=False)
        self.error = error

    async def on_submit_requested(self, command: Command) -> Outcome:
        self.commands.append(command)
        if self.error is not None:
            raise self.error
        return self.outcome


def settings() -> Settings:
    unique = uuid.uuid4().hex[:12]
    return Settings(
        ingress_topic=f"test.ingress.{unique}",
        consumer_group=f"test.{unique}",
        require_credentials=False,
    )


class Kept:
    """Subscribes the broker to `topic` and keeps the records that arrive."""

    def __init__(self, broker, topic: str) -> None:
        self.records: list = []
        broker.subscriber(topic, decoder=self._raw)(self._keep)

    async def _raw(self, message) -> bytes:
        return message.body

    async def _keep(self, body: bytes, record: Record) -> None:
        self.records.append(record)


def refused() -> Refused:
    return Refused(
        JobRejected(
            source="workflow/t",
            subject="req-1",
            tenant_id="t1",
            data=JobRejectedData(
                request_id="req-1", code=RejectionCode.QUEUE_FULL, message="full"
            ),
        )
    )


def counted(metrics: Metrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value(
        "workflow_ingress_commands_total", {"outcome": outcome}
    )


async def test_the_credential_of_the_authorization_header_reaches_the_service() -> None:
    config = settings()
    broker = create_broker(config)
    ingress = FakeIngress()
    metrics = Metrics()
    subscribe(broker, config, ingress, metrics)
    rejected = Kept(broker, REJECTED)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            b"{}",
            topic=config.ingress_topic,
            key=b"req-1",
            headers={"authorization": "Bearer csk_team"},
        )
    assert ingress.commands == [Command(b"{}", b"req-1", "csk_team")]
    assert rejected.records == []
    assert counted(metrics, "accepted") == 1


async def test_a_refusal_is_published_as_a_rejected_event() -> None:
    config = settings()
    broker = create_broker(config)
    metrics = Metrics()
    subscribe(broker, config, FakeIngress(refused()), metrics)
    rejected = Kept(broker, REJECTED)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b"{}", topic=config.ingress_topic, key=b"req-1")
    [record] = rejected.records
    event = parse_event(record.value)
    assert isinstance(event, JobRejected)
    assert record.key == b"req-1"
    assert event.data.code is RejectionCode.QUEUE_FULL
    assert counted(metrics, "rejected") == 1


async def test_an_unreadable_record_goes_to_the_dlq_without_its_credential() -> None:
    config = settings()
    broker = create_broker(config)
    subscribe(broker, config, FakeIngress(Unreadable("unparseable")), Metrics())
    dead = Kept(broker, dlq(config.ingress_topic))
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            b"x",
            topic=config.ingress_topic,
            headers={"authorization": "Bearer csk_team", "traceparent": "00-x"},
        )
    [record] = dead.records
    headers = dict(record.headers)
    assert headers[DLQ_REASON_HEADER] == b"unparseable"
    assert headers["traceparent"] == b"00-x"
    assert "authorization" not in headers


async def test_an_outage_is_retried_and_publishes_nothing() -> None:
    config = settings()
    broker = create_broker(config)
    metrics = Metrics()
    error = OperationalError("select", {}, OSError("down"))
    subscribe(broker, config, FakeIngress(error=error), metrics, retry_seconds=0)
    rejected = Kept(broker, REJECTED)
    dead = Kept(broker, dlq(config.ingress_topic))
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b"{}", topic=config.ingress_topic, key=b"req-1")
    assert (rejected.records, dead.records) == ([], [])
    assert (
        metrics.registry.get_sample_value(
            "workflow_consumer_errors_total", {"outcome": "retried"}
        )
        == 1
    )


class FlakyIngress(FakeIngress):
    """Raises `error` while `outage` is set, then accepts."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.failure = error
        self.outage = asyncio.Event()
        self.outage.set()

    async def on_submit_requested(self, command: Command) -> Outcome:
        self.commands.append(command)
        if self.outage.is_set():
            raise self.failure
        return self.outcome


async def eventually(check, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


@pytest.mark.integration
async def test_an_outage_holds_the_command_uncommitted_until_it_is_accepted(
    stack,
) -> None:
    bootstrap = stack["KAFKA_BOOTSTRAP_SERVERS"]
    config = settings().model_copy(update={"kafka_bootstrap_servers": bootstrap})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await admin.start()
    await producer.start()
    ingress = FlakyIngress(OperationalError("SELECT 1", {}, ConnectionRefusedError()))
    broker = create_broker(config)
    subscribe(broker, config, ingress, Metrics(), retry_seconds=0.05)
    try:
        await admin.create_topics([NewTopic(config.ingress_topic, 1, 1)])
        await broker.start()
        await producer.send_and_wait(config.ingress_topic, b"{}", key=b"req-1")

        async def offset() -> int | None:
            group = config.ingress_consumer_group
            offsets = await admin.list_consumer_group_offsets(group)
            return next((meta.offset for meta in offsets.values()), None)

        async def retried() -> bool:
            return len(ingress.commands) >= 3

        await eventually(retried)
        assert await offset() is None
        ingress.outage.clear()

        async def committed_past_it() -> bool:
            return await offset() == 1

        await eventually(committed_past_it)
    finally:
        await broker.stop()
        await producer.stop()
        await admin.delete_topics([config.ingress_topic])
        await admin.close()
    assert {command.key for command in ingress.commands} == {b"req-1"}
