"""Fencing against real Postgres, over the fake store: when a job ends only the
attempt that ended it keeps outputs, and nothing may register new ones."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text

from comfyserve.storage.clock import utcnow
from comfyserve.storage.db import session_factory
from comfyserve.storage.errors import AttemptSuperseded, FileNotFound, InvalidArgument
from comfyserve.storage.fences.models import FinishedJob
from comfyserve.storage.fences.service import LATE_PUT_GRACE
from comfyserve.storage.files.models import FilePurpose, UploadRequest
from comfyserve.storage.files.retention import DELETION_RETRY_AFTER

pytestmark = pytest.mark.integration

TENANT = "tenant1"


def output(job_id: str, attempt: int | None, index: int = 0, **changes):
    values = {
        "tenant_id": TENANT,
        "purpose": FilePurpose.OUTPUT,
        "filename": "out.png",
        "content_type": "image/png",
        "size": 3,
        "job_id": job_id,
        "node_id": "9",
        "index": index,
        "sha256": None,
        "ttl_seconds": None,
        "attempt": attempt,
    }
    values.update(changes)
    return UploadRequest(**values)


async def stored(isolated, request: UploadRequest):
    """An output registered, uploaded and completed."""
    created = await isolated.uploads.create_upload(request)
    isolated.store.objects[created.file.key] = b"abc"
    return await isolated.uploads.complete_upload(TENANT, str(created.file.id))


async def gone(isolated, row) -> bool:
    try:
        await isolated.reads.get_file(TENANT, str(row.id))
    except FileNotFound:
        return row.key not in isolated.store.objects
    return False


def finished(job_id: str, attempt: int) -> FinishedJob:
    return FinishedJob(job_id=job_id, tenant_id=TENANT, attempt=attempt)


async def test_each_attempt_writes_its_own_output_row_and_object(
    isolated, unique
) -> None:
    first = await isolated.uploads.create_upload(output(unique, 1))
    second = await isolated.uploads.create_upload(output(unique, 2))
    retry = await isolated.uploads.create_upload(output(unique, 2, size=5))
    legacy = await isolated.uploads.create_upload(output(unique, None, index=1))

    assert first.file.id != second.file.id
    assert first.file.key == f"outputs/{TENANT}/{unique}/1/9/0-out.png"
    assert second.file.key == f"outputs/{TENANT}/{unique}/2/9/0-out.png"
    # A retry within one attempt overwrites its own row and object.
    assert (retry.file.id, retry.file.key) == (second.file.id, second.file.key)
    assert (legacy.file.attempt, legacy.file.key) == (
        1,
        f"outputs/{TENANT}/{unique}/1/9/1-out.png",
    )


async def test_the_end_of_a_job_deletes_the_outputs_of_other_attempts(
    isolated, unique
) -> None:
    losers = [
        await stored(isolated, output(unique, 1, index=0)),
        await stored(isolated, output(unique, 1, index=1)),
        await stored(isolated, output(unique, 3, index=0)),
    ]
    winner = await stored(isolated, output(unique, 2))
    other_job = await stored(isolated, output(f"{unique}x", 1))

    report = await isolated.fences.on_job_finished(finished(unique, 2))

    assert (report.attempt, report.deleted, report.failed) == (2, 3, 0)
    for row in losers:
        assert await gone(isolated, row)
    for row in (winner, other_job):
        assert (await isolated.reads.get_file(TENANT, str(row.id))).state == "ready"
        assert row.key in isolated.store.objects


async def test_a_redelivered_end_keeps_the_first_fence_and_deletes_nothing(
    isolated, unique
) -> None:
    winner = await stored(isolated, output(unique, 2))
    await isolated.fences.on_job_finished(finished(unique, 2))

    again = await isolated.fences.on_job_finished(finished(unique, 1))

    assert (again.attempt, again.deleted, again.failed) == (2, 0, 0)
    assert (await isolated.reads.get_file(TENANT, str(winner.id))).state == "ready"


async def test_a_job_that_never_started_keeps_no_outputs(isolated, unique) -> None:
    row = await stored(isolated, output(unique, 1))

    report = await isolated.fences.on_job_finished(finished(unique, 0))

    assert report.deleted == 1
    assert await gone(isolated, row)


async def test_outputs_of_an_ended_job_are_refused(isolated, unique) -> None:
    await isolated.fences.on_job_finished(finished(unique, 2))

    for attempt in (1, 2, 3):
        with pytest.raises(AttemptSuperseded) as caught:
            await isolated.uploads.create_upload(output(unique, attempt))
        assert caught.value.message.startswith(f"attempt_superseded: job '{unique}'")
    assert (
        await isolated.scalar(
            f'SELECT count(*) FROM "{isolated.settings.schema_name}".files'
        )
        == 0
    )


async def test_outputs_the_store_kept_are_left_for_retention(isolated, unique) -> None:
    loser = await stored(isolated, output(unique, 1))
    isolated.store.fail_deletes = True

    report = await isolated.fences.on_job_finished(finished(unique, 2))

    assert (report.deleted, report.failed) == (0, 1)
    with pytest.raises(FileNotFound):
        await isolated.reads.get_file(TENANT, str(loser.id))
    isolated.store.fail_deletes = False
    retried = await isolated.retention.sweep_once(utcnow() + DELETION_RETRY_AFTER * 2)
    assert retried.deleted == 1
    assert await gone(isolated, loser)


async def test_job_and_tenant_ids_must_be_key_segments(isolated) -> None:
    with pytest.raises(InvalidArgument):
        await isolated.fences.on_job_finished(finished("a/../b", 1))
    with pytest.raises(InvalidArgument):
        await isolated.fences.on_job_finished(
            FinishedJob(job_id="job1", tenant_id="", attempt=1)
        )


async def test_a_registration_in_flight_is_deleted_by_the_fence_it_raced(
    isolated, unique
) -> None:
    """A loser's registration that had checked for a fence before the fence
    committed must still be seen by the fence's clean-up."""
    uploads = isolated.uploads
    row = uploads._new_row(output(unique, 1))
    async with session_factory(isolated.engine).begin() as session:
        # CreateUpload's transaction, held open past its fence check.
        await uploads._register_output(session, row)
        fencing = asyncio.create_task(
            isolated.fences.on_job_finished(finished(unique, 2))
        )
        await wait_for_lock_waiter(isolated, unique)

    report = await fencing
    assert report.deleted == 1
    with pytest.raises(FileNotFound):
        await isolated.reads.get_file(TENANT, str(row.id))


async def wait_for_lock_waiter(isolated, job_id: str) -> None:
    """Until a session waits for the job's lock (two-key advisory locks carry
    their second key in `objid`)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        waiting = await isolated.scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND objsubid = 2 AND objid = hashtext(:job_id)::oid AND NOT granted",
            job_id=job_id,
        )
        if waiting:
            return
        assert asyncio.get_running_loop().time() < deadline, "the fence never waited"
        await asyncio.sleep(0.01)


async def test_the_sweep_removes_late_uploads_once_every_url_expired(
    isolated, unique
) -> None:
    winner = await stored(isolated, output(unique, 2))
    pending_winner = await isolated.uploads.create_upload(output(unique, 2, index=1))
    late_loser = await isolated.uploads.create_upload(output(unique, 1))
    await isolated.fences.on_job_finished(finished(unique, 2))
    # PUTs through URLs issued before the fence land after it.
    store = isolated.store
    store.objects[late_loser.file.key] = b"late"
    store.objects[pending_winner.file.key] = b"winner, late"
    neighbour = f"outputs/{TENANT}/{unique}x/1/9/0-out.png"
    store.objects[neighbour] = b"another job"
    ttl = timedelta(seconds=isolated.settings.upload_url_ttl_seconds)

    early = await isolated.fences.sweep_once(utcnow() + ttl)
    assert (early.swept, early.orphans_deleted) == (0, 0)
    assert late_loser.file.key in store.objects

    swept = await isolated.fences.sweep_once(
        utcnow() + ttl + LATE_PUT_GRACE + timedelta(seconds=5)
    )
    assert (swept.swept, swept.orphans_deleted, swept.failed) == (1, 1, 0)
    assert late_loser.file.key not in store.objects
    for kept in (winner.key, pending_winner.file.key, neighbour):
        assert kept in store.objects

    again = await isolated.fences.sweep_once(utcnow() + timedelta(days=1))
    assert again.swept == 0


async def test_a_sweep_the_store_refused_is_retried(isolated, unique) -> None:
    late_loser = await isolated.uploads.create_upload(output(unique, 1))
    await isolated.fences.on_job_finished(finished(unique, 2))
    isolated.store.objects[late_loser.file.key] = b"late"
    later = utcnow() + timedelta(days=1)

    isolated.store.fail_deletes = True
    failed = await isolated.fences.sweep_once(later)
    assert (failed.swept, failed.failed) == (0, 1)
    isolated.store.fail_deletes = False
    retried = await isolated.fences.sweep_once(later)
    assert (retried.swept, retried.orphans_deleted) == (1, 1)
    assert isolated.store.objects == {}


async def test_fences_are_one_row_per_job(isolated, unique) -> None:
    await isolated.fences.on_job_finished(finished(unique, 2))
    await isolated.fences.on_job_finished(finished(unique, 2))
    async with isolated.engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT tenant_id, attempt, swept_at FROM "
                    f'"{isolated.settings.schema_name}".job_fences'
                )
            )
        ).all()
    assert [tuple(row) for row in rows] == [(TENANT, 2, None)]
