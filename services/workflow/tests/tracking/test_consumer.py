"""The consumer loop against hand-written Kafka and tracker fakes."""

import asyncio
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from sqlalchemy.exc import OperationalError

from comfyserve.contracts.events import JobStarted, JobStartedData, dump_event
from comfyserve.contracts.topics import STARTED, dlq
from comfyserve.runtime.kafka import DLQ_REASON_HEADER
from comfyserve.workflow.telemetry import Metrics
from comfyserve.workflow.tracking.consumer import EventConsumer
from comfyserve.workflow.tracking.service import Outcome

PARTITION = TopicPartition(STARTED, 0)


@dataclass
class Record:
    value: bytes
    offset: int
    topic: str = STARTED
    partition: int = 0
    key: bytes = b"job"
    headers: list = field(default_factory=list)


class FakeKafkaConsumer:
    def __init__(self, records: list[Record]) -> None:
        self.records = records
        self.position = 0
        self.commits: list[int] = []

    async def getmany(self, timeout_ms: int, max_records: int):
        pending = [r for r in self.records if r.offset >= self.position]
        self.position = len(self.records)
        return {PARTITION: pending} if pending else {}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.position = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets[PARTITION])


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, list]] = []

    async def send(self, topic: str, value: bytes, key: bytes, headers: list):
        self.sent.append((topic, value, headers))

        async def acknowledged() -> None:
            return None

        return acknowledged()


class FlakyTracker:
    """Fails with a database outage `failures` times, then applies events."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.applied: list[str] = []

        self.batches: list[int] = []

    async def on_event(self, event) -> Outcome:
        [outcome] = await self.on_events([event])
        return outcome

    async def on_events(self, events) -> list[Outcome]:
        if self.failures:
            self.failures -= 1
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError())
        self.batches.append(len(events))
        self.applied.extend(str(event.id) for event in events)
        return [Outcome.APPLIED for _ in events]


def started_record(offset: int) -> Record:
    event = JobStarted(
        source="test", subject="job", data=JobStartedData(attempt=1, worker_id="w")
    )
    return Record(dump_event(event), offset)


class SlowCommitKafkaConsumer(FakeKafkaConsumer):
    def __init__(self, records: list[Record]) -> None:
        super().__init__(records)
        self.release = asyncio.Event()

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await self.release.wait()
        await super().commit(offsets)


async def drive(consumer: EventConsumer, kafka: FakeKafkaConsumer, rounds: int) -> None:
    for _ in range(rounds):
        batch = await kafka.getmany(timeout_ms=0, max_records=10)
        await consumer.consume(batch)
        await consumer.flush()


async def test_a_database_outage_retries_without_committing():
    kafka = FakeKafkaConsumer([started_record(0), started_record(1)])
    tracker = FlakyTracker(failures=2)
    consumer = EventConsumer(
        consumer=kafka, producer=FakeProducer(), tracker=tracker, metrics=Metrics()
    )

    await drive(consumer, kafka, rounds=1)
    assert kafka.commits == []
    assert kafka.position == 0

    await drive(consumer, kafka, rounds=2)
    assert len(tracker.applied) == 2
    assert kafka.commits[-1] == 2


async def test_a_batch_applies_together_and_commits_once_after_it():
    kafka = SlowCommitKafkaConsumer([started_record(i) for i in range(3)])
    tracker = FlakyTracker(failures=0)
    consumer = EventConsumer(
        consumer=kafka, producer=FakeProducer(), tracker=tracker, metrics=Metrics()
    )

    assert await consumer.consume(await kafka.getmany(timeout_ms=0, max_records=10))
    assert tracker.batches == [3]
    assert kafka.commits == []

    kafka.release.set()
    await asyncio.wait_for(consumer.flush(), 5)
    assert kafka.commits == [3]


async def test_a_failed_batch_goes_record_by_record_and_retries_from_the_failure():
    kafka = FakeKafkaConsumer([started_record(i) for i in range(3)])
    # The batch fails, then its first record alone; the second round applies
    # the batch whole.
    tracker = FlakyTracker(failures=2)
    consumer = EventConsumer(
        consumer=kafka, producer=FakeProducer(), tracker=tracker, metrics=Metrics()
    )

    await drive(consumer, kafka, rounds=1)
    assert (kafka.commits, kafka.position) == ([], 0)

    await drive(consumer, kafka, rounds=1)
    assert tracker.batches == [3]
    assert kafka.commits == [3]


async def test_unparseable_records_are_dead_lettered_and_committed():
    kafka = FakeKafkaConsumer([Record(b"not json", 0), started_record(1)])
    producer = FakeProducer()
    tracker = FlakyTracker(failures=0)
    consumer = EventConsumer(
        consumer=kafka, producer=producer, tracker=tracker, metrics=Metrics()
    )

    await drive(consumer, kafka, rounds=1)

    [(topic, value, headers)] = producer.sent
    assert (topic, value) == (dlq(STARTED), b"not json")
    assert dict(headers)[DLQ_REASON_HEADER].startswith(b"unparseable")
    assert tracker.batches == [1]
    assert kafka.commits == [2]


async def test_a_batch_is_applied_before_its_commit_is_acknowledged():
    kafka = SlowCommitKafkaConsumer([started_record(0)])
    tracker = FlakyTracker(failures=0)
    consumer = EventConsumer(
        consumer=kafka, producer=FakeProducer(), tracker=tracker, metrics=Metrics()
    )

    assert await consumer.consume(await kafka.getmany(timeout_ms=0, max_records=10))
    assert len(tracker.applied) == 1
    assert kafka.commits == []

    kafka.release.set()
    await asyncio.wait_for(consumer.flush(), 5)
    assert kafka.commits == [1]


class BuggyTracker:
    """Raises an unexpected error (a bug, not an outage) for one event id."""

    def __init__(self, poisoned: str) -> None:
        self.poisoned = poisoned
        self.applied: list[str] = []
        self.calls = 0

    async def on_event(self, event) -> Outcome:
        [outcome] = await self.on_events([event])
        return outcome

    async def on_events(self, events) -> list[Outcome]:
        self.calls += 1
        if any(str(event.id) == self.poisoned for event in events):
            raise KeyError("a handler bug")
        self.applied.extend(str(event.id) for event in events)
        return [Outcome.APPLIED for _ in events]


async def test_a_record_whose_handler_keeps_failing_is_dead_lettered_not_skipped():
    records = [started_record(0), started_record(1), started_record(2)]
    bad = str(JobStarted.model_validate_json(records[1].value).id)
    kafka = FakeKafkaConsumer(records)
    producer = FakeProducer()
    tracker = BuggyTracker(poisoned=bad)
    consumer = EventConsumer(
        consumer=kafka, producer=producer, tracker=tracker, metrics=Metrics()
    )

    await drive(consumer, kafka, rounds=1)
    # The first record applies and commits; the bug stops the batch there.
    assert kafka.commits == [1]
    assert kafka.position == 1

    await drive(consumer, kafka, rounds=3)

    good = [str(JobStarted.model_validate_json(r.value).id) for r in records]
    assert tracker.applied == [good[0], good[2]]
    [(topic, value, headers)] = producer.sent
    assert (topic, value) == (dlq(STARTED), records[1].value)
    assert dict(headers)[DLQ_REASON_HEADER] == b"handler failed 3 times: KeyError"
    assert kafka.commits[-1] == 3
