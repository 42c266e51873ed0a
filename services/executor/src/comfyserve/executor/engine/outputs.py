"""Map ComfyUI output items (history `outputs`, WS `executed`) to typed refs."""

import mimetypes
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from comfyserve.executor.engine.events import OutputKind, OutputRef

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"})

# Explicit so results do not depend on the host's mime.types.
_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".opus": "audio/opus",
    ".m4a": "audio/mp4",
    ".txt": "text/plain",
    ".json": "application/json",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".obj": "model/obj",
    ".latent": "application/octet-stream",
    ".safetensors": "application/octet-stream",
}


def content_type_for(filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()
    known = _CONTENT_TYPES.get(suffix)
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def output_kind(
    media_key: str, filename: str, *, animated: bool = False, fmt: str | None = None
) -> OutputKind:
    suffix = PurePosixPath(filename).suffix.lower()
    if media_key == "gifs" or suffix in VIDEO_EXTENSIONS:
        return OutputKind.VIDEO
    if fmt is not None and fmt.startswith("video/"):
        return OutputKind.VIDEO
    if media_key == "images":
        if animated:
            return OutputKind.VIDEO
        if suffix in IMAGE_EXTENSIONS:
            return OutputKind.IMAGE
    if media_key == "audio":
        return OutputKind.AUDIO
    if media_key in ("latents", "latent") or suffix == ".latent":
        return OutputKind.LATENT
    if media_key == "text":
        return OutputKind.TEXT
    return OutputKind.FILE


def _is_animated(node_output: Mapping[str, Any]) -> bool:
    # SaveAnimatedWEBP/PNG put `"animated": [true]` beside `images`, not per item.
    flags = node_output.get("animated")
    return isinstance(flags, list | tuple) and any(flag is True for flag in flags)


def refs_from_node_output(
    node_id: str, node_output: Mapping[str, Any]
) -> tuple[OutputRef, ...]:
    """File items of one node's UI output, numbered in order across media keys."""
    animated = _is_animated(node_output)
    refs: list[OutputRef] = []
    for media_key, items in node_output.items():
        if not isinstance(items, list | tuple):
            continue
        for item in items:
            if not isinstance(item, Mapping):
                continue
            filename = item.get("filename")
            if not isinstance(filename, str) or not filename:
                continue
            fmt = item.get("format")
            refs.append(
                OutputRef(
                    node_id=node_id,
                    index=len(refs),
                    filename=filename,
                    subfolder=str(item.get("subfolder") or ""),
                    folder_type=str(item.get("type") or "output"),
                    media_key=media_key,
                    kind=output_kind(
                        media_key,
                        filename,
                        animated=animated,
                        fmt=fmt if isinstance(fmt, str) else None,
                    ),
                    content_type=content_type_for(filename),
                )
            )
    return tuple(refs)


def texts_from_node_output(node_output: Mapping[str, Any]) -> tuple[str, ...]:
    """Plain strings under `text` (nodes that show text, not files)."""
    items = node_output.get("text")
    if not isinstance(items, list | tuple):
        return ()
    return tuple(item for item in items if isinstance(item, str))


def refs_from_history_outputs(
    outputs: Mapping[str, Any],
) -> dict[str, tuple[OutputRef, ...]]:
    return {
        str(node_id): refs_from_node_output(str(node_id), node_output)
        for node_id, node_output in outputs.items()
        if isinstance(node_output, Mapping)
    }


def texts_from_history_outputs(
    outputs: Mapping[str, Any],
) -> dict[str, tuple[str, ...]]:
    texts: dict[str, tuple[str, ...]] = {}
    for node_id, node_output in outputs.items():
        if isinstance(node_output, Mapping):
            found = texts_from_node_output(node_output)
            if found:
                texts[str(node_id)] = found
    return texts
