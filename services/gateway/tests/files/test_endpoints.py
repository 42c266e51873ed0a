import hashlib
import io
import struct
import zlib

import pytest
from PIL import Image

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st


def _png(width, height):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_upload_streams_to_the_presigned_url_and_records_the_file(
    client, storage, object_store, auth_a, tenant_a
):
    data = _png(3, 2)

    response = await client.post(
        "/files",
        headers=auth_a,
        files={"file": ("cat.png", data, "image/png")},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["filename"] == "cat.png"
    assert body["content_type"] == "image/png"
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert (body["width"], body["height"]) == (3, 2)
    assert body["created_at"] == "2030-01-01T00:00:00Z"
    assert body["expires_at"] == "2030-01-02T00:00:00Z"
    assert body["links"] == {
        "self": f"http://testserver/files/{body['id']}",
        "content": f"http://testserver/files/{body['id']}/content",
    }
    assert response.headers["Location"] == body["links"]["self"]
    [created] = storage.create_requests
    assert created.tenant_id == tenant_a
    assert created.purpose == st.FILE_PURPOSE_INPUT
    assert created.size == len(data)
    assert created.sha256 == body["sha256"]
    [put] = object_store.puts
    assert put.headers["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in put.headers
    assert put.headers["Content-Type"] == "image/png"
    assert put.content == data
    assert storage.files[body["id"]].state == st.FILE_STATE_READY


async def test_the_content_type_field_overrides_the_parts_type(client, storage, auth_a):
    response = await client.post(
        "/files",
        headers=auth_a,
        files={"file": ("notes", b"hello", "application/octet-stream")},
        data={"content_type": "text/plain"},
    )

    assert response.status_code == 201
    assert response.json()["content_type"] == "text/plain"
    assert response.json()["width"] is None


async def test_a_generic_part_type_is_guessed_from_the_filename(client, auth_a):
    response = await client.post(
        "/files",
        headers=auth_a,
        files={"file": ("photo.png", _png(1, 1), "application/octet-stream")},
    )

    assert response.json()["content_type"] == "image/png"
    assert response.json()["width"] == 1


def _jpeg():
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _mpo():
    """A multi-picture JPEG, as cameras write them."""
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (2, 2)), Image.new("RGB", (2, 2))]
    frames[0].save(buffer, format="MPO", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


async def test_an_empty_file_is_422_and_nothing_is_stored(client, storage, auth_a):
    response = await client.post(
        "/files", headers=auth_a, files={"file": ("empty.txt", b"", "text/plain")}
    )

    assert response.status_code == 422
    assert response.json()["error"] == "empty_file"
    assert storage.create_requests == []


@pytest.mark.parametrize(
    ("name", "data", "part_type", "override", "detected"),
    [
        ("x.png", b"not a png", "image/png", None, None),
        ("x.png", _jpeg(), "image/png", None, "image/jpeg"),
        ("x.bin", b"hello", "application/octet-stream", "image/webp", None),
        ("x.webp", _png(1, 1), "application/octet-stream", None, "image/png"),
    ],
    ids=["text-as-png", "jpeg-as-png", "text-as-webp", "png-named-webp"],
)
async def test_bytes_that_are_not_the_declared_image_type_are_422(
    client, storage, auth_a, name, data, part_type, override, detected
):
    response = await client.post(
        "/files",
        headers=auth_a,
        files={"file": (name, data, part_type)},
        data={"content_type": override} if override else {},
    )

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "content_type_mismatch"
    declared = override or {"x.webp": "image/webp"}.get(name, part_type)
    assert (body["declared"], body["detected"]) == (declared, detected)
    assert declared in body["detail"]
    assert storage.create_requests == []


@pytest.mark.parametrize(
    ("name", "data", "part_type"),
    [
        # Other names of the same format.
        ("a.jpg", _jpeg(), "image/jpg"),
        ("a.jpg", _jpeg(), "image/pjpeg"),
        ("a.jpg", _mpo(), "image/jpeg"),
        ("a.png", _png(1, 1), "image/png; charset=binary"),
        # Types Pillow cannot judge, and non-image types, are taken as declared.
        ("a.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        ("a.txt", _png(1, 1), "text/plain"),
    ],
    ids=["jpg", "pjpeg", "mpo-as-jpeg", "parameters", "svg", "png-as-text"],
)
async def test_matching_or_unchecked_types_are_stored(
    client, auth_a, name, data, part_type
):
    response = await client.post(
        "/files", headers=auth_a, files={"file": (name, data, part_type)}
    )

    assert response.status_code == 201, response.text


def _chunk(kind, data):
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data))
    )


def _png_claiming(width, height):
    """A PNG whose header claims `width` x `height` pixels, with no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b""))
        + _chunk(b"IEND", b"")
    )


async def test_an_image_too_large_for_pillow_to_open_is_stored_as_declared(
    client, auth_a
):
    # 400 megapixels: Pillow refuses to open it, yet its header is a PNG's.
    data = _png_claiming(20000, 20000)

    response = await client.post(
        "/files", headers=auth_a, files={"file": ("big.png", data, "image/png")}
    )

    assert response.status_code == 201
    assert response.json()["width"] is None


async def test_a_file_over_the_upload_limit_is_413(
    client, storage, object_store, auth_a, settings
):
    # Over the file limit, yet within the body limit's room for multipart framing.
    data = b"x" * (settings.max_upload_bytes + 10)

    response = await client.post(
        "/files", headers=auth_a, files={"file": ("big.bin", data, "text/plain")}
    )

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert response.json()["limit_bytes"] == settings.max_upload_bytes
    assert storage.create_requests == []
    assert object_store.puts == []


async def test_a_size_storage_refuses_is_413_with_the_upload_limit(
    client, storage, object_store, auth_a, settings
):
    storage.max_upload_bytes = 2

    response = await client.post(
        "/files", headers=auth_a, files={"file": ("a.txt", b"abc", "text/plain")}
    )

    assert response.status_code == 413
    assert response.json()["limit_bytes"] == settings.max_upload_bytes
    assert "the limit is" not in response.text
    assert object_store.puts == []


async def test_a_body_far_over_the_upload_limit_is_413_before_parsing(
    client, storage, auth_a, settings
):
    head = (
        b'--b\r\nContent-Disposition: form-data; name="file"; '
        b'filename="big.bin"\r\nContent-Type: text/plain\r\n\r\n'
    )

    async def chunks():
        yield head
        for _ in range(2 * settings.max_upload_bytes // 65536):
            yield b"x" * 65536
        yield b"\r\n--b--\r\n"

    response = await client.post(
        "/files",
        headers={**auth_a, "Content-Type": "multipart/form-data; boundary=b"},
        content=chunks(),
    )

    assert response.status_code == 413
    assert storage.create_requests == []


async def test_a_refused_put_is_502_and_nothing_is_completed(
    client, storage, object_store, auth_a
):
    object_store.refuse = True

    response = await client.post(
        "/files", headers=auth_a, files={"file": ("a.txt", b"abc", "text/plain")}
    )

    assert response.status_code == 502
    assert response.json()["error"] == "upload_failed"
    [created] = storage.create_requests
    assert storage.files[next(iter(storage.files))].state == st.FILE_STATE_PENDING
    assert created.filename == "a.txt"


async def test_a_missing_file_field_is_422(client, auth_a):
    response = await client.post(
        "/files", headers=auth_a, files={"other": ("a", b"x", "text/plain")}
    )

    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "body.file"


async def test_metadata_and_content_redirect(client, storage, auth_a, tenant_a):
    info = storage.add_file(
        tenant_a,
        filename="in.png",
        content_type="image/png",
        size=7,
        sha256="ab" * 32,
        key="inputs/in.png",
        width=4,
        height=5,
    )

    metadata = await client.get(f"/files/{info.id}", headers=auth_a)
    content = await client.get(f"/files/{info.id}/content", headers=auth_a)

    assert metadata.status_code == 200
    assert metadata.json()["sha256"] == "ab" * 32
    assert (metadata.json()["width"], metadata.json()["height"]) == (4, 5)
    assert metadata.json()["expires_at"] is None
    assert content.status_code == 307
    assert content.headers["Location"] == (
        "http://objects.test/bucket/inputs/in.png?sig=get"
    )


@pytest.mark.parametrize("suffix", ["", "/content"])
async def test_another_tenants_file_is_404(client, storage, auth_b, tenant_a, suffix):
    info = storage.add_file(tenant_a, key="inputs/x")

    response = await client.get(f"/files/{info.id}{suffix}", headers=auth_b)

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_a_non_uuid_file_id_is_404(client, auth_a):
    response = await client.get("/files/../../etc/passwd", headers=auth_a)
    other = await client.get("/files/abc", headers=auth_a)

    assert response.status_code == other.status_code == 404


async def test_an_unauthenticated_upload_is_401_before_the_body_is_read(
    client, storage
):
    response = await client.post(
        "/files", files={"file": ("a.txt", b"abc", "text/plain")}
    )

    assert response.status_code == 401
    assert storage.create_requests == []
