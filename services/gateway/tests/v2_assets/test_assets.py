"""v2 assets over the in-memory storage fake: dedup by BLAKE3 per tenant,
from-hash, the record, ranged content and deletion, each error in the v2
envelope."""

import io

import pytest
from blake3 import blake3
from PIL import Image

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st


def png(shade: int = 10) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (shade, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def digest(data: bytes) -> str:
    return f"blake3:{blake3(data).hexdigest()}"


async def upload(client, headers, data: bytes, **parts):
    fields = {"content_type": "image/png", "file_path": "photo.png", **parts}
    return await client.post(
        "/api/v2/assets",
        headers=headers,
        data=fields,
        files={"file": (fields["file_path"], data, "image/png")},
    )


async def test_a_new_upload_is_201_and_the_same_bytes_again_a_200_dedup_hit(
    client, storage, object_store, auth_a, tenant_a
) -> None:
    data = png()

    first = await upload(client, auth_a, data, expected_hash=digest(data).upper())
    second = await upload(client, auth_a, data, file_path="input/sub/again.png")

    assert first.status_code == 201
    body = first.json()
    assert body["created_new"] is True
    assert body["hash"] == digest(data)
    assert body["size_bytes"] == len(data)
    assert body["content_type"] == "image/png"
    assert body["file_path"] == "photo.png"
    assert body["url"] == f"http://testserver/api/v2/assets/{body['id']}/content"
    assert body["created_at"].endswith("Z") or "+" in body["created_at"]
    assert second.status_code == 200
    assert second.json()["created_new"] is False
    assert second.json()["file_path"] == "sub/again.png"
    assert len(object_store.puts) == 1
    [created] = storage.create_requests
    assert (created.tenant_id, created.blake3) == (tenant_a, digest(data))
    assert (created.folder, created.path) == ("input", "photo.png")


async def test_a_wrong_expected_hash_is_409_and_mints_nothing(
    client, storage, auth_a
) -> None:
    response = await upload(client, auth_a, png(), expected_hash="blake3:" + "0" * 64)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "hash_mismatch"
    assert storage.files == {}


@pytest.mark.parametrize(
    "file_path", ["/etc/passwd", "../x.png", "input/../x.png", "models/loras/x.png"]
)
async def test_placements_outside_the_input_folder_are_422(
    client, storage, auth_a, file_path
) -> None:
    response = await upload(client, auth_a, png(), file_path=file_path)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert storage.files == {}


async def test_an_upload_over_the_limit_is_413(client, app, auth_a) -> None:
    app.state.settings.max_upload_bytes = 10

    response = await upload(client, auth_a, png())

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_head_by_hash_answers_raw_and_encoded_colons_per_tenant(
    client, auth_a, auth_b
) -> None:
    data = png()
    await upload(client, auth_a, data)
    hexdigest = digest(data).removeprefix("blake3:")

    raw = await client.head(
        f"/api/v2/assets/by-hash/blake3:{hexdigest}", headers=auth_a
    )
    encoded = await client.head(
        f"/api/v2/assets/by-hash/blake3%3A{hexdigest}", headers=auth_a
    )
    other = await client.head(
        f"/api/v2/assets/by-hash/blake3:{hexdigest}", headers=auth_b
    )
    malformed = await client.head("/api/v2/assets/by-hash/nope", headers=auth_a)

    assert (raw.status_code, raw.content) == (200, b"")
    assert (encoded.status_code, encoded.content) == (200, b"")
    assert (other.status_code, other.content) == (404, b"")
    assert malformed.status_code == 404


async def test_from_hash_mints_201_then_200_and_misses_are_blob_not_found(
    client, auth_a, auth_b
) -> None:
    data = png()
    await upload(client, auth_a, data)
    body = {"hash": digest(data), "file_path": "copy.png"}

    first = await client.post("/api/v2/assets/from-hash", headers=auth_a, json=body)
    again = await client.post("/api/v2/assets/from-hash", headers=auth_a, json=body)
    theirs = await client.post("/api/v2/assets/from-hash", headers=auth_b, json=body)

    assert first.status_code == 201
    assert first.json()["created_new"] is True
    assert first.json()["file_path"] == "copy.png"
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "blob_not_found"


async def test_get_returns_the_asset_and_another_tenants_id_is_not_found(
    client, auth_a, auth_b
) -> None:
    created = (await upload(client, auth_a, png())).json()

    mine = await client.get(f"/api/v2/assets/{created['id']}", headers=auth_a)
    theirs = await client.get(f"/api/v2/assets/{created['id']}", headers=auth_b)
    bad = await client.get("/api/v2/assets/not-a-uuid", headers=auth_a)

    assert mine.status_code == 200
    assert mine.json()["id"] == created["id"]
    assert mine.json()["hash"] == created["hash"]
    assert "created_new" not in mine.json() or mine.json()["created_new"] is None
    for response in (theirs, bad):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


async def test_content_streams_whole_ranged_and_416_past_the_end(
    client, auth_a
) -> None:
    data = png()
    asset = (await upload(client, auth_a, data)).json()
    url = f"/api/v2/assets/{asset['id']}/content"

    whole = await client.get(url, headers=auth_a)
    part = await client.get(url, headers={**auth_a, "Range": "bytes=0-3"})
    tail = await client.get(url, headers={**auth_a, "Range": "bytes=-2"})
    past = await client.get(url, headers={**auth_a, "Range": "bytes=999999-"})

    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["Content-Length"] == str(len(data))
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Type"] == "image/png"
    assert part.status_code == 206
    assert part.content == data[:4]
    assert part.headers["Content-Range"] == f"bytes 0-3/{len(data)}"
    assert tail.content == data[-2:]
    assert past.status_code == 416
    assert past.headers["Content-Range"] == f"bytes */{len(data)}"


async def test_content_whose_bytes_are_gone_is_output_unavailable(
    client, object_store, auth_a
) -> None:
    asset = (await upload(client, auth_a, png())).json()
    object_store.objects.clear()

    response = await client.get(f"/api/v2/assets/{asset['id']}/content", headers=auth_a)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "output_unavailable"


async def test_an_output_file_is_an_asset_with_its_job(
    client, storage, object_store, auth_a, tenant_a
) -> None:
    output = storage.add_file(
        tenant_a,
        purpose=st.FILE_PURPOSE_OUTPUT,
        filename="ComfyUI_00001_.png",
        content_type="image/png",
        size=3,
        key="outputs/x.png",
        job_id="7f3d2c1b-9a8e-4d6f-b012-3c4d5e6f7a8b",
    )
    object_store.objects["/bucket/outputs/x.png"] = b"abc"

    asset = await client.get(f"/api/v2/assets/{output.id}", headers=auth_a)
    content = await client.get(f"/api/v2/assets/{output.id}/content", headers=auth_a)

    assert asset.json()["job_id"] == output.job_id
    assert asset.json()["hash"] is None
    assert content.content == b"abc"


async def test_delete_is_204_then_404(client, auth_a) -> None:
    asset = (await upload(client, auth_a, png())).json()

    first = await client.delete(f"/api/v2/assets/{asset['id']}", headers=auth_a)
    second = await client.delete(f"/api/v2/assets/{asset['id']}", headers=auth_a)

    assert (first.status_code, first.content) == (204, b"")
    assert second.status_code == 404
    assert second.json()["error"]["code"] == "not_found"
