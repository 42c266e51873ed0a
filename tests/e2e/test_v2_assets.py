"""Comfy API v2 assets against the whole product (API.md Part C.1 4-9, 25), the
real comfy-sdk 0.5.0 where the scenario says SDK, and plain filenames that
resolve to the caller's own uploads and outputs."""

from __future__ import annotations

import asyncio
import io
import json
import random
from typing import Any

import httpx
import pytest
from blake3 import blake3
from PIL import Image

from tests.e2e.comfy_sdk import run_sdk
from tests.e2e.support import Product, close_to, png

pytestmark = [pytest.mark.e2e]

_PRELUDE = """
import json
from comfy_sdk import Comfy
from comfy_sdk.exceptions import BlobNotFound, HashMismatch, MissingAsset, NotFound
client = Comfy()
"""
TERMINAL = {"succeeded", "canceled", "failed", "expired"}


def load_invert_save(image: Any, prefix: str) -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": prefix},
        },
    }


def colour() -> tuple[int, int, int]:
    return (random.randrange(256), random.randrange(256), random.randrange(256))


def inverted(value: tuple[int, int, int]) -> tuple[int, int, int]:
    red, green, blue = value
    return (255 - red, 255 - green, 255 - blue)


def pixel(data: bytes) -> Any:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").getpixel((0, 0))


def digest(data: bytes) -> str:
    return f"blake3:{blake3(data).hexdigest()}"


async def run_v2(client: httpx.AsyncClient, graph: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/v2/jobs", json={"workflow": graph})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    async with asyncio.timeout(180):
        while job["status"] not in TERMINAL:
            await asyncio.sleep(0.2)
            job = (await client.get(job["urls"]["self"])).json()
    return job


async def upload(
    client: httpx.AsyncClient, data: bytes, file_path: str, **parts: str
) -> httpx.Response:
    return await client.post(
        "/api/v2/assets",
        data={"content_type": "image/png", "file_path": file_path, **parts},
        files={"file": (file_path.rsplit("/", 1)[-1], data, "image/png")},
    )


async def test_sdk_uploads_runs_on_the_upload_and_commits_the_same_bytes_once(
    product: Product,
) -> None:
    """C.1 5, 6 and 4: HEAD 404 then POST 201; the job's LoadImage read the
    upload (the output is its inverse); the same bytes again are a dedup hit;
    a ranged download is exactly 4 bytes."""
    shade = colour()
    data = png(shade, (8, 8))
    graph = load_invert_save("placeholder", "v2asset")
    result = run_sdk(
        product,
        _PRELUDE
        + f"""
data = bytes.fromhex({data.hex()!r})
asset = client.assets.from_bytes(data, filename="x.png")
wf = client.workflows.from_json(json.loads({json.dumps(json.dumps(graph))}))
wf.set_input("1", "image", asset)
job = client.run(wf)
out = job.get_outputs("3")[0]
again = client.assets.from_bytes(data, filename="x.png")
again.commit()
print(json.dumps({{
    "status": job.status, "asset": asset.id, "created_new": asset.created_new,
    "hash": asset.hash, "bytes": out.to_bytes().hex(),
    "range": out.to_bytes(range=(0, 3)).hex(),
    "again": again.id, "again_new": again.created_new,
    "image": job.get_workflow().graph["1"]["inputs"]["image"],
}}))
""",
    )

    assert result["status"] == "succeeded"
    assert result["created_new"] is True
    assert result["hash"] == digest(data)
    assert close_to(pixel(bytes.fromhex(result["bytes"])), inverted(shade))
    assert bytes.fromhex(result["range"]) == b"\x89PNG"
    # The graph ComfyUI ran named the uploaded file, not a reference.
    assert result["image"] == "x.png"
    assert result["again_new"] is False
    assert result["again"] == result["asset"]
    async with product.client() as client:
        hexdigest = digest(data).removeprefix("blake3:")
        raw = await client.head(f"/api/v2/assets/by-hash/blake3:{hexdigest}")
        encoded = await client.head(f"/api/v2/assets/by-hash/blake3%3A{hexdigest}")
        asset = (await client.get(f"/api/v2/assets/{result['asset']}")).json()
        content = await client.get(
            f"/api/v2/assets/{result['asset']}/content",
            headers={"Range": "bytes=999999-"},
        )
    async with product.client(product.key_b) as other:
        theirs = await other.head(f"/api/v2/assets/by-hash/blake3:{hexdigest}")
    assert (raw.status_code, encoded.status_code, theirs.status_code) == (200, 200, 404)
    assert asset["url"] == f"{product.base_url}/api/v2/assets/{asset['id']}/content"
    assert content.status_code == 416
    assert content.headers["Content-Range"] == f"bytes */{len(data)}"


async def test_sdk_sees_hash_mismatch_blob_not_found_and_missing_asset(
    product: Product,
) -> None:
    """C.1 7, 8 and 9, each raised as the SDK's own exception."""
    data = png(colour(), (4, 4))
    graph = load_invert_save({"__type": "core/ASSET", "info": {"id": "nope"}}, "v2m")
    result = run_sdk(
        product,
        _PRELUDE
        + f"""
seen = {{}}
wrong = client.assets.from_bytes(bytes.fromhex({data.hex()!r}), filename="w.png")
wrong._hash = "blake3:" + "0" * 64
try:
    wrong.commit()
except HashMismatch as error:
    seen["mismatch"] = error.code
try:
    client._low.asset_from_hash("blake3:" + "1" * 64, file_path="w.png")
except Exception as error:
    from comfy_sdk.exceptions import translating
    try:
        with translating():
            raise error
    except BlobNotFound as mapped:
        seen["blob"] = mapped.code
try:
    client.submit(client.workflows.from_json(json.loads({json.dumps(json.dumps(graph))})))
except MissingAsset as error:
    seen["missing"] = error.code
    seen["missing_ids"] = error.details.get("missing_ids")
print(json.dumps(seen))
""",
    )

    assert result == {
        "mismatch": "hash_mismatch",
        "blob": "blob_not_found",
        "missing": "missing_asset",
        "missing_ids": ["nope"],
    }
    async with product.client() as client:
        hexdigest = blake3(data).hexdigest()
        head = await client.head(f"/api/v2/assets/by-hash/blake3:{hexdigest}")
        encoded = await client.head(f"/api/v2/assets/by-hash/blake3%3A{hexdigest}")
    # Nothing was minted by the mismatching upload.
    assert (head.status_code, encoded.status_code) == (404, 404)


async def test_sdk_deletes_an_asset_once(product: Product) -> None:
    """C.1 25: delete() is 204, a second delete 404 (NotFound)."""
    data = png(colour(), (4, 4))
    result = run_sdk(
        product,
        _PRELUDE
        + f"""
asset = client.assets.from_bytes(bytes.fromhex({data.hex()!r}), filename="d.png")
asset_id = asset.commit()
asset.delete()
try:
    client.assets.delete(asset_id)
    second = "deleted"
except NotFound as error:
    second = error.code
print(json.dumps({{"id": asset_id, "second": second}}))
""",
    )

    assert result["second"] == "not_found"
    async with product.client() as client:
        gone = await client.get(f"/api/v2/assets/{result['id']}")
    assert gone.status_code == 404


async def test_a_plain_filename_is_the_callers_own_upload_only(
    product: Product,
) -> None:
    """A LoadImage given "sub/plain.png" reads the tenant's upload of that
    path; tenant B naming it is refused as not in the list."""
    shade = colour()
    async with product.client() as client:
        stored = await upload(client, png(shade, (8, 8)), "input/sub/plain.png")
        assert stored.status_code == 201, stored.text
        assert stored.json()["file_path"] == "sub/plain.png"
        job = await run_v2(client, load_invert_save("sub/plain.png", "plain"))
        [output] = job["outputs"]
        content = await client.get(f"/api/v2/assets/{output['id']}/content")
    async with product.client(product.key_b) as other:
        refused = await other.post(
            "/api/v2/jobs",
            json={"workflow": load_invert_save("sub/plain.png", "plain")},
        )

    assert job["status"] == "succeeded", job["error"]
    assert close_to(pixel(content.content), inverted(shade))
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "invalid_workflow"
    [item] = error["details"]["node_errors"]["1"]["errors"]
    assert item["type"] == "value_not_in_list"


async def test_an_earlier_output_is_an_input_by_native_name_and_by_asset_id(
    product: Product,
) -> None:
    """`<job>/<name> [output]` and a core/ASSET ref to an output id are both
    copied into the job's input folder; inverting twice gives the original."""
    shade = colour()
    async with product.client() as client:
        assert (await upload(client, png(shade, (8, 8)), "first.png")).status_code in (
            200,
            201,
        )
        first = await run_v2(client, load_invert_save("first.png", "out1"))
        [output] = first["outputs"]
        by_name = await run_v2(
            client,
            load_invert_save(f"{first['id']}/{output['name']} [output]", "out2"),
        )
        by_ref = await run_v2(
            client,
            load_invert_save(
                {"__type": "core/ASSET", "info": {"id": output["id"]}}, "out3"
            ),
        )
        contents = [
            (await client.get(f"/api/v2/assets/{job['outputs'][0]['id']}/content"))
            for job in (by_name, by_ref)
        ]

    for job, content in zip((by_name, by_ref), contents, strict=True):
        assert job["status"] == "succeeded", job["error"]
        assert close_to(pixel(content.content), shade, tolerance=2)
