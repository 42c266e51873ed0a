"""Native `/upload/image`, `/upload/mask` and `/view` over the storage fake:
ComfyUI's naming, folders and refusals, and the caller's own files only."""

import io
import json
import uuid

import pytest
from PIL import Image

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st


def png(size=(4, 3), color=(10, 20, 30, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


async def upload(
    client, headers, data: bytes, name="x.png", path="/upload/image", **fields
):
    return await client.post(
        path, headers=headers, data=fields, files={"image": (name, data, "image/png")}
    )


@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_a_taken_name_is_renamed_and_each_is_served_where_it_landed(
    client, auth_a, prefix
) -> None:
    first = await upload(
        client,
        auth_a,
        png(color=(1, 1, 1, 255)),
        path=f"{prefix}/upload/image",
        subfolder="sub",
        type="temp",
    )
    second = await upload(
        client,
        auth_a,
        png(color=(2, 2, 2, 255)),
        path=f"{prefix}/upload/image",
        subfolder="sub",
        type="temp",
    )
    third = await upload(
        client,
        auth_a,
        png(),
        path=f"{prefix}/upload/image",
        subfolder="sub",
        type="temp",
    )

    assert first.json() == {"name": "x.png", "subfolder": "sub", "type": "temp"}
    assert second.json() == {"name": "x (1).png", "subfolder": "sub", "type": "temp"}
    assert third.json()["name"] == "x (2).png"
    view = await client.get(
        f"{prefix}/view",
        headers=auth_a,
        params={"filename": "x (1).png", "subfolder": "sub", "type": "temp"},
    )
    assert view.status_code == 200
    assert view.content == png(color=(2, 2, 2, 255))
    assert view.headers["Content-Type"] == "image/png"
    assert view.headers["Accept-Ranges"] == "bytes"
    assert view.headers["X-Content-Type-Options"] == "nosniff"
    assert view.headers["Content-Disposition"] == 'inline; filename="x (1).png"'


async def test_overwrite_replaces_the_file_of_that_name(
    client, storage, auth_a
) -> None:
    await upload(client, auth_a, png(color=(1, 1, 1, 255)))
    again = await upload(client, auth_a, png(color=(9, 9, 9, 255)), overwrite="true")

    assert again.json() == {"name": "x.png", "subfolder": "", "type": "input"}
    assert len(storage.files) == 1
    view = await client.get(
        "/view", headers=auth_a, params={"filename": "x.png", "type": "input"}
    )
    assert view.content == png(color=(9, 9, 9, 255))


async def test_refusals_are_empty_bodies(client, auth_a) -> None:
    no_image = await client.post(
        "/upload/image", headers=auth_a, data={"type": "input"}
    )
    escape = await upload(client, auth_a, png(), subfolder="../up")
    absolute = await upload(client, auth_a, png(), subfolder="/etc")

    for response in (no_image, escape, absolute):
        assert (response.status_code, response.content) == (400, b"")


async def test_view_refusals_and_misses(client, auth_a) -> None:
    async def view(**params):
        return await client.get("/view", headers=auth_a, params=params)

    assert (await view(filename="../x.png")).status_code == 400
    assert (await view(filename="/x.png")).status_code == 400
    assert (await view(filename="x.png", subfolder="../../etc")).status_code == 403
    missing = await view(filename="nope.png")
    assert (missing.status_code, missing.content) == (404, b"")
    assert (await view()).status_code == 404


async def test_view_ranges(client, auth_a) -> None:
    data = png()
    await upload(client, auth_a, data)

    part = await client.get(
        "/view",
        headers={**auth_a, "Range": "bytes=0-15"},
        params={"filename": "x.png", "type": "input"},
    )
    past = await client.get(
        "/view",
        headers={**auth_a, "Range": "bytes=999999-"},
        params={"filename": "x.png", "type": "input"},
    )

    assert part.status_code == 206
    assert part.content == data[:16]
    assert part.headers["Content-Range"] == f"bytes 0-15/{len(data)}"
    assert past.status_code == 416
    assert past.headers["Content-Range"] == f"bytes */{len(data)}"


async def test_another_tenants_upload_is_not_found(client, auth_a, auth_b) -> None:
    await upload(client, auth_a, png())

    response = await client.get(
        "/view", headers=auth_b, params={"filename": "x.png", "type": "input"}
    )

    assert response.status_code == 404


async def test_an_output_is_served_under_its_job_id_newest_attempt(
    client, storage, object_store, auth_a, auth_b, tenant_a
) -> None:
    job_id = str(uuid.uuid4())
    for attempt, data in ((1, b"old"), (2, b"new")):
        storage.add_file(
            tenant_a,
            purpose=st.FILE_PURPOSE_OUTPUT,
            filename="ComfyUI_00001_.png",
            content_type="image/png",
            size=3,
            key=f"outputs/{attempt}.png",
            job_id=job_id,
            attempt=attempt,
        )
        object_store.objects[f"/bucket/outputs/{attempt}.png"] = data
    params = {"filename": "ComfyUI_00001_.png", "subfolder": job_id, "type": "output"}

    mine = await client.get("/view", headers=auth_a, params=params)
    annotated = await client.get(
        "/api/view",
        headers=auth_a,
        params={"filename": "ComfyUI_00001_.png [output]", "subfolder": job_id},
    )
    theirs = await client.get("/view", headers=auth_b, params=params)

    assert mine.content == b"new"
    assert annotated.content == b"new"
    assert theirs.status_code == 404


async def test_a_mask_becomes_the_originals_alpha(client, auth_a) -> None:
    await upload(
        client, auth_a, png(size=(4, 3), color=(200, 100, 50, 255)), name="orig.png"
    )
    mask = png(size=(2, 2), color=(0, 0, 0, 0))

    response = await upload(
        client,
        auth_a,
        mask,
        name="masked.png",
        path="/upload/mask",
        original_ref=json.dumps(
            {"filename": "orig.png", "subfolder": "", "type": "input"}
        ),
    )

    assert response.json() == {"name": "masked.png", "subfolder": "", "type": "input"}
    view = await client.get(
        "/view", headers=auth_a, params={"filename": "masked.png", "type": "input"}
    )
    with Image.open(io.BytesIO(view.content)) as merged:
        assert merged.size == (4, 3)
        assert merged.getpixel((0, 0)) == (200, 100, 50, 0)


async def test_a_mask_without_its_original_is_404(client, auth_a) -> None:
    response = await upload(
        client,
        auth_a,
        png(),
        path="/upload/mask",
        original_ref=json.dumps({"filename": "gone.png", "type": "input"}),
    )

    assert (response.status_code, response.content) == (404, b"")
