"""ComfyUI's native file routes through the whole product (API.md Part C.2 36
and 37): `/upload/image` naming, `/view` with ranges and refusals, uploads a
prompt names by plain filename, and each tenant's files its own."""

from __future__ import annotations

import asyncio
import io
import random
import uuid
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.e2e.support import Product, close_to, png

pytestmark = [pytest.mark.e2e]


def colour() -> tuple[int, int, int]:
    return (random.randrange(256), random.randrange(256), random.randrange(256))


async def upload(
    client: httpx.AsyncClient,
    data: bytes,
    name: str,
    path: str = "/upload/image",
    **fields: str,
) -> httpx.Response:
    return await client.post(
        path, data=fields, files={"image": (name, data, "image/png")}
    )


async def history(client: httpx.AsyncClient, prompt_id: str) -> dict[str, Any]:
    async with asyncio.timeout(180):
        while True:
            found = (await client.get(f"/history/{prompt_id}")).json()
            if found:
                entry: dict[str, Any] = found[prompt_id]
                return entry
            await asyncio.sleep(0.3)


async def test_uploads_are_renamed_and_served_where_they_landed(
    product: Product,
) -> None:
    """C.2 37: the same name twice is `x (1).png`; no image part is 400; each
    lands where `/view?type=<type>&subfolder=<sub>` serves it."""
    sub = f"s{uuid.uuid4().hex[:8]}"
    first, second = png(colour(), (4, 4)), png(colour(), (5, 5))
    async with product.client() as client:
        one = await upload(client, first, "x.png", subfolder=sub, type="temp")
        two = await upload(
            client,
            second,
            "x.png",
            path="/api/upload/image",
            subfolder=sub,
            type="temp",
        )
        empty = await client.post("/upload/image", data={"type": "input"})
        escape = await upload(client, first, "x.png", subfolder="../up")
        views = [
            await client.get(
                "/view", params={"filename": name, "subfolder": sub, "type": "temp"}
            )
            for name in ("x.png", "x (1).png")
        ]
    async with product.client(product.key_b) as other:
        theirs = await other.get(
            "/view", params={"filename": "x.png", "subfolder": sub, "type": "temp"}
        )

    assert one.json() == {"name": "x.png", "subfolder": sub, "type": "temp"}
    assert two.json() == {"name": "x (1).png", "subfolder": sub, "type": "temp"}
    assert (empty.status_code, empty.content) == (400, b"")
    assert (escape.status_code, escape.content) == (400, b"")
    assert [view.content for view in views] == [first, second]
    assert theirs.status_code == 404


async def test_a_prompt_loads_an_upload_by_name_and_view_serves_its_output(
    product: Product,
) -> None:
    """C.2 36 over a prompt that read a native upload by its plain name:
    200 with Accept-Ranges, a 206 range, `..` refused, unknown 404."""
    shade = colour()
    sub = f"s{uuid.uuid4().hex[:8]}"
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": f"{sub}/photo.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": "nview"},
        },
    }
    async with product.client() as client:
        stored = await upload(client, png(shade, (8, 8)), "photo.png", subfolder=sub)
        assert stored.status_code == 200, stored.text
        queued = await client.post("/prompt", json={"prompt": prompt})
        assert queued.status_code == 200, queued.text
        prompt_id = queued.json()["prompt_id"]
        entry = await history(client, prompt_id)
        [image] = entry["outputs"]["3"]["images"]
        params = {**image}
        whole = await client.get("/view", params=params)
        part = await client.get(
            "/api/view", params=params, headers={"Range": "bytes=0-15"}
        )
        past = await client.get(
            "/view", params=params, headers={"Range": "bytes=999999-"}
        )
        traversal = await client.get("/view", params={"filename": "../x.png"})
        unknown = await client.get("/view", params={**params, "filename": "nope.png"})
    async with product.client(product.key_b) as other:
        theirs = await other.get("/view", params=params)
        refused = await other.post("/prompt", json={"prompt": prompt})

    assert entry["status"]["status_str"] == "success"
    assert image["subfolder"] == prompt_id
    assert whole.status_code == 200
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(whole.content)) as picture:
        inverted = tuple(255 - channel for channel in shade)
        assert close_to(picture.convert("RGB").getpixel((0, 0)), inverted)
    assert part.status_code == 206
    assert part.content == whole.content[:16]
    assert part.headers["Content-Range"] == f"bytes 0-15/{len(whole.content)}"
    assert past.status_code == 416
    assert (traversal.status_code, unknown.status_code) == (400, 404)
    assert theirs.status_code == 404
    # Tenant B has no upload of that name: ComfyUI's answer for a missing file.
    assert refused.status_code == 400
    [error] = refused.json()["node_errors"]["1"]["errors"]
    assert error["type"] == "value_not_in_list"
