"""A whole worker against real Kafka, S3 and a managed ComfyUI (model-free nodes
on the CPU); the workflow and storage services are small in-process fakes."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from minio import Minio
from PIL import Image
from pydantic import ValidationError

from comfyserve.contracts.events import (
    InputFile,
    JobCancelRequested,
    JobCancelRequestedData,
    JobSubmitted,
    JobSubmittedData,
    Priority,
    dump_event,
    parse_event,
)
from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as st_grpc
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc as wf_grpc
from comfyserve.contracts.topics import (
    CANCEL_REQUESTED,
    HEARTBEAT,
    JOB_EVENT_TOPICS,
    NODE_CATALOG,
    SUBMITTED_IN_DRAIN_ORDER,
    SUBMITTED_LOW,
    dlq,
    topic_for,
)
from comfyserve.executor.app import ExecutorApp
from comfyserve.executor.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TENANT = "tenant-it"
WAIT_S = 120.0


class FakeWorkflow(wf_grpc.WorkflowServiceServicer):
    """Grants each known job once, like a pending job's first claim."""

    def __init__(self) -> None:
        self.jobs: set[str] = set()
        self.claims: list[str] = []

    async def ClaimJob(self, request, context):
        self.claims.append(request.job_id)
        if request.job_id not in self.jobs or request.tenant_id != TENANT:
            return wf.ClaimJobResponse(granted=False, reason="unknown job")
        if self.claims.count(request.job_id) > 1:
            return wf.ClaimJobResponse(granted=False, reason="already running")
        return wf.ClaimJobResponse(granted=True, attempt=1)


class FakeStorage(st_grpc.StorageServiceServicer):
    """File records in memory, bytes in S3 behind presigned URLs."""

    def __init__(self, s3: Minio, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.files: dict[str, st.FileInfo] = {}

    def add_input(self, data: bytes, filename: str) -> InputFile:
        file_id = uuid.uuid4().hex
        key = f"inputs/{TENANT}/{file_id}"
        self.s3.put_object(self.bucket, key, io.BytesIO(data), len(data))
        self.files[file_id] = st.FileInfo(
            id=file_id, tenant_id=TENANT, key=key, bucket=self.bucket, size=len(data)
        )
        return InputFile(
            file_id=file_id,
            node_id="1",
            input_name="image",
            filename=filename,
            bucket=self.bucket,
            key=key,
            content_type="image/png",
            size=len(data),
        )

    async def CreateUpload(self, request, context):
        file_id = uuid.uuid4().hex
        key = (
            f"outputs/{request.tenant_id}/{request.job_id}/{request.node_id}/"
            f"{request.index}-{request.filename}"
        )
        info = st.FileInfo(
            id=file_id,
            tenant_id=request.tenant_id,
            purpose=request.purpose,
            filename=request.filename,
            content_type=request.content_type,
            size=request.size,
            sha256=request.sha256,
            bucket=self.bucket,
            key=key,
            job_id=request.job_id,
            node_id=request.node_id,
            index=request.index,
            state=st.FILE_STATE_PENDING,
        )
        self.files[file_id] = info
        url = self.s3.presigned_put_object(self.bucket, key, timedelta(minutes=10))
        return st.CreateUploadResponse(file=info, upload_url=url)

    async def CompleteUpload(self, request, context):
        info = self.files.get(request.file_id)
        if info is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such file")
        stat = await asyncio.to_thread(self.s3.stat_object, self.bucket, info.key)
        info.size = stat.size
        info.state = st.FILE_STATE_READY
        if request.HasField("width"):
            info.width, info.height = request.width, request.height
        return info

    async def GetDownloadUrl(self, request, context):
        info = self.files.get(request.file_id)
        if info is None or info.tenant_id != request.tenant_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such file")
        url = self.s3.presigned_get_object(self.bucket, info.key, timedelta(minutes=5))
        return st.DownloadUrl(file_id=info.id, url=url)


class Events:
    """Executor events of this module's jobs, read from the topics' ends."""

    def __init__(self, bootstrap: str, partitions: list[TopicPartition]) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        self.partitions = partitions
        self.by_job: dict[str, list[Any]] = defaultdict(list)
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        partitions = self.partitions
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self.consumer.position(tp)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for record in self.consumer:
            try:
                event = parse_event(record.value)
            except ValidationError:
                # The topics are shared; other producers' records are not ours.
                continue
            async with self.changed:
                self.by_job[event.subject].append(event)
                self.changed.notify_all()

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()

    def types(self, job_id: str) -> list[str]:
        return [event.type.split(".")[-1] for event in self.by_job[job_id]]

    async def wait_for(self, job_id: str, kind: str) -> Any:
        def found() -> Any:
            return next(
                (e for e in self.by_job[job_id] if e.type.endswith(f".{kind}")), None
            )

        async with asyncio.timeout(WAIT_S), self.changed:
            await self.changed.wait_for(lambda: found() is not None)
            return found()

    async def wait_final(self, job_id: str) -> Any:
        async with asyncio.timeout(WAIT_S), self.changed:
            await self.changed.wait_for(lambda: self.final(job_id) is not None)
            return self.final(job_id)

    def final(self, job_id: str) -> Any:
        finals = ("completed", "failed", "cancelled")
        return next(
            (e for e in self.by_job[job_id] if e.type.split(".")[-1] in finals),
            None,
        )


async def partitions_of(
    producer: AIOKafkaProducer, topics: tuple[str, ...]
) -> list[TopicPartition]:
    return [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(await producer.partitions_for(topic))
    ]


async def commit_group_at_end(
    bootstrap: str, group: str, partitions: list[TopicPartition]
) -> None:
    """Start the test's group past everything already in the shared topics."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        await consumer.commit({tp: await consumer.position(tp) for tp in partitions})
    finally:
        await consumer.stop()


@dataclass
class World:
    app: ExecutorApp
    events: Events
    producer: AIOKafkaProducer
    offsets: AIOKafkaConsumer
    s3: Minio
    bucket: str
    workflow_service: FakeWorkflow
    storage_service: FakeStorage

    async def submit(
        self,
        workflow: dict,
        priority: Priority = Priority.NORMAL,
        inputs=(),
        known: bool = True,
    ) -> tuple[str, Any]:
        job_id = str(uuid.uuid4())
        if known:
            self.workflow_service.jobs.add(job_id)
        event = JobSubmitted(
            source="tests",
            subject=job_id,
            tenant_id=TENANT,
            data=JobSubmittedData(
                workflow=workflow,
                inputs=list(inputs),
                priority=priority,
                timeout_seconds=300,
                deadline=datetime.now(UTC) + timedelta(minutes=10),
            ),
        )
        sent = await self.producer.send_and_wait(
            topic_for(event), dump_event(event), key=job_id.encode()
        )
        return job_id, sent

    async def committed(self, sent: Any) -> int | None:
        return await self.offsets.committed(TopicPartition(sent.topic, sent.partition))

    async def wait_committed(self, sent: Any) -> None:
        async with asyncio.timeout(WAIT_S):
            while True:
                if await self.committed(sent) == sent.offset + 1:
                    return
                await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def world(stack, tmp_path_factory):
    suffix = uuid.uuid4().hex[:10]
    bootstrap = stack["KAFKA_BOOTSTRAP_SERVERS"]
    group = f"executor-test-{suffix}"
    s3 = Minio(
        stack["S3_ENDPOINT"],
        access_key=stack["S3_ACCESS_KEY"],
        secret_key=stack["S3_SECRET_KEY"],
        secure=stack["S3_SECURE"] == "true",
        region=stack["S3_REGION"],
    )
    bucket = stack["S3_BUCKET"]
    if not s3.bucket_exists(bucket):
        s3.make_bucket(bucket)
    workflow_service = FakeWorkflow()
    storage_service = FakeStorage(s3, bucket)
    server = grpc.aio.server()
    wf_grpc.add_WorkflowServiceServicer_to_server(workflow_service, server)
    st_grpc.add_StorageServiceServicer_to_server(storage_service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    try:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        submitted = await partitions_of(producer, SUBMITTED_IN_DRAIN_ORDER)
        await commit_group_at_end(bootstrap, group, submitted)
        events = Events(
            bootstrap,
            await partitions_of(producer, (*JOB_EVENT_TOPICS, HEARTBEAT, NODE_CATALOG)),
        )
        await events.start()
        offsets = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await offsets.start()

        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            consumer_group=group,
            workflow_grpc_target=f"127.0.0.1:{port}",
            storage_grpc_target=f"127.0.0.1:{port}",
            comfyui_path=Path(stack["COMFYUI_PATH"]),
            comfyui_python=Path(stack["COMFYUI_PYTHON"]),
            comfyui_url=None,
            worker_id=f"test-worker-{suffix}",
            scratch_dir=tmp_path_factory.mktemp("executor"),
            http_port=0,
            progress_interval_seconds=0.2,
            interrupt_grace_seconds=5,
            cpu=True,
        )
        app = ExecutorApp(settings)
        stop = asyncio.Event()
        worker = asyncio.create_task(app.run(stop))
        async with asyncio.timeout(WAIT_S):
            await asyncio.wait(
                {worker, asyncio.create_task(app.consuming.wait())},
                return_when=asyncio.FIRST_COMPLETED,
            )
        if worker.done():
            worker.result()
        yield World(
            app=app,
            events=events,
            producer=producer,
            offsets=offsets,
            s3=s3,
            bucket=bucket,
            workflow_service=workflow_service,
            storage_service=storage_service,
        )
        stop.set()
        async with asyncio.timeout(60):
            await worker
        await offsets.stop()
        await producer.stop()
        await events.stop()
    finally:
        await server.stop(None)


def png(color: tuple[int, int, int], size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def invert_workflow(prefix: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": prefix},
        },
    }


def slow_workflow(blurs: int = 4, size: int = 512) -> dict:
    """About 3 s per blur at full size on a laptop CPU; a fresh colour each time
    so ComfyUI's cache never skips the work."""
    prompt: dict = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {
                "width": size,
                "height": size,
                "batch_size": 8,
                "color": uuid.uuid4().int % 0xFFFFFF,
            },
        }
    }
    for index in range(2, blurs + 2):
        prompt[str(index)] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [str(index - 1), 0], "blur_radius": 31, "sigma": 10.0},
        }
    prompt[str(blurs + 2)] = {
        "class_type": "PreviewImage",
        "inputs": {"images": [str(blurs + 1), 0]},
    }
    return prompt


async def test_a_job_runs_and_its_output_lands_in_s3(world):
    source = world.storage_service.add_input(png((10, 20, 30)), "in.png")
    job_id, sent = await world.submit(
        invert_workflow(f"it-{uuid.uuid4().hex[:8]}"), inputs=[source]
    )

    completed = await world.events.wait_final(job_id)

    types = world.events.types(job_id)
    assert types[0] == "started"
    assert types[-1] == "completed", completed
    assert "progressed" in types
    started = world.events.by_job[job_id][0]
    assert (started.data.attempt, started.data.worker_id) == (
        1,
        world.app.settings.worker_id,
    )
    [output] = completed.data.outputs
    assert (output.node_id, output.width, output.height) == ("3", 8, 8)
    carried = [
        o.file_id
        for e in world.events.by_job[job_id]
        if e.type.endswith("progressed")
        for o in e.data.outputs
    ]
    assert carried == [output.file_id]
    data = world.s3.get_object(world.bucket, output.key).read()
    with Image.open(io.BytesIO(data)) as image:
        assert image.convert("RGB").getpixel((0, 0)) == (245, 235, 225)
    await world.wait_committed(sent)


async def test_higher_priority_runs_first_and_offsets_wait_for_the_final_event(world):
    busy_id, busy_sent = await world.submit(slow_workflow())
    await world.events.wait_for(busy_id, "started")
    normal = [(await world.submit(slow_workflow(1, 64)))[0] for _ in range(2)]
    high_id, _ = await world.submit(slow_workflow(1, 64), Priority.HIGH)

    # Still running: its record is not committed yet.
    committed = await world.committed(busy_sent)
    assert world.events.final(busy_id) is None
    assert committed is None or committed <= busy_sent.offset

    assert (await world.events.wait_final(busy_id)).type.endswith("completed")
    for job_id in [high_id, *normal]:
        assert (await world.events.wait_final(job_id)).type.endswith("completed")
    started_at = {
        job_id: world.events.by_job[job_id][0].time for job_id in [high_id, *normal]
    }
    assert started_at[high_id] < min(started_at[n] for n in normal)
    await world.wait_committed(busy_sent)


async def test_cancel_interrupts_the_running_job(world):
    job_id, sent = await world.submit(slow_workflow(30))
    await world.events.wait_for(job_id, "progressed")

    cancel = JobCancelRequested(
        source="tests",
        subject=job_id,
        tenant_id=TENANT,
        data=JobCancelRequestedData(reason="changed my mind"),
    )
    await world.producer.send_and_wait(
        CANCEL_REQUESTED, dump_event(cancel), key=job_id.encode()
    )

    final = await world.events.wait_final(job_id)
    assert final.type == "executor.job.cancelled"
    assert final.data.reason == "changed my mind"
    await world.wait_committed(sent)

    # ComfyUI is free again for the next job.
    next_id, _ = await world.submit(slow_workflow(1, 64))
    assert (await world.events.wait_final(next_id)).type.endswith("completed")


async def test_a_refused_claim_is_skipped_and_committed(world):
    job_id, sent = await world.submit(slow_workflow(1, 64), known=False)
    # A later job of the same key lands behind it on the same partition.
    after = JobSubmitted(
        source="tests",
        subject=str(uuid.uuid4()),
        tenant_id=TENANT,
        data=JobSubmittedData(
            workflow=slow_workflow(1, 64),
            priority=Priority.NORMAL,
            timeout_seconds=60,
            deadline=datetime.now(UTC) + timedelta(minutes=5),
        ),
    )
    world.workflow_service.jobs.add(after.subject)
    await world.producer.send_and_wait(
        sent.topic, dump_event(after), key=job_id.encode()
    )

    assert (await world.events.wait_final(after.subject)).type.endswith("completed")
    assert world.events.by_job[job_id] == []
    assert job_id in world.workflow_service.claims


async def test_catalog_heartbeats_and_health(world):
    worker_id = world.app.settings.worker_id
    catalog = await world.events.wait_for(worker_id, "catalog-published")
    beat = await world.events.wait_for(worker_id, "heartbeat")

    assert "SaveImage" in catalog.data.object_info
    assert len(catalog.data.catalog_hash) == 64
    assert beat.data.gpus == []
    assert beat.data.interval_s == world.app.settings.heartbeat_interval_seconds
    base = f"http://127.0.0.1:{world.app.http_port}"
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert "executor_busy " in metrics


async def test_an_unreadable_record_goes_to_the_dead_letter_topic(world):
    marker = f"not an event {uuid.uuid4()}".encode()
    sent = await world.producer.send_and_wait(SUBMITTED_LOW, marker, key=b"poison")

    await world.wait_committed(sent)

    reader = AIOKafkaConsumer(
        dlq(SUBMITTED_LOW),
        bootstrap_servers=world.app.settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await reader.start()
    try:
        async with asyncio.timeout(WAIT_S):
            async for record in reader:
                if record.value == marker:
                    assert record.key == b"poison"
                    break
    finally:
        await reader.stop()
