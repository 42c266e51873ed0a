"""The local ComfyUI runs a real model-free prompt and saves the inverted image."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.integration

COLOUR = (0x33, 0x66, 0x99)


async def test_prompt_inverts_colour(stack: dict[str, str], unique: str) -> None:
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {
                "width": 16,
                "height": 8,
                "batch_size": 1,
                "color": (COLOUR[0] << 16) | (COLOUR[1] << 8) | COLOUR[2],
            },
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": f"stacktest_{unique}"},
        },
    }
    async with httpx.AsyncClient(base_url=stack["COMFYUI_URL"]) as client:
        queued = await client.post("/prompt", json={"prompt": prompt})
        assert queued.status_code == 200, queued.text
        prompt_id = queued.json()["prompt_id"]

        async with asyncio.timeout(60):
            # The 2024 build pushes nothing without a websocket; poll its history.
            while not (history := (await client.get(f"/history/{prompt_id}")).json()):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        entry = history[prompt_id]
        assert entry["status"]["status_str"] == "success"
        [image] = entry["outputs"]["3"]["images"]

        png = await client.get(
            "/view",
            params={
                "filename": image["filename"],
                "subfolder": image["subfolder"],
                "type": image["type"],
            },
        )
        assert png.status_code == 200
        picture = Image.open(io.BytesIO(png.content)).convert("RGB")
        assert picture.size == (16, 8)
        pixel = picture.getpixel((0, 0))
        assert isinstance(pixel, tuple)
        # ComfyUI works in float32, so a channel may round one step either way.
        assert all(
            abs(got - (255 - want)) <= 1
            for got, want in zip(pixel, COLOUR, strict=True)
        )
        assert pixel != COLOUR
