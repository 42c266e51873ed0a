"""Files by hash and by name over the real server, Postgres and S3: dedup per
tenant, files minted over a shared object, and names in native folders."""

import grpc
import httpx
import pytest
from blake3 import blake3

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as pb

from .test_grpc_integration import PNG, create, put, status_of, uploaded

pytestmark = pytest.mark.integration

HASH = f"blake3:{blake3(PNG).hexdigest()}"
OTHER_HASH = "blake3:" + "0" * 64


@pytest.fixture
def tenant(unique: str) -> str:
    return f"t{unique}"


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def mint(client, tenant: str, **fields) -> pb.CreateFileFromHashResponse:
    return await client.CreateFileFromHash(
        pb.CreateFileFromHashRequest(tenant_id=tenant, blake3=HASH, **fields)
    )


async def test_a_file_is_found_by_its_hash_in_its_own_tenant_only(
    client, http, tenant
) -> None:
    done = await uploaded(client, http, tenant, blake3=HASH.upper())
    assert done.blake3 == HASH

    found = await client.FindFileByHash(
        pb.FindFileByHashRequest(tenant_id=tenant, blake3=HASH.upper())
    )

    assert found.id == done.id
    for who, digest in ((f"{tenant}x", HASH), (tenant, OTHER_HASH)):
        request = pb.FindFileByHashRequest(tenant_id=who, blake3=digest)
        assert await status_of(client.FindFileByHash(request)) == (
            grpc.StatusCode.NOT_FOUND
        )


async def test_a_pending_upload_is_no_blob_to_mint_from(client, tenant) -> None:
    await create(client, tenant, blake3=HASH)

    assert await status_of(mint(client, tenant)) == grpc.StatusCode.NOT_FOUND
    request = pb.FindFileByHashRequest(tenant_id=tenant, blake3=HASH)
    assert await status_of(client.FindFileByHash(request)) == (
        grpc.StatusCode.NOT_FOUND
    )


async def test_a_malformed_hash_is_an_invalid_argument(client, tenant) -> None:
    request = pb.FindFileByHashRequest(tenant_id=tenant, blake3="sha256:abc")

    assert await status_of(client.FindFileByHash(request)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_minting_shares_the_object_and_the_same_name_is_not_minted_twice(
    client, http, tenant
) -> None:
    source = await uploaded(client, http, tenant, blake3=HASH)

    first = await mint(client, tenant, path="sub/again.png")
    second = await mint(client, tenant, path="sub/again.png")

    assert first.created_new
    assert first.file.id != source.id
    assert first.file.key == source.key
    assert (first.file.folder, first.file.path) == ("input", "sub/again.png")
    assert first.file.filename == "again.png"
    assert first.file.state == pb.FILE_STATE_READY
    assert first.file.size == source.size
    assert not second.created_new
    assert second.file.id == first.file.id
    assert await status_of(mint(client, f"{tenant}x")) == grpc.StatusCode.NOT_FOUND


async def test_a_shared_object_goes_with_its_last_file_only(
    client, http, tenant, real_store
) -> None:
    source = await uploaded(client, http, tenant, blake3=HASH)
    minted = (await mint(client, tenant, path="copy.png")).file

    await client.DeleteFile(pb.DeleteFileRequest(tenant_id=tenant, file_id=source.id))
    assert await real_store.stat(source.key) is not None
    link = await client.GetDownloadUrl(
        pb.GetDownloadUrlRequest(tenant_id=tenant, file_id=minted.id)
    )
    assert (await http.get(link.url)).content == PNG

    await client.DeleteFile(pb.DeleteFileRequest(tenant_id=tenant, file_id=minted.id))
    assert await real_store.stat(source.key) is None


async def test_a_file_is_found_by_folder_and_path_newest_first(
    client, http, tenant
) -> None:
    await uploaded(client, http, tenant, filename="photo.png", path="sub/photo.png")
    newer = await uploaded(
        client, http, tenant, filename="photo.png", path="sub/photo.png"
    )
    temp = await uploaded(
        client, http, tenant, filename="photo.png", folder="temp", path="photo.png"
    )
    plain = await uploaded(client, http, tenant, filename="dir/plain.png")

    def named(path: str, folder: str = "", who: str = tenant):
        return client.FindNamedFile(
            pb.FindNamedFileRequest(tenant_id=who, folder=folder, path=path)
        )

    assert (await named("sub/photo.png")).id == newer.id
    assert (await named("photo.png", "temp")).id == temp.id
    # Without a path an input is named by its filename.
    assert (await named("plain.png", "input")).id == plain.id
    for call in (
        named("photo.png"),
        named("sub/photo.png", who=f"{tenant}x"),
        named("sub/photo.png", "output"),
    ):
        assert await status_of(call) == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("path", ["../x.png", "/abs.png", "a//b.png", "a/./b.png"])
async def test_a_path_that_leaves_its_folder_is_refused(client, tenant, path) -> None:
    call = create(client, tenant, path=path)

    assert await status_of(call) == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_unknown_folder_is_refused(client, tenant) -> None:
    assert await status_of(create(client, tenant, folder="models")) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_a_pending_upload_has_no_name_yet(client, http, tenant) -> None:
    created = await create(client, tenant, path="late.png")
    await put(http, created, PNG)
    request = pb.FindNamedFileRequest(tenant_id=tenant, path="late.png")

    assert await status_of(client.FindNamedFile(request)) == grpc.StatusCode.NOT_FOUND
