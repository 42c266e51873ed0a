"""Retention against real Postgres: expired files lose their object, then their row."""

import uuid
from datetime import timedelta

import httpx
import pytest

from comfyserve.storage.clock import utcnow
from comfyserve.storage.errors import FileNotFound
from comfyserve.storage.files.models import FilePurpose, UploadRequest
from comfyserve.storage.files.retention import DELETION_RETRY_AFTER, RETENTION_BATCH

pytestmark = pytest.mark.integration


def upload(tenant: str, **changes) -> UploadRequest:
    values = {
        "tenant_id": tenant,
        "purpose": FilePurpose.INPUT,
        "filename": "cat.png",
        "content_type": "image/png",
        "size": 3,
        "job_id": None,
        "node_id": None,
        "index": None,
        "sha256": None,
        "ttl_seconds": None,
    }
    values.update(changes)
    return UploadRequest(**values)


async def test_retention_deletes_expired_object_and_row(
    storage_app, real_store, unique
) -> None:
    tenant = f"t{unique}"
    expiring = await storage_app.uploads.create_upload(upload(tenant, ttl_seconds=60))
    lasting = await storage_app.uploads.create_upload(upload(tenant, ttl_seconds=3600))
    async with httpx.AsyncClient() as http:
        for created in (expiring, lasting):
            response = await http.put(
                created.url, content=b"abc", headers=created.headers
            )
            assert response.status_code == 200
    for created in (expiring, lasting):
        await storage_app.uploads.complete_upload(tenant, str(created.file.id))

    report = await storage_app.retention.sweep_once(utcnow() + timedelta(seconds=120))

    assert report.deleted >= 1
    assert await real_store.stat(expiring.file.key) is None
    with pytest.raises(FileNotFound):
        await storage_app.reads.get_file(tenant, str(expiring.file.id))
    assert await real_store.stat(lasting.file.key) is not None
    assert (
        await storage_app.reads.get_file(tenant, str(lasting.file.id))
    ).state == "ready"


async def rows(isolated, file_id: uuid.UUID) -> object:
    return await isolated.scalar(
        f'SELECT state FROM "{isolated.settings.schema_name}".files WHERE id = :id',
        id=file_id,
    )


async def test_failed_object_delete_keeps_the_row_for_a_later_round(
    isolated, fake_store
) -> None:
    created = await isolated.uploads.create_upload(upload("tenant1", ttl_seconds=60))
    fake_store.objects[created.file.key] = b"abc"
    await isolated.uploads.complete_upload("tenant1", str(created.file.id))
    later = utcnow() + timedelta(seconds=120)

    fake_store.fail_deletes = True
    failed = await isolated.retention.sweep_once(later)
    assert (failed.deleted, failed.failed) == (0, 1)
    # Claimed: gone for reads, its row kept until its object is gone.
    with pytest.raises(FileNotFound):
        await isolated.reads.get_file("tenant1", str(created.file.id))
    assert await rows(isolated, created.file.id) == "deleting"
    assert created.file.key in fake_store.objects

    fake_store.fail_deletes = False
    # Another deleter may still be at work on it until the retry delay passes.
    soon = await isolated.retention.sweep_once(later + timedelta(seconds=1))
    assert (soon.deleted, soon.failed) == (0, 0)
    retried = await isolated.retention.sweep_once(later + DELETION_RETRY_AFTER * 2)
    assert (retried.deleted, retried.failed) == (1, 0)
    assert created.file.key not in fake_store.objects
    assert await rows(isolated, created.file.id) is None


async def test_abandoned_pending_uploads_are_swept_after_a_day(
    isolated, fake_store
) -> None:
    stale = await isolated.uploads.create_upload(
        upload("tenant1", ttl_seconds=30 * 24 * 3600)
    )
    fake_store.objects[stale.file.key] = b"partial"

    early = await isolated.retention.sweep_once(utcnow() + timedelta(hours=23))
    assert early.deleted == 0
    late = await isolated.retention.sweep_once(utcnow() + timedelta(hours=25))
    assert late.deleted == 1
    assert stale.file.key not in fake_store.objects


async def test_a_round_drains_more_than_one_batch(isolated, fake_store) -> None:
    created = [
        await isolated.uploads.create_upload(upload("tenant1", ttl_seconds=60))
        for _ in range(RETENTION_BATCH + 5)
    ]
    for item in created:
        fake_store.objects[item.file.key] = b"abc"

    report = await isolated.retention.sweep_once(utcnow() + timedelta(seconds=120))

    assert (report.deleted, report.failed) == (RETENTION_BATCH + 5, 0)
    assert fake_store.objects == {}
