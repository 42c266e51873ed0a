"""What each tenant stores, counted on real Postgres: ready files only."""

import pytest

from comfyserve.storage.files.models import FilePurpose, TenantUsage, UploadRequest

pytestmark = pytest.mark.integration


async def stored(isolated, tenant: str, data: bytes, *, complete: bool = True) -> str:
    created = await isolated.uploads.create_upload(
        UploadRequest(
            tenant_id=tenant,
            purpose=FilePurpose.INPUT,
            filename="cat.png",
            content_type="image/png",
            size=len(data),
            job_id=None,
            node_id=None,
            index=None,
            sha256=None,
            ttl_seconds=None,
        )
    )
    isolated.store.objects[created.file.key] = data
    if complete:
        await isolated.uploads.complete_upload(tenant, str(created.file.id))
    return str(created.file.id)


async def test_usage_sums_each_tenants_ready_files(isolated, fake_store) -> None:
    await stored(isolated, "tenant-a", b"abc")
    await stored(isolated, "tenant-a", b"defgh")
    await stored(isolated, "tenant-b", b"ij")
    # Neither a pending upload nor a file being deleted counts.
    await stored(isolated, "tenant-a", b"pending", complete=False)
    deleting = await stored(isolated, "tenant-a", b"deleting")
    fake_store.fail_deletes = True
    await isolated.deletion.delete_file("tenant-a", deleting)
    assert (
        await isolated.scalar(
            f'SELECT count(*) FROM "{isolated.settings.schema_name}".files '
            "WHERE state = 'deleting'"
        )
        == 1
    )

    everyone = await isolated.reads.usage([])
    asked = await isolated.reads.usage(["tenant-b", "tenant-c"])

    assert everyone == [
        TenantUsage("tenant-a", files=2, bytes=8),
        TenantUsage("tenant-b", files=1, bytes=2),
    ]
    # Every tenant asked about is answered, with or without files.
    assert asked == [
        TenantUsage("tenant-b", files=1, bytes=2),
        TenantUsage("tenant-c", files=0, bytes=0),
    ]
