"""Fencing end to end: the service in-process on real Postgres, S3 and Kafka.

A JobFinished on the (test) finished topic removes the losing attempt's outputs,
keeps the winner's, refuses later registrations, and the sweep removes what a
presigned PUT issued before the end lands after it."""

import asyncio
import uuid
from datetime import timedelta

import grpc
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from comfyserve.contracts.events import (
    FinalStatus,
    JobFinished,
    JobFinishedData,
    dump_event,
)
from comfyserve.contracts.pb.storage.v1 import storage_pb2 as pb
from comfyserve.storage.clock import utcnow
from comfyserve.storage.fences.service import LATE_PUT_GRACE

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


async def register(client, tenant: str, job: str, attempt: int, index: int = 0):
    return await client.CreateUpload(
        pb.CreateUploadRequest(
            tenant_id=tenant,
            purpose=pb.FILE_PURPOSE_OUTPUT,
            filename="out.png",
            content_type="image/png",
            size=len(PNG),
            job_id=job,
            node_id="9",
            index=index,
            attempt=attempt,
        )
    )


async def put(http, created) -> None:
    response = await http.put(
        created.upload_url, content=PNG, headers=dict(created.upload_headers)
    )
    assert response.status_code == 200, response.text


async def stored(client, http, tenant: str, job: str, attempt: int):
    created = await register(client, tenant, job, attempt)
    await put(http, created)
    return await client.CompleteUpload(
        pb.CompleteUploadRequest(tenant_id=tenant, file_id=created.file.id)
    )


async def file_state(client, tenant: str, file_id: str):
    """The file's state, or None once it is gone (NOT_FOUND)."""
    request = pb.GetFileRequest(tenant_id=tenant, file_id=file_id)
    try:
        info = await client.GetFile(request)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    return info.state


async def test_a_finished_job_keeps_only_the_winning_attempts_outputs(
    client, storage_app, storage_settings, real_store, stack, unique
) -> None:
    tenant, job = f"t{unique}", str(uuid.uuid4())
    async with httpx.AsyncClient(timeout=30) as http:
        loser = await stored(client, http, tenant, job, attempt=1)
        winner = await stored(client, http, tenant, job, attempt=2)
        assert (loser.attempt, winner.attempt) == (1, 2)
        assert loser.key != winner.key
        # The losing attempt got a URL before the end and uses it only after.
        late = await register(client, tenant, job, attempt=1, index=1)

        await publish_finished(stack, storage_settings, tenant, job, winner.id)

        deadline = asyncio.get_running_loop().time() + 30
        while await file_state(client, tenant, loser.id) is not None:
            assert asyncio.get_running_loop().time() < deadline, "never fenced"
            await asyncio.sleep(0.05)
        assert await real_store.stat(loser.key) is None
        assert await file_state(client, tenant, winner.id) == pb.FILE_STATE_READY
        assert await real_store.stat(winner.key) is not None

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await register(client, tenant, job, attempt=3)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert caught.value.details().startswith("attempt_superseded:")

        await put(http, late)
    assert await real_store.stat(late.file.key) is not None

    ttl = timedelta(seconds=storage_settings.upload_url_ttl_seconds)
    report = await storage_app.fences.sweep_once(
        utcnow() + ttl + LATE_PUT_GRACE + timedelta(seconds=5)
    )

    assert report.failed == 0
    assert report.orphans_deleted >= 1
    assert await real_store.stat(late.file.key) is None
    assert await real_store.stat(winner.key) is not None
    assert await file_state(client, tenant, winner.id) == pb.FILE_STATE_READY


async def publish_finished(stack, settings, tenant: str, job: str, winner: str):
    event = JobFinished(
        source="test",
        subject=job,
        tenant_id=tenant,
        data=JobFinishedData(
            status=FinalStatus.COMPLETED, attempt=2, output_file_ids=[winner]
        ),
    )
    producer = AIOKafkaProducer(bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"])
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.finished_topic, dump_event(event), key=job.encode()
        )
    finally:
        await producer.stop()
