"""A stored file's bytes through the gateway, whole or one `Range`.

The v2 assets `/content` route and native `/view` share it: the presigned URL
is fetched here and never leaves the gateway (nor reaches a log line). The
range is judged against the recorded size, so a 416 needs no object-store call
and always carries `Content-Range: bytes */<size>`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx
import structlog
from fastapi import Response
from fastapi.responses import StreamingResponse

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.gateway.adapters.storage import StorageClient
from comfyserve.gateway.errors import ServiceUnavailableError

log = structlog.get_logger(__name__)

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class ObjectGone(Exception):
    """The record exists but the object store has no bytes for it."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    first: int
    last: int


class Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range asked for, None for the whole file (no header, several
    ranges, or a form we do not serve, which RFC 9110 lets us ignore)."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    start, end = match.groups()
    if not start:
        if not end or int(end) == 0:
            raise Unsatisfiable
        return ByteRange(max(size - int(end), 0), size - 1)
    first = int(start)
    last = min(int(end), size - 1) if end else size - 1
    if end and int(end) < first:
        return None
    if first >= size:
        raise Unsatisfiable
    return ByteRange(first, last)


async def stream_file(
    storage: StorageClient,
    http: httpx.AsyncClient,
    info: st.FileInfo,
    range_header: str | None,
    headers: Mapping[str, str],
) -> Response:
    """200 or 206 with the bytes, 416 for a range past the end; `headers` are
    added to each answer. Raises ObjectGone when the bytes are missing, and
    ServiceUnavailableError when the object store cannot be reached."""
    common = {"Accept-Ranges": "bytes", **headers}
    try:
        wanted = parse_range(range_header, info.size)
    except Unsatisfiable:
        return Response(
            status_code=416,
            headers={**common, "Content-Range": f"bytes */{info.size}"},
        )
    link = await storage.get_download_url(
        st.GetDownloadUrlRequest(tenant_id=info.tenant_id, file_id=info.id)
    )
    request_headers = {}
    if wanted is not None:
        request_headers["Range"] = f"bytes={wanted.first}-{wanted.last}"
    upstream = await _open(http, link.url, request_headers, info.id)
    if upstream.status_code not in (200, 206):
        await upstream.aclose()
        log.warning(
            "gateway.file.read_refused", file_id=info.id, status=upstream.status_code
        )
        raise ObjectGone(info.id)
    answer = {"Content-Type": info.content_type, **common}
    if wanted is None:
        status = 200
        answer["Content-Length"] = str(info.size)
    else:
        status = 206
        answer["Content-Length"] = str(wanted.last - wanted.first + 1)
        answer["Content-Range"] = f"bytes {wanted.first}-{wanted.last}/{info.size}"
    return StreamingResponse(
        _body(upstream), status_code=status, headers=answer, media_type=None
    )


async def _open(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], file_id: str
) -> httpx.Response:
    try:
        return await http.send(
            http.build_request("GET", url, headers=headers), stream=True
        )
    except httpx.HTTPError as error:
        # The URL carries a signature: only the error's type is logged.
        log.warning(
            "gateway.file.read_failed", file_id=file_id, error=type(error).__name__
        )
        raise ServiceUnavailableError("The object store could not be reached") from None


async def _body(upstream: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.aiter_bytes():
            yield chunk
    finally:
        await upstream.aclose()
