"""A job's latest preview image, as its worker stored it (a short-lived file
named by `Progress.preview_file_id`), for the surfaces that stream previews:
the v2 `preview` event and the native binary frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import httpx
import structlog

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.gateway.adapters.storage import StorageClient

log = structlog.get_logger(__name__)

_JPEG_MAGIC = b"\xff\xd8"


@dataclass(frozen=True, slots=True)
class Preview:
    content_type: str
    data: bytes = field(repr=False)


async def fetch_preview(
    storage: StorageClient, http: httpx.AsyncClient, tenant_id: str, file_id: str
) -> Preview | None:
    """The preview's bytes; None when it cannot be had (expired, storage
    away): a preview is a courtesy, and a stream goes on without it."""
    try:
        link = await storage.get_download_url(
            st.GetDownloadUrlRequest(tenant_id=tenant_id, file_id=file_id)
        )
        answer = await http.get(link.url)
        answer.raise_for_status()
    except (grpc.aio.AioRpcError, httpx.HTTPError) as error:
        log.warning("gateway.preview.unavailable", error_type=type(error).__name__)
        return None
    # Workers store JPEG or PNG previews (both surfaces allow only those);
    # the bytes tell which, whatever the object store says.
    jpeg = answer.content.startswith(_JPEG_MAGIC)
    return Preview("image/jpeg" if jpeg else "image/png", answer.content)
