"""Rules for what callers may name: filenames, content types, and object keys."""

from __future__ import annotations

import re
import unicodedata
import uuid
from urllib.parse import quote

from comfyserve.storage.errors import InvalidArgument
from comfyserve.storage.files.models import Folder

MAX_FILENAME_CHARS = 200
# Tenant, job and node ids become key segments: plain tokens only. ComfyUI node
# ids can carry ':' (nodes inside subgraphs).
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_UNSAFE_NAME_CHARS = re.compile(r"[^\w.\-+=@,() ]")
_BLAKE3 = re.compile(r"^blake3:[0-9a-f]{64}$")
MAX_PATH_CHARS = 512
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


def safe_filename(raw: str) -> str:
    """The basename of `raw`, refused when it is empty, too long, or traverses."""
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in raw):
        raise InvalidArgument("filename", "must not contain control characters")
    parts = raw.replace("\\", "/").split("/")
    if ".." in (part.strip() for part in parts):
        raise InvalidArgument("filename", "must not contain '..' segments")
    name = unicodedata.normalize("NFC", parts[-1]).strip()
    if name in ("", "."):
        raise InvalidArgument("filename", "must name a file")
    if len(name) > MAX_FILENAME_CHARS:
        raise InvalidArgument(
            "filename", f"must be at most {MAX_FILENAME_CHARS} characters"
        )
    # Characters with a meaning in URLs or shells are replaced, so the key and
    # the Content-Disposition header carry the name unchanged.
    return _UNSAFE_NAME_CHARS.sub("_", name)


def normalise_blake3(raw: str) -> str:
    """`blake3:<64 hex>` in lower case, or InvalidArgument."""
    value = raw.strip().lower()
    if not _BLAKE3.fullmatch(value):
        raise InvalidArgument("blake3", "must be 'blake3:' and 64 hex digits")
    return value


def normalise_folder(raw: str | None) -> str:
    if not raw:
        return Folder.INPUT.value
    try:
        return Folder(raw).value
    except ValueError:
        raise InvalidArgument("folder", "must be input, temp or output") from None


def safe_path(raw: str) -> str:
    """A relative path of safe filename segments (`sub/photo.png`).

    Every segment passes `safe_filename`, so a path never leaves its folder.
    """
    if raw.startswith("/") or "\\" in raw:
        raise InvalidArgument("path", "must be a relative path with '/' separators")
    segments = raw.split("/")
    if any(segment.strip() in ("", ".", "..") for segment in segments):
        raise InvalidArgument("path", "must not have empty, '.' or '..' segments")
    path = "/".join(safe_filename(segment) for segment in segments)
    if len(path) > MAX_PATH_CHARS:
        raise InvalidArgument("path", f"must be at most {MAX_PATH_CHARS} characters")
    return path


def normalise_content_type(raw: str, allowed: frozenset[str]) -> str:
    """The bare media type (parameters dropped, lower case) if it is allowed."""
    media_type = raw.split(";", 1)[0].strip().lower()
    if not _CONTENT_TYPE.fullmatch(media_type):
        raise InvalidArgument("content_type", "must be a media type such as image/png")
    if media_type not in allowed:
        raise InvalidArgument("content_type", f"{media_type!r} is not allowed")
    return media_type


def key_segment(field: str, value: str) -> str:
    if not _SEGMENT.fullmatch(value) or value.strip(".") == "":
        raise InvalidArgument(
            field, "must be 1-128 letters, digits, '.', '_', ':' or '-'"
        )
    return value


def input_key(tenant_id: str, file_id: uuid.UUID, filename: str) -> str:
    return f"inputs/{tenant_id}/{file_id}/{filename}"


def output_key(
    tenant_id: str, job_id: str, attempt: int, node_id: str, index: int, filename: str
) -> str:
    # Each attempt writes under its own folder, so a losing attempt can never
    # overwrite an object of the attempt that ends the job.
    prefix = job_output_prefix(tenant_id, job_id)
    return f"{prefix}{attempt}/{node_id}/{index}-{filename}"


def job_output_prefix(tenant_id: str, job_id: str) -> str:
    """The folder holding every object of the job's outputs, of all attempts."""
    return f"outputs/{tenant_id}/{job_id}/"


def attachment_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name per RFC 6266."""
    fallback = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return (
        f'attachment; filename="{fallback}"; '
        f"filename*=UTF-8''{quote(filename, safe='')}"
    )
