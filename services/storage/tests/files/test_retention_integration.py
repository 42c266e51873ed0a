"""Retention against real Postgres: expired files lose their object, then their row."""

import uuid
from datetime import timedelta

import httpx
import pytest

from comfyserve.storage.db import create_engine, migrate, session_factory
from comfyserve.storage.errors import FileNotFound
from comfyserve.storage.files.models import FilePurpose, UploadRequest
from comfyserve.storage.files.service import FileService, utcnow

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
    files = storage_app.files
    tenant = f"t{unique}"
    expiring = await files.create_upload(upload(tenant, ttl_seconds=60))
    lasting = await files.create_upload(upload(tenant, ttl_seconds=3600))
    async with httpx.AsyncClient() as http:
        for created in (expiring, lasting):
            response = await http.put(
                created.url, content=b"abc", headers=created.headers
            )
            assert response.status_code == 200
    for created in (expiring, lasting):
        await files.complete_upload(tenant, str(created.file.id))

    report = await files.run_retention_once(utcnow() + timedelta(seconds=120))

    assert report.deleted >= 1
    assert await real_store.stat(expiring.file.key) is None
    with pytest.raises(FileNotFound):
        await files.get_file(tenant, str(expiring.file.id))
    assert await real_store.stat(lasting.file.key) is not None
    assert (await files.get_file(tenant, str(lasting.file.id))).state == "ready"


@pytest.fixture
async def isolated_files(settings_for, schema_dropper, fake_store):
    """A file service on a schema of its own, over the fake store."""
    settings = settings_for(f"storage_test_{uuid.uuid4().hex[:12]}")
    engine = create_engine(settings)
    try:
        await migrate(engine, settings)
        yield FileService(session_factory(engine), fake_store, settings)
    finally:
        await engine.dispose()
        await schema_dropper(settings)


async def test_failed_object_delete_keeps_the_row_for_next_round(
    isolated_files, fake_store
) -> None:
    created = await isolated_files.create_upload(upload("tenant1", ttl_seconds=60))
    fake_store.objects[created.file.key] = b"abc"
    await isolated_files.complete_upload("tenant1", str(created.file.id))
    later = utcnow() + timedelta(seconds=120)

    fake_store.fail_deletes = True
    failed = await isolated_files.run_retention_once(later)
    assert (failed.deleted, failed.failed) == (0, 1)
    assert (await isolated_files.get_file("tenant1", str(created.file.id))).id

    fake_store.fail_deletes = False
    retried = await isolated_files.run_retention_once(later)
    assert (retried.deleted, retried.failed) == (1, 0)
    assert created.file.key not in fake_store.objects
    with pytest.raises(FileNotFound):
        await isolated_files.get_file("tenant1", str(created.file.id))


async def test_abandoned_pending_uploads_are_swept_after_a_day(
    isolated_files, fake_store
) -> None:
    stale = await isolated_files.create_upload(
        upload("tenant1", ttl_seconds=30 * 24 * 3600)
    )
    fake_store.objects[stale.file.key] = b"partial"

    early = await isolated_files.run_retention_once(utcnow() + timedelta(hours=23))
    assert early.deleted == 0
    late = await isolated_files.run_retention_once(utcnow() + timedelta(hours=25))
    assert late.deleted == 1
    assert stale.file.key not in fake_store.objects
