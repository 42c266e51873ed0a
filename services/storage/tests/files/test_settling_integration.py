"""Outputs the executor registered and uploaded but never completed, against
real Postgres over the fake store: the end of their job, or the first read,
makes them ready once their object is there with the declared size."""

import pytest

from comfyserve.storage.errors import FileNotReady, InvalidArgument
from comfyserve.storage.fences.models import FinishedJob
from comfyserve.storage.files.models import FilePurpose, UploadRequest
from comfyserve.storage.objects import ObjectStoreError

pytestmark = pytest.mark.integration

TENANT = "tenant1"
BYTES = b"png"


def output(job_id: str, attempt: int, index: int = 0, **changes) -> UploadRequest:
    values = {
        "tenant_id": TENANT,
        "purpose": FilePurpose.OUTPUT,
        "filename": "out.png",
        "content_type": "image/png",
        "size": len(BYTES),
        "job_id": job_id,
        "node_id": "9",
        "index": index,
        "sha256": None,
        "ttl_seconds": None,
        "attempt": attempt,
        "width": 64,
        "height": 32,
    }
    values.update(changes)
    return UploadRequest(**values)


async def uploaded(isolated, request: UploadRequest, data: bytes = BYTES):
    """Registered and PUT, as the executor leaves an output."""
    created = await isolated.uploads.create_upload(request)
    isolated.store.objects[created.file.key] = data
    return created.file


async def state_in_db(isolated, row) -> str:
    return await isolated.scalar(
        f'SELECT state FROM "{isolated.settings.schema_name}".files WHERE id = :id',
        id=row.id,
    )


async def test_the_end_of_a_job_makes_its_attempts_uploaded_outputs_ready(
    isolated, unique
) -> None:
    first = await uploaded(isolated, output(unique, 2, index=0))
    second = await uploaded(isolated, output(unique, 2, index=1))
    never_put = await isolated.uploads.create_upload(output(unique, 2, index=2))
    loser = await uploaded(isolated, output(unique, 1))

    report = await isolated.fences.on_job_finished(
        FinishedJob(job_id=unique, tenant_id=TENANT, attempt=2)
    )

    assert (report.settled, report.deleted) == (2, 1)
    for row in (first, second):
        assert await state_in_db(isolated, row) == "ready"
    assert await state_in_db(isolated, never_put.file) == "pending"
    assert await state_in_db(isolated, loser) is None
    ready = await isolated.reads.get_file(TENANT, str(first.id))
    assert (ready.width, ready.height, ready.size) == (64, 32, len(BYTES))

    again = await isolated.fences.on_job_finished(
        FinishedJob(job_id=unique, tenant_id=TENANT, attempt=2)
    )
    assert (again.settled, again.deleted) == (0, 0)


async def test_a_read_before_the_jobs_end_was_consumed_finds_the_output_ready(
    isolated, unique
) -> None:
    row = await uploaded(isolated, output(unique, 1))

    [link] = await isolated.reads.download_urls(TENANT, [str(row.id)])

    assert link.file_id == row.id
    assert await state_in_db(isolated, row) == "ready"
    # Settled once: later reads do not ask the store again.
    stats = isolated.store.stats
    await isolated.reads.download_urls(TENANT, [str(row.id)])
    assert (await isolated.reads.get_file(TENANT, str(row.id))).state == "ready"
    assert isolated.store.stats == stats
    usage = await isolated.reads.usage([TENANT])
    assert (usage[0].files, usage[0].bytes) == (1, len(BYTES))


async def test_get_and_list_settle_the_outputs_they_answer(isolated, unique) -> None:
    got = await uploaded(isolated, output(unique, 1, index=0))
    listed = await uploaded(isolated, output(unique, 1, index=1))

    assert (await isolated.reads.get_file(TENANT, str(got.id))).state == "ready"
    page = await isolated.reads.list_files(TENANT, job_id=unique)
    assert {row.id: row.state for row in page.files} == {
        got.id: "ready",
        listed.id: "ready",
    }


async def test_an_output_without_its_object_or_of_another_size_stays_pending(
    isolated, unique
) -> None:
    missing = (await isolated.uploads.create_upload(output(unique, 1, index=0))).file
    short = await uploaded(isolated, output(unique, 1, index=1), data=BYTES[:-1])

    for row in (missing, short):
        with pytest.raises(FileNotReady):
            await isolated.reads.download_urls(TENANT, [str(row.id)])
        assert (await isolated.reads.get_file(TENANT, str(row.id))).state == "pending"
    report = await isolated.fences.on_job_finished(
        FinishedJob(job_id=unique, tenant_id=TENANT, attempt=1)
    )
    assert report.settled == 0


async def test_an_output_registered_again_meanwhile_stays_pending(
    isolated, unique
) -> None:
    row = await uploaded(isolated, output(unique, 1))
    # A retry of the attempt's upload registers the slot again before the
    # settle applies: the object read was the earlier upload's.
    again = await isolated.uploads.create_upload(output(unique, 1, size=5))

    [settled] = await isolated.reads._settler.settle([row])

    assert settled.state == "pending"
    assert again.file.id == row.id
    assert await state_in_db(isolated, row) == "pending"


async def test_a_store_outage_retries_the_end_and_still_answers_reads(
    isolated, unique
) -> None:
    row = await uploaded(isolated, output(unique, 1))
    isolated.store.fail_stats = True

    with pytest.raises(ObjectStoreError):
        await isolated.fences.on_job_finished(
            FinishedJob(job_id=unique, tenant_id=TENANT, attempt=1)
        )
    assert (await isolated.reads.get_file(TENANT, str(row.id))).state == "pending"

    isolated.store.fail_stats = False
    report = await isolated.fences.on_job_finished(
        FinishedJob(job_id=unique, tenant_id=TENANT, attempt=1)
    )
    assert report.settled == 1


async def test_only_outputs_take_a_size_and_it_must_be_positive(
    isolated, unique
) -> None:
    with pytest.raises(InvalidArgument, match="width"):
        await isolated.uploads.create_upload(output(unique, 1, width=0))
    client_file = UploadRequest(
        tenant_id=TENANT,
        purpose=FilePurpose.INPUT,
        filename="in.png",
        content_type="image/png",
        size=3,
        job_id=None,
        node_id=None,
        index=None,
        sha256=None,
        ttl_seconds=None,
        height=5,
    )
    with pytest.raises(InvalidArgument, match="height"):
        await isolated.uploads.create_upload(client_file)
