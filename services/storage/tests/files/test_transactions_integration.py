"""No transaction or row lock of the storage schema is held while the object store
is called: a slow or hung store must not pin connections or block other writers."""

import asyncio
import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from comfyserve.storage.clock import utcnow
from comfyserve.storage.errors import FileNotFound, RegisteredAgain
from comfyserve.storage.files.models import FilePurpose, UploadRequest
from comfyserve.storage.objects import ObjectStore

pytestmark = pytest.mark.integration

DATA = b"abc"


def upload(**changes) -> UploadRequest:
    values = {
        "tenant_id": "tenant1",
        "purpose": FilePurpose.INPUT,
        "filename": "cat.png",
        "content_type": "image/png",
        "size": len(DATA),
        "job_id": None,
        "node_id": None,
        "index": None,
        "sha256": hashlib.sha256(DATA).hexdigest(),
        "ttl_seconds": 60,
    }
    values.update(changes)
    return UploadRequest(**values)


@pytest.fixture
def blocking(request, blocking_store):
    return blocking_store(request.param)


@pytest.fixture
def fake_store(blocking) -> ObjectStore:
    # Every service of `isolated` is built over the blocking store.
    return blocking


async def locks_in_schema(isolated) -> int:
    """Locks other sessions hold on the schema's tables and indexes: an open
    transaction that touched them holds at least an AccessShareLock until it ends."""
    return await isolated.scalar(
        "SELECT count(*) FROM pg_locks l "
        "JOIN pg_class c ON c.oid = l.relation "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND l.pid <> pg_backend_pid()",
        schema=isolated.settings.schema_name,
    )


async def row_is_free(isolated, file_id) -> bool:
    """Whether the row can be locked right now, without waiting."""
    async with isolated.engine.connect() as connection:
        try:
            await connection.execute(
                text(
                    f'SELECT 1 FROM "{isolated.settings.schema_name}".files '
                    "WHERE id = :id FOR UPDATE NOWAIT"
                ),
                {"id": file_id},
            )
        except DBAPIError as error:
            if "could not obtain lock" in str(error.orig):
                return False
            raise
        finally:
            await connection.rollback()
    return True


async def while_blocked(isolated, blocking, work, file_id) -> None:
    task = asyncio.create_task(work)
    try:
        await asyncio.wait_for(blocking.entered.wait(), timeout=10)
        assert await locks_in_schema(isolated) == 0
        assert await row_is_free(isolated, file_id)
    finally:
        blocking.release.set()
    await asyncio.wait_for(task, timeout=10)


@pytest.mark.parametrize("blocking", ["stat", "sha256"], indirect=True)
async def test_complete_upload_checks_the_object_outside_any_transaction(
    isolated, blocking
) -> None:
    created = await isolated.uploads.create_upload(upload())
    blocking.objects[created.file.key] = DATA

    await while_blocked(
        isolated,
        blocking,
        isolated.uploads.complete_upload("tenant1", str(created.file.id)),
        created.file.id,
    )

    done = await isolated.reads.get_file("tenant1", str(created.file.id))
    assert done.state == "ready"


async def state_of(isolated, file_id) -> object:
    return await isolated.scalar(
        f'SELECT state FROM "{isolated.settings.schema_name}".files WHERE id = :id',
        id=file_id,
    )


@pytest.mark.parametrize("blocking", ["stat"], indirect=True)
async def test_a_file_claimed_while_its_upload_is_checked_is_not_revived(
    isolated, blocking
) -> None:
    created = await isolated.uploads.create_upload(upload())
    blocking.objects[created.file.key] = DATA
    completing = asyncio.create_task(
        isolated.uploads.complete_upload("tenant1", str(created.file.id))
    )
    await asyncio.wait_for(blocking.entered.wait(), timeout=10)
    # What a concurrent DeleteFile or retention round commits first.
    async with isolated.engine.begin() as connection:
        await connection.execute(
            text(
                f'UPDATE "{isolated.settings.schema_name}".files '
                "SET state = 'deleting', deleting_since = now() WHERE id = :id"
            ),
            {"id": created.file.id},
        )
    blocking.release.set()

    with pytest.raises(FileNotFound):
        await completing
    assert await state_of(isolated, created.file.id) == "deleting"


@pytest.mark.parametrize("blocking", ["stat"], indirect=True)
async def test_an_output_registered_again_while_checked_stays_pending(
    isolated, blocking
) -> None:
    slot = {
        "purpose": FilePurpose.OUTPUT,
        "job_id": "job1",
        "node_id": "9",
        "index": 0,
        "attempt": 1,
        "sha256": None,
    }
    created = await isolated.uploads.create_upload(upload(**slot))
    blocking.objects[created.file.key] = DATA
    completing = asyncio.create_task(
        isolated.uploads.complete_upload("tenant1", str(created.file.id))
    )
    await asyncio.wait_for(blocking.entered.wait(), timeout=10)
    again = await isolated.uploads.create_upload(upload(size=5, **slot))
    assert again.file.id == created.file.id
    blocking.release.set()

    with pytest.raises(RegisteredAgain):
        await completing
    assert await state_of(isolated, created.file.id) == "pending"


@pytest.mark.parametrize("blocking", ["delete"], indirect=True)
async def test_delete_file_holds_no_lock_while_the_object_goes(
    isolated, blocking
) -> None:
    created = await isolated.uploads.create_upload(upload(sha256=None))
    blocking.objects[created.file.key] = DATA

    await while_blocked(
        isolated,
        blocking,
        isolated.deletion.delete_file("tenant1", str(created.file.id)),
        created.file.id,
    )

    assert created.file.key not in blocking.objects
    assert (
        await isolated.scalar(
            f'SELECT count(*) FROM "{isolated.settings.schema_name}".files'
        )
        == 0
    )


@pytest.mark.parametrize("blocking", ["delete"], indirect=True)
async def test_retention_holds_no_lock_while_objects_go(isolated, blocking) -> None:
    created = await isolated.uploads.create_upload(upload(sha256=None))
    blocking.objects[created.file.key] = DATA

    await while_blocked(
        isolated,
        blocking,
        isolated.retention.sweep_once(utcnow() + timedelta(seconds=120)),
        created.file.id,
    )

    assert blocking.objects == {}
