"""StorageService records plus presigned transfers of the bytes over HTTP."""

from __future__ import annotations

import grpc
import httpx
import structlog

from comfyserve.contracts.events import InputFile, OutputFile
from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as st_grpc
from comfyserve.executor.errors import InputUnavailable, OutputRejected, StorageFailed
from comfyserve.executor.jobs.models import NewOutput, NewPreview

log = structlog.get_logger(__name__)

_MISSING_CODES = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)
# A preview matters while its job runs; a client reading it later finds none.
PREVIEW_TTL_SECONDS = 3600
_PREVIEW_FOLDER = "comfyserve-previews"
_LIMIT_CODES = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


def _rpc_failure(call: str, exc: grpc.aio.AioRpcError) -> str:
    return f"{call}: {exc.code().name}: {exc.details()}"


class GrpcFileStore:
    def __init__(
        self, channel: grpc.aio.Channel, http: httpx.AsyncClient, timeout_s: float
    ) -> None:
        self._stub = st_grpc.StorageServiceStub(channel)
        self._http = http
        self._timeout_s = timeout_s

    async def fetch_input(self, tenant_id: str, file: InputFile) -> bytes:
        try:
            url = await self._stub.GetDownloadUrl(
                st.GetDownloadUrlRequest(tenant_id=tenant_id, file_id=file.file_id),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            message = _rpc_failure("GetDownloadUrl", exc)
            if exc.code() in _MISSING_CODES:
                raise InputUnavailable(f"input {file.file_id}: {message}") from exc
            raise StorageFailed(message) from exc
        try:
            response = await self._http.get(url.url)
        except httpx.HTTPError as exc:
            raise StorageFailed(f"GET input {file.file_id}: {exc!r}") from exc
        if response.status_code == 404:
            raise InputUnavailable(f"input {file.file_id} has no object")
        if response.status_code != 200:
            raise StorageFailed(
                f"GET input {file.file_id} answered HTTP {response.status_code}"
            )
        return response.content

    async def store_output(self, tenant_id: str, output: NewOutput) -> OutputFile:
        # One call registers the output, the PUT sends its bytes, and nothing
        # follows: storage makes it ready when the job's end (or a reader)
        # finds the object there (ADR 0008).
        created = await self._create(
            st.CreateUploadRequest(
                tenant_id=tenant_id,
                purpose=st.FILE_PURPOSE_OUTPUT,
                filename=output.filename,
                content_type=output.content_type,
                size=output.size,
                job_id=output.job_id,
                attempt=output.attempt,
                node_id=output.node_id,
                index=output.index,
                sha256=output.sha256,
                width=output.width,
                height=output.height,
            )
        )
        await self._put(created, output.data, "output")
        info = created.file
        return OutputFile(
            file_id=info.id,
            node_id=output.node_id,
            index=output.index,
            filename=info.filename or output.filename,
            kind=output.kind,
            content_type=info.content_type or output.content_type,
            size=info.size or output.size,
            sha256=info.sha256 or output.sha256,
            bucket=info.bucket,
            key=info.key,
            width=output.width,
            height=output.height,
        )

    async def store_preview(self, tenant_id: str, preview: NewPreview) -> str:
        # Not a job output (which the job would list and keep): a file of the
        # tenant's `temp` folder, as ComfyUI keeps previews, that expires soon.
        created = await self._create(
            st.CreateUploadRequest(
                tenant_id=tenant_id,
                purpose=st.FILE_PURPOSE_INPUT,
                filename=preview.filename,
                content_type=preview.content_type,
                size=len(preview.data),
                ttl_seconds=PREVIEW_TTL_SECONDS,
                folder="temp",
                path=f"{_PREVIEW_FOLDER}/{preview.job_id}/{preview.filename}",
            )
        )
        await self._put(created, preview.data, "preview")
        try:
            await self._stub.CompleteUpload(
                st.CompleteUploadRequest(tenant_id=tenant_id, file_id=created.file.id),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise StorageFailed(_rpc_failure("CompleteUpload", exc)) from exc
        return created.file.id

    async def _put(
        self, created: st.CreateUploadResponse, data: bytes, what: str
    ) -> None:
        try:
            response = await self._http.put(
                created.upload_url, content=data, headers=dict(created.upload_headers)
            )
        except httpx.HTTPError as exc:
            raise StorageFailed(f"PUT {what} {created.file.id}: {exc!r}") from exc
        if response.status_code not in (200, 201, 204):
            raise StorageFailed(
                f"PUT {what} {created.file.id} answered HTTP {response.status_code}"
            )

    async def _create(self, request: st.CreateUploadRequest) -> st.CreateUploadResponse:
        try:
            return await self._stub.CreateUpload(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            message = _rpc_failure("CreateUpload", exc)
            if exc.code() in _LIMIT_CODES:
                raise OutputRejected(message) from exc
            raise StorageFailed(message) from exc
