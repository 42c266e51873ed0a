"""ComfyUI's catalog and status routes over the fakes."""

from __future__ import annotations

import pytest

CATALOG = {
    "EmptyImage": {"input": {"required": {"width": ["INT", {"min": 1}]}}},
    "CheckpointLoaderSimple": {
        "input": {"required": {"ckpt_name": [["a.safetensors", "b.safetensors"], {}]}}
    },
    "LoraLoader": {
        "input": {"required": {"lora_name": ["COMBO", {"options": ["l.safetensors"]}]}}
    },
}


@pytest.fixture(autouse=True)
def _catalog(workflow):
    workflow.object_info = CATALOG


@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_object_info_is_the_fleets_catalog(client, auth_a, prefix):
    whole = await client.get(f"{prefix}/object_info", headers=auth_a)
    one = await client.get(f"{prefix}/object_info/EmptyImage", headers=auth_a)
    unknown = await client.get(f"{prefix}/object_info/Nope", headers=auth_a)

    assert whole.json() == CATALOG
    assert one.json() == {"EmptyImage": CATALOG["EmptyImage"]}
    assert (unknown.status_code, unknown.json()) == (200, {})


async def test_models_come_from_the_loaders_combos(client, auth_a):
    folders = await client.get("/models", headers=auth_a)
    checkpoints = await client.get("/api/models/checkpoints", headers=auth_a)
    loras = await client.get("/models/loras", headers=auth_a)
    unknown = await client.get("/models/nothing", headers=auth_a)

    assert "checkpoints" in folders.json()
    assert checkpoints.json() == ["a.safetensors", "b.safetensors"]
    assert loras.json() == ["l.safetensors"]
    assert unknown.status_code == 404


async def test_status_routes(client, auth_a, settings):
    stats = (await client.get("/system_stats", headers=auth_a)).json()
    features = (await client.get("/api/features", headers=auth_a)).json()
    free = await client.post("/free", headers=auth_a, json={"unload_models": True})

    assert {"os", "python_version", "comfyui_version"} <= set(stats["system"])
    assert stats["devices"] == []
    assert features["max_upload_size"] == settings.max_upload_bytes
    assert (await client.get("/extensions", headers=auth_a)).json() == []
    assert (await client.get("/embeddings", headers=auth_a)).json() == []
    assert (free.status_code, free.content) == (200, b"")
