"""What an upload is: its type, size and SHA-256, and whether its bytes are the
image type it claims.

Checked before anything is stored; see "Uploads" in the README.
"""

from __future__ import annotations

import functools
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from typing import BinaryIO

from blake3 import blake3
from PIL import Image, UnidentifiedImageError

from comfyserve.gateway.errors import (
    BadRequestError,
    ContentTypeMismatchError,
    EmptyFileError,
)

CHUNK_BYTES = 1024 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$"
)


# Other names for the formats Pillow reads, as browsers and `mimetypes` give
# them, each mapped to Pillow's own.
_IMAGE_TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    # Pillow's name for the multi-picture JPEGs that cameras write.
    "image/mpo": "image/jpeg",
    "image/x-png": "image/png",
    "image/apng": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/vnd.microsoft.icon": "image/x-icon",
    "image/jpx": "image/jp2",
    "image/x-portable-bitmap": "image/x-portable-anymap",
    "image/x-portable-graymap": "image/x-portable-anymap",
    "image/x-portable-pixmap": "image/x-portable-anymap",
    "image/vnd.zbrush.pcx": "image/x-pcx",
    "image/x-rgb": "image/sgi",
    "image/x-xbitmap": "image/xbm",
    "image/x-xpixmap": "image/xpm",
}


@dataclass(frozen=True, slots=True)
class Identified:
    """What Pillow makes of an upload's header."""

    # Pillow's media type of the format, else the format's name; None when the
    # image has too many pixels for Pillow to open it at all.
    format_type: str | None
    width: int | None
    height: int | None


@dataclass(frozen=True, slots=True)
class Inspected:
    size: int
    sha256: str
    # `blake3:<hex>`, the content address of the v2 assets API.
    blake3: str
    # Only for declared image types; None when the bytes are no image.
    image: Identified | None


def content_type_for(filename: str, declared: str | None, override: str | None) -> str:
    """The override, else the part's own type, else a guess from the name."""
    if override is not None:
        if not _MEDIA_TYPE.fullmatch(override.strip()):
            raise BadRequestError("content_type must be a media type such as image/png")
        return override.strip().lower()
    if declared and declared.split(";", 1)[0].strip().lower() != DEFAULT_CONTENT_TYPE:
        return declared
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or declared or DEFAULT_CONTENT_TYPE


def _identify(file: BinaryIO) -> Identified | None:
    # Image.open reads only the header; nothing is decoded.
    try:
        with Image.open(file) as image:
            width, height = image.size
            return Identified(
                image.get_format_mimetype() or image.format, width, height
            )
    except Image.DecompressionBombError:
        return Identified(None, None, None)
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def inspect_upload(file: BinaryIO, is_image: bool) -> Inspected:
    """Size, SHA-256, BLAKE3 and (for images) Pillow's reading of a spooled
    upload, in one pass over its bytes."""
    digest = hashlib.sha256()
    content_address = blake3()
    size = 0
    file.seek(0)
    while chunk := file.read(CHUNK_BYTES):
        digest.update(chunk)
        content_address.update(chunk)
        size += len(chunk)
    image = None
    if is_image and size:
        file.seek(0)
        image = _identify(file)
    file.seek(0)
    return Inspected(
        size=size,
        sha256=digest.hexdigest(),
        blake3=f"blake3:{content_address.hexdigest()}",
        image=image,
    )


def _essence(media_type: str) -> str:
    """The type without parameters, lower case, under Pillow's name."""
    essence = media_type.split(";", 1)[0].strip().lower()
    return _IMAGE_TYPE_ALIASES.get(essence, essence)


@functools.cache
def _pillow_image_types() -> frozenset[str]:
    """The image types Pillow identifies, so an upload's claim can be checked."""
    Image.init()
    return frozenset(
        _essence(value) for value in Image.MIME.values() if value.startswith("image/")
    )


def check_content(media_type: str, inspected: Inspected) -> None:
    """Refuses empty files, and images whose bytes are not the declared type.

    Types Pillow cannot identify (SVG, HEIC) and non-image types pass as
    declared: no small, maintained library judges those without false refusals.
    """
    if inspected.size == 0:
        raise EmptyFileError
    declared = _essence(media_type)
    if declared not in _pillow_image_types():
        return
    image = inspected.image
    if image is None:
        raise ContentTypeMismatchError(media_type, None)
    # Too many pixels to open: an image all the same, as the header said.
    if image.format_type is not None and _essence(image.format_type) != declared:
        raise ContentTypeMismatchError(media_type, image.format_type)
