"""A whole worker against real Kafka, S3 and a managed ComfyUI (model-free nodes
on the CPU); the workflow and storage services are small in-process fakes."""

from __future__ import annotations

import asyncio
import io
import json
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
from google.protobuf.timestamp_pb2 import Timestamp
from minio import Minio
from PIL import Image
from pydantic import ValidationError

from comfyserve.contracts.events import (
    InputFile,
    JobCancelRequested,
    JobCancelRequestedData,
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
)
from comfyserve.executor.app import ExecutorApp
from comfyserve.executor.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TENANT = "tenant-it"
WAIT_S = 120.0
LEASE_S = 3.0
SERVICE_KEY = "csk_executor-it"


class FakeWorkflow(wf_grpc.WorkflowServiceServicer):
    """Hands out queued assignments one at a time and answers renewals with
    whatever state a test set for the job (HELD otherwise)."""

    def __init__(self) -> None:
        self.queue: list[wf.Assignment] = []
        self.changed = asyncio.Condition()
        self.states: dict[str, int] = {}
        self.renewals: list[str] = []

    async def add(self, assignment: wf.Assignment) -> None:
        async with self.changed:
            self.queue.append(assignment)
            self.changed.notify_all()

    async def AcquireJob(self, request, context):
        async with self.changed:
            try:
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: bool(self.queue)),
                    request.wait_seconds,
                )
            except TimeoutError:
                return wf.AcquireJobResponse()
            assignment = self.queue.pop(0)
        assignment.job.worker_id = request.worker_id
        return wf.AcquireJobResponse(assignment=assignment)

    async def RenewLeases(self, request, context):
        answers = []
        for lease in request.leases:
            self.renewals.append(lease.job_id)
            state = self.states.get(lease.job_id, wf.LEASE_STATE_HELD)
            answers.append(
                wf.LeaseStatus(job_id=lease.job_id, attempt=lease.attempt, state=state)
            )
        return wf.RenewLeasesResponse(leases=answers, lease_seconds=LEASE_S)


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
            f"outputs/{request.tenant_id}/{request.job_id}/{request.attempt}/"
            f"{request.node_id}/{request.index}-{request.filename}"
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
            attempt=request.attempt,
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


class SeenCredentials(grpc.aio.ServerInterceptor):
    """The `authorization` metadata of every call the fakes answered, by
    service."""

    def __init__(self) -> None:
        self.by_service: dict[str, set[str]] = defaultdict(set)

    async def intercept_service(self, continuation, details):
        service = details.method.split("/")[1]
        metadata = dict(details.invocation_metadata or ())
        self.by_service[service].add(metadata.get("authorization", ""))
        return await continuation(details)


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


@dataclass
class World:
    app: ExecutorApp
    events: Events
    producer: AIOKafkaProducer
    s3: Minio
    bucket: str
    scratch: Path
    workflow_service: FakeWorkflow
    storage_service: FakeStorage
    credentials: SeenCredentials

    async def submit(
        self,
        workflow: dict,
        inputs: tuple[InputFile, ...] = (),
        file_inputs: tuple[tuple[str, str], ...] = (),
        timeout_s: int = 300,
    ) -> str:
        job_id = str(uuid.uuid4())
        deadline = Timestamp()
        deadline.FromDatetime(datetime.now(UTC) + timedelta(minutes=10))
        await self.workflow_service.add(
            wf.Assignment(
                job=wf.Job(
                    id=job_id,
                    tenant_id=TENANT,
                    status=wf.JOB_STATUS_RUNNING,
                    timeout_seconds=timeout_s,
                    deadline=deadline,
                    attempt=1,
                ),
                attempt=1,
                workflow_json=json.dumps(workflow),
                inputs=[
                    wf.InputFile(
                        file_id=item.file_id,
                        node_id=item.node_id,
                        input_name=item.input_name,
                        filename=item.filename,
                        bucket=item.bucket,
                        key=item.key,
                        content_type=item.content_type,
                        size=item.size,
                    )
                    for item in inputs
                ],
                file_inputs=[
                    wf.InputRef(node_id=node, input_name=name)
                    for node, name in file_inputs
                ],
                lease_seconds=LEASE_S,
            )
        )
        return job_id


@pytest.fixture(scope="module")
async def world(stack, tmp_path_factory):
    suffix = uuid.uuid4().hex[:10]
    bootstrap = stack["KAFKA_BOOTSTRAP_SERVERS"]
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
    credentials = SeenCredentials()
    server = grpc.aio.server(interceptors=[credentials])
    wf_grpc.add_WorkflowServiceServicer_to_server(workflow_service, server)
    st_grpc.add_StorageServiceServicer_to_server(storage_service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    try:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        events = Events(
            bootstrap,
            await partitions_of(producer, (*JOB_EVENT_TOPICS, HEARTBEAT, NODE_CATALOG)),
        )
        await events.start()
        scratch = tmp_path_factory.mktemp("executor")
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            pool=f"it-{suffix}",
            workflow_grpc_target=f"127.0.0.1:{port}",
            storage_grpc_target=f"127.0.0.1:{port}",
            comfyui_path=Path(stack["COMFYUI_PATH"]),
            comfyui_python=Path(stack["COMFYUI_PYTHON"]),
            comfyui_url=None,
            worker_id=f"test-worker-{suffix}",
            scratch_dir=scratch,
            http_port=0,
            progress_interval_seconds=0.2,
            interrupt_grace_seconds=5,
            acquire_wait_seconds=2,
            cpu=True,
            service_key=SERVICE_KEY,
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
            s3=s3,
            bucket=bucket,
            scratch=scratch,
            workflow_service=workflow_service,
            storage_service=storage_service,
            credentials=credentials,
        )
        stop.set()
        async with asyncio.timeout(60):
            await worker
        await producer.stop()
        await events.stop()
    finally:
        await server.stop(None)


async def eventually(check, within: float = WAIT_S) -> None:
    async with asyncio.timeout(within):
        while True:
            if check():
                return
            await asyncio.sleep(0.1)


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


async def test_a_job_runs_in_its_own_folders_and_its_output_lands_in_s3(world):
    source = world.storage_service.add_input(png((10, 20, 30)), "in.png")
    job_id = await world.submit(
        invert_workflow(f"it-{uuid.uuid4().hex[:8]}"), inputs=(source,)
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
    # Stored as this attempt's, under the name ComfyUI gave it.
    assert f"/{job_id}/1/3/0-it-" in output.key
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
    # Nothing of the job is left in ComfyUI's folders.
    comfy = world.scratch / "comfyui"
    assert not list((comfy / "input").rglob("*.png"))
    assert not list((comfy / "output").rglob("*.png"))


async def test_every_call_to_workflow_and_storage_carries_the_service_key(world):
    source = world.storage_service.add_input(png((40, 50, 60)), "in.png")
    job_id = await world.submit(
        invert_workflow(f"it-{uuid.uuid4().hex[:8]}"), inputs=(source,)
    )

    completed = await world.events.wait_final(job_id)

    assert completed.type.endswith("completed"), completed
    assert dict(world.credentials.by_service) == {
        "comfyserve.workflow.v1.WorkflowService": {f"Bearer {SERVICE_KEY}"},
        "comfyserve.storage.v1.StorageService": {f"Bearer {SERVICE_KEY}"},
    }


async def test_the_lease_is_renewed_through_the_job_until_its_end_is_recorded(world):
    job_id = await world.submit(slow_workflow(2, 256))
    await world.events.wait_for(job_id, "started")
    await eventually(lambda: world.workflow_service.renewals.count(job_id) >= 2)

    await world.events.wait_final(job_id)
    # The final event is in Kafka, but until the workflow service has applied
    # it the attempt stays this worker's.
    held = world.workflow_service.renewals.count(job_id)
    await eventually(lambda: world.workflow_service.renewals.count(job_id) > held)
    world.workflow_service.states[job_id] = wf.LEASE_STATE_ENDED
    await asyncio.sleep(LEASE_S)
    settled = world.workflow_service.renewals.count(job_id)
    await asyncio.sleep(LEASE_S)
    assert world.workflow_service.renewals.count(job_id) == settled


async def test_a_plain_file_name_never_reaches_comfyuis_shared_input_folder(world):
    # Another tenant's file, left in ComfyUI's own input folder.
    shared = world.scratch / "comfyui" / "input" / "theirs.png"
    shared.write_bytes(png((1, 2, 3)))
    graph = invert_workflow(f"it-{uuid.uuid4().hex[:8]}")
    graph["1"]["inputs"]["image"] = "theirs.png"

    job_id = await world.submit(graph, file_inputs=(("1", "image"),))

    final = await world.events.wait_final(job_id)
    assert final.type == "executor.job.failed", final
    assert final.data.code == "invalid_workflow"
    assert "theirs.png" in final.data.message
    # The owner sees the job's own names, never this machine's paths.
    assert str(world.scratch) not in final.data.message
    assert job_id not in final.data.message


async def test_a_cancel_broadcast_interrupts_the_running_job(world):
    job_id = await world.submit(slow_workflow(30))
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

    # ComfyUI is free again for the next job.
    next_id = await world.submit(slow_workflow(1, 64))
    assert (await world.events.wait_final(next_id)).type.endswith("completed")


async def test_a_cancel_learnt_from_the_lease_interrupts_the_job(world):
    # The broadcast may be missed (a broker outage): the renewal says it too.
    job_id = await world.submit(slow_workflow(30))
    await world.events.wait_for(job_id, "progressed")

    world.workflow_service.states[job_id] = wf.LEASE_STATE_CANCEL_REQUESTED

    final = await world.events.wait_final(job_id)
    assert final.type == "executor.job.cancelled"


async def test_a_lost_lease_stops_the_job_and_reports_nothing(world):
    lost = await world.submit(slow_workflow(30))
    await world.events.wait_for(lost, "progressed")

    world.workflow_service.states[lost] = wf.LEASE_STATE_LOST

    after = await world.submit(slow_workflow(1, 64))
    assert (await world.events.wait_final(after)).type.endswith("completed")
    # The attempt's new owner reports the job; this worker never does.
    assert world.events.final(lost) is None


async def test_catalog_heartbeats_and_health(world):
    settings = world.app.settings
    catalog = await world.events.wait_for(settings.pool, "catalog-published")
    beat = await world.events.wait_for(settings.worker_id, "heartbeat")

    assert "SaveImage" in catalog.data.object_info
    assert catalog.data.pool == settings.pool
    assert len(catalog.data.catalog_hash) == 64
    assert beat.data.pool == settings.pool
    assert beat.data.gpus == []
    assert beat.data.interval_s == settings.heartbeat_interval_seconds
    base = f"http://127.0.0.1:{world.app.http_port}"
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert "executor_busy " in metrics
