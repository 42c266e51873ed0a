"""ComfyUI's server routes besides the queue: the fleet's node catalog
(`/object_info`), model lists read from the catalog's loader nodes, and the
status routes clients probe (`/system_stats`, `/features`, `/extensions`,
`/embeddings`, `/free`). Mounted at `/` and at `/api`."""

from __future__ import annotations

import platform
import sys
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from comfyserve.gateway.native.answers import empty
from comfyserve.gateway.native.prompts import Reader, Writer
from comfyserve.gateway.settings import Settings

router = APIRouter(tags=["native"], include_in_schema=False)

# The model folder each stock loader's combo lists, as ComfyUI's
# folder_paths names them.
MODEL_INPUTS: dict[tuple[str, str], str] = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("VAELoader", "vae_name"): "vae",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("GLIGENLoader", "gligen_name"): "gligen",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
}


def _choices(spec: Any) -> list[str]:
    """A combo input's choices, in either of ComfyUI's spellings."""
    if not isinstance(spec, list) or not spec:
        return []
    if isinstance(spec[0], list):
        return [str(choice) for choice in spec[0]]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return [str(choice) for choice in spec[1].get("options", [])]
    return []


def model_folders(catalog: dict[str, Any]) -> dict[str, list[str]]:
    """The models of each folder that some loader in the catalog offers."""
    folders: dict[str, list[str]] = {}
    for (class_type, input_name), folder in MODEL_INPUTS.items():
        node = catalog.get(class_type)
        if not isinstance(node, dict):
            continue
        inputs = node.get("input", {})
        spec = (inputs.get("required") or {}).get(input_name) or (
            inputs.get("optional") or {}
        ).get(input_name)
        listed = folders.setdefault(folder, [])
        listed += [name for name in _choices(spec) if name not in listed]
    return folders


@router.get("/object_info")
async def object_info(jobs: Reader) -> Response:
    return JSONResponse(await jobs.node_catalog())


@router.get("/object_info/{class_type}")
async def object_info_of(class_type: str, jobs: Reader) -> Response:
    return JSONResponse(await jobs.node_catalog(class_type))


@router.get("/models")
async def models(jobs: Reader) -> Response:
    return JSONResponse(sorted(model_folders(await jobs.node_catalog())))


@router.get("/models/{folder}")
async def models_in(folder: str, jobs: Reader) -> Response:
    found = model_folders(await jobs.node_catalog()).get(folder)
    if found is None:
        return Response(status_code=404)
    return JSONResponse(found)


@router.get("/embeddings")
async def embeddings(jobs: Reader) -> Response:
    # Embeddings are files ComfyUI's catalog does not list; none are offered.
    return JSONResponse([])


@router.get("/extensions")
async def extensions(jobs: Reader) -> Response:
    # No frontend extensions: the product serves no ComfyUI web UI.
    return JSONResponse([])


def features(settings: Settings) -> dict[str, Any]:
    return {
        "supports_preview_metadata": True,
        "max_upload_size": settings.max_upload_bytes,
    }


@router.get("/features")
async def server_features(request: Request, jobs: Reader) -> Response:
    return JSONResponse(features(request.app.state.settings))


@router.get("/system_stats")
async def system_stats(request: Request, jobs: Reader) -> Response:
    """This gateway's view of the system: the GPUs are the executors', which
    run behind the queue, so no device is listed as this server's."""
    return JSONResponse(
        {
            "system": {
                "os": platform.system().lower(),
                "python_version": sys.version,
                "embedded_python": False,
                "comfyui_version": request.app.version,
                "pytorch_version": "",
                "argv": [],
                "ram_total": 0,
                "ram_free": 0,
            },
            "devices": [],
        }
    )


@router.post("/free")
async def free(jobs: Writer) -> Response:
    # Executors unload models themselves between jobs (one job per GPU).
    return empty()
