import asyncio
import json
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from comfyserve.contracts.events import (
    FailureCode,
    JobCompleted,
    JobCompletedData,
    JobFailed,
    JobFailedData,
    JobProgressData,
    JobProgressed,
    JobStarted,
    JobStartedData,
    JobSubmitted,
    NodeCatalogData,
    NodeCatalogPublished,
    OutputFile,
    OutputKind,
    dump_event,
)
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.contracts.topics import STARTED, dlq
from comfyserve.runtime.kafka import DLQ_REASON_HEADER
from comfyserve.workflow.telemetry import Metrics
from comfyserve.workflow.tracking.consumer import EventConsumer

pytestmark = pytest.mark.integration


def output(file_id: str, index: int = 0) -> OutputFile:
    return OutputFile(
        file_id=file_id,
        node_id="2",
        index=index,
        filename=f"out_{index}.png",
        kind=OutputKind.IMAGE,
        content_type="image/png",
        size=10,
        bucket="comfyserve",
        key=f"outputs/{file_id}",
    )


async def claimed_job(stub, make_workflow, worker_id: str = "w1") -> tuple[str, str]:
    tenant_id = f"tenant-{uuid.uuid4().hex[:8]}"
    job = (
        await stub.SubmitJob(
            pb.SubmitJobRequest(tenant_id=tenant_id, workflow_json=make_workflow())
        )
    ).job
    claim = await stub.ClaimJob(
        pb.ClaimJobRequest(tenant_id=tenant_id, job_id=job.id, worker_id=worker_id)
    )
    assert claim.granted
    return tenant_id, job.id


def get_job(stub, tenant_id: str, job_id: str):
    return lambda: stub.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=job_id))


def progressed(job_id: str, tenant_id: str, outputs: list[OutputFile], step: int):
    return JobProgressed(
        source="test",
        subject=job_id,
        tenant_id=tenant_id,
        data=JobProgressData(
            attempt=1,
            worker_id="w1",
            node_id="1",
            step=step,
            max=10,
            fraction=step / 10,
            nodes_done=0,
            nodes_total=2,
            outputs=outputs,
        ),
    )


async def test_executor_events_drive_the_job_and_duplicates_apply_once(
    stub, executor, eventually, db, make_workflow
):
    tenant_id, job_id = await claimed_job(stub, make_workflow)
    await executor(
        JobStarted(
            source="test",
            subject=job_id,
            tenant_id=tenant_id,
            data=JobStartedData(attempt=1, worker_id="w1", prompt_id="p1"),
        )
    )
    first = output(str(uuid.uuid4()))
    progress = progressed(job_id, tenant_id, [first], step=3)
    await executor(progress)
    await executor(progress)  # re-delivered: same event id
    job = await eventually(
        get_job(stub, tenant_id, job_id),
        lambda job: job.progress.step == 3 and len(job.outputs) == 1,
    )
    assert job.status == pb.JOB_STATUS_RUNNING
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) FROM job_events WHERE job_id = $1", uuid.UUID(job_id)
        ),
        lambda count: count == 2,
    )

    second = output(str(uuid.uuid4()), 1)
    await executor(
        JobCompleted(
            source="test",
            subject=job_id,
            tenant_id=tenant_id,
            data=JobCompletedData(
                attempt=1, worker_id="w1", outputs=[first, second], duration_ms=4000
            ),
        )
    )
    done = await eventually(
        get_job(stub, tenant_id, job_id),
        lambda job: job.status == pb.JOB_STATUS_COMPLETED,
    )
    assert [o.file_id for o in done.outputs] == [first.file_id, second.file_id]
    assert done.duration_seconds == 4.0
    assert done.HasField("completed_at")

    # A progress that arrives after the end is logged and ignored.
    late = progressed(job_id, tenant_id, [output(str(uuid.uuid4()), 2)], step=9)
    await executor(late)
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM job_events WHERE id = $1", late.id),
        lambda count: count == 1,
    )
    after = await get_job(stub, tenant_id, job_id)()
    assert after.status == pb.JOB_STATUS_COMPLETED
    assert [o.file_id for o in after.outputs] == [first.file_id, second.file_id]
    assert after.progress.step == 3


async def test_retryable_failure_requeues_with_the_next_attempt(
    stub, executor, eventually, probe, make_workflow
):
    tenant_id, job_id = await claimed_job(stub, make_workflow)
    await executor(
        JobFailed(
            source="test",
            subject=job_id,
            tenant_id=tenant_id,
            data=JobFailedData(
                attempt=1,
                worker_id="w1",
                code=FailureCode.ENGINE_CRASHED,
                message="ComfyUI exited",
                retryable=True,
            ),
        )
    )
    job = await eventually(
        get_job(stub, tenant_id, job_id),
        lambda job: job.status == pb.JOB_STATUS_PENDING,
    )
    assert job.attempt == 1
    await probe.wait_for(
        job_id,
        lambda _t, e: isinstance(e, JobSubmitted) and e.data.attempt == 2,
    )
    retry = await stub.ClaimJob(
        pb.ClaimJobRequest(tenant_id=tenant_id, job_id=job_id, worker_id="w2")
    )
    assert (retry.granted, retry.attempt) == (True, 2)


async def test_non_retryable_failure_fails_with_its_error(
    stub, executor, eventually, make_workflow
):
    tenant_id, job_id = await claimed_job(stub, make_workflow)
    await executor(
        JobFailed(
            source="test",
            subject=job_id,
            tenant_id=tenant_id,
            data=JobFailedData(
                attempt=1,
                worker_id="w1",
                code=FailureCode.NODE_EXECUTION_ERROR,
                message="bad input",
                node_id="1",
                class_type="EmptyImage",
                traceback="Traceback ...",
                retryable=False,
            ),
        )
    )
    job = await eventually(
        get_job(stub, tenant_id, job_id),
        lambda job: job.status == pb.JOB_STATUS_FAILED,
    )
    assert (job.error.code, job.error.node_id, job.error.class_type) == (
        "node_execution_error",
        "1",
        "EmptyImage",
    )
    assert job.error.message == "bad input"


async def test_events_of_unknown_jobs_and_other_tenants_are_skipped(
    stub, executor, eventually, runtime, make_workflow
):
    tenant_id, job_id = await claimed_job(stub, make_workflow)
    unknown = runtime.metrics.events_applied.labels("unknown_job")
    before = unknown._value.get()
    await executor(
        JobStarted(
            source="test",
            subject=str(uuid.uuid4()),
            data=JobStartedData(attempt=1, worker_id="w1"),
        )
    )
    await executor(
        JobCompleted(
            source="test",
            subject=job_id,
            tenant_id="someone-else",
            data=JobCompletedData(attempt=1, worker_id="w1", outputs=[], duration_ms=1),
        )
    )
    await eventually(lambda: _value(unknown), lambda value: value >= before + 2)
    job = await get_job(stub, tenant_id, job_id)()
    assert job.status == pb.JOB_STATUS_RUNNING


async def _value(counter) -> float:
    return counter._value.get()


async def test_a_pools_catalog_is_recorded_and_replaced_whole(
    executor, eventually, db, catalog_pool
):
    pool = catalog_pool
    stranger = f"stranger-{uuid.uuid4().hex[:6]}"

    async def publish(
        worker_id: str, digest: str, nodes: dict, pool: str = pool
    ) -> None:
        await executor(
            NodeCatalogPublished(
                source="test",
                subject=pool,
                data=NodeCatalogData(
                    worker_id=worker_id,
                    pool=pool,
                    catalog_hash=digest,
                    object_info=nodes,
                ),
            )
        )

    await publish("w-x", "h0", {"Any": {"input": {}, "output": []}}, stranger)
    await publish("w-old", "h1", {"Old": {"input": {}, "output": []}})
    await publish("w-new", "h2", {"New": {"input": {}, "output": []}})

    row = await eventually(
        lambda: db.fetchrow(
            "SELECT catalog_hash, worker_id, object_info FROM pool_catalogs"
            " WHERE pool = $1",
            pool,
        ),
        lambda row: row is not None and row["catalog_hash"] == "h2",
    )
    # One row per pool, whatever number of workers publish: node types the
    # pool no longer offers stop validating.
    assert row["worker_id"] == "w-new"
    assert list(json.loads(row["object_info"])) == ["New"]
    # A pool this deployment does not run never validates a job here.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM pool_catalogs WHERE pool = $1", stranger
        )
        == 0
    )
    await db.execute("DELETE FROM pool_catalogs WHERE pool = $1", pool)


async def test_a_record_a_handler_keeps_failing_on_is_dead_lettered_mid_batch(
    settings, runtime, stub, make_workflow, eventually
):
    topic = f"test.{uuid.uuid4().hex}"
    tenant_id, job_id = await claimed_job(stub, make_workflow)
    before, poison, after = (
        progressed(job_id, tenant_id, [output(str(uuid.uuid4()), i)], step=i)
        for i in (1, 2, 3)
    )

    class OneBuggyEvent:
        async def on_event(self, event):
            if event.id == poison.id:
                raise KeyError("a handler bug")
            return await runtime.tracker.on_event(event)

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"buggy-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    dead = AIOKafkaConsumer(
        dlq(topic),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await producer.start()
    for event in (before, poison, after):
        await producer.send_and_wait(topic, dump_event(event), key=job_id.encode())
    await consumer.start()
    events = EventConsumer(
        consumer=consumer, producer=producer, tracker=OneBuggyEvent(), metrics=Metrics()
    )
    running = asyncio.create_task(events.run())
    try:
        job = await eventually(
            get_job(stub, tenant_id, job_id),
            lambda job: len(job.outputs) == 2,
            within=30,
        )
        assert {o.file_id for o in job.outputs} == {
            before.data.outputs[0].file_id,
            after.data.outputs[0].file_id,
        }
        await dead.start()
        record = await asyncio.wait_for(dead.getone(), 30)
        assert record.value == dump_event(poison)
        assert dict(record.headers)[DLQ_REASON_HEADER].startswith(b"handler failed")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await consumer.stop()
        await dead.stop()
        await producer.stop()


async def test_unparseable_records_go_to_the_dead_letter_topic(settings, eventually):
    marker = uuid.uuid4().hex.encode()
    target = dlq(STARTED)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    await consumer.start()
    try:
        # Make sure the DLQ exists and start reading it from its current end.
        await producer.send_and_wait(target, b"probe", key=b"probe")
        partitions = [
            TopicPartition(target, p) for p in await producer.partitions_for(target)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)
        await producer.send_and_wait(STARTED, b"{not an event", key=marker)

        async def next_dead_letter():
            records = await consumer.getmany(timeout_ms=500)
            return [r for batch in records.values() for r in batch if r.key == marker]

        [record] = await eventually(next_dead_letter, lambda found: len(found) == 1)
        assert record.value == b"{not an event"
        assert dict(record.headers)[DLQ_REASON_HEADER].startswith(b"unparseable")
    finally:
        await consumer.stop()
        await producer.stop()
