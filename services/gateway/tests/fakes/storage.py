"""StorageService and the object store behind its presigned URLs, in memory."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
import httpx

from comfyserve.contracts.limits import DOWNLOAD_URLS_PER_CALL
from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st

from .rpc import make_rpc_error, timestamp

OBJECT_HOST = "objects.test"


@dataclass
class FakeObjectStore:
    """The S3 side of presigned URLs, served through httpx.MockTransport."""

    objects: dict[str, bytes] = field(default_factory=dict)
    puts: list[httpx.Request] = field(default_factory=list)
    refuse: bool = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.params.get("sig") == "get":
            return self._get(request)
        if request.method != "PUT" or request.url.params.get("sig") != "put":
            return httpx.Response(403)
        self.puts.append(request)
        if self.refuse:
            return httpx.Response(503)
        self.objects[request.url.path] = request.content
        return httpx.Response(200)

    def _get(self, request: httpx.Request) -> httpx.Response:
        """A GET as S3 answers it: the object, or one `bytes=a-b` range of it."""
        data = self.objects.get(request.url.path)
        if data is None:
            return httpx.Response(404)
        wanted = request.headers.get("Range")
        if wanted is None:
            return httpx.Response(200, content=data)
        first, last = (int(end) for end in wanted.removeprefix("bytes=").split("-"))
        return httpx.Response(
            206,
            content=data[first : last + 1],
            headers={"Content-Range": f"bytes {first}-{last}/{len(data)}"},
        )


class FakeStorage:
    """StorageService in memory, presigning URLs for FakeObjectStore."""

    def __init__(self, objects: FakeObjectStore) -> None:
        self.objects = objects
        # Where presigned PUTs point; a test may point them at a real server.
        self.upload_base = f"http://{OBJECT_HOST}"
        self.upload_query = "sig=put"
        # Storage's own upload limit, which it checks against the declared size.
        self.max_upload_bytes: int | None = None
        self.files: dict[str, st.FileInfo] = {}
        self.download_url_calls: list[st.GetDownloadUrlsRequest] = []
        self.create_requests: list[st.CreateUploadRequest] = []
        # Raised by the named method only, like one call's status.
        self.failures: dict[str, BaseException] = {}
        self.calls: list[str] = []

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        if method in self.failures:
            raise self.failures[method]

    def add_file(self, tenant_id: str, **fields: object) -> st.FileInfo:
        values: dict[str, object] = {
            "id": str(uuid.uuid4()),
            "tenant_id": tenant_id,
            "state": st.FILE_STATE_READY,
            "created_at": timestamp(datetime(2030, 1, 1, tzinfo=UTC)),
            **fields,
        }
        info = st.FileInfo(**values)  # type: ignore[arg-type]
        self.files[info.id] = info
        return info

    def _find(self, tenant_id: str, file_id: str) -> st.FileInfo:
        info = self.files.get(file_id)
        if info is None or info.tenant_id != tenant_id:
            raise make_rpc_error(grpc.StatusCode.NOT_FOUND, f"file {file_id} not found")
        return info

    @staticmethod
    def _path(info: st.FileInfo) -> str:
        return f"/bucket/{info.key}"

    def _download(self, info: st.FileInfo) -> st.DownloadUrl:
        if info.state != st.FILE_STATE_READY:
            raise make_rpc_error(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"file {info.id!r} has not been uploaded yet",
            )
        return st.DownloadUrl(
            file_id=info.id,
            url=f"http://{OBJECT_HOST}{self._path(info)}?sig=get",
            expires_at=timestamp(datetime(2030, 1, 1, 0, 5, tzinfo=UTC)),
        )

    async def create_upload(
        self, request: st.CreateUploadRequest
    ) -> st.CreateUploadResponse:
        self._enter("create_upload")
        self.create_requests.append(request)
        if self.max_upload_bytes is not None and request.size > self.max_upload_bytes:
            raise make_rpc_error(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the upload has {request.size} bytes; the limit is "
                f"{self.max_upload_bytes}",
            )
        info = self.add_file(
            request.tenant_id,
            purpose=request.purpose,
            filename=request.filename,
            content_type=request.content_type,
            size=request.size,
            sha256=request.sha256,
            blake3=request.blake3,
            folder=request.folder or "input",
            path=request.path or request.filename,
            state=st.FILE_STATE_PENDING,
        )
        info.key = f"inputs/{request.tenant_id}/{info.id}/{request.filename}"
        info.expires_at.CopyFrom(timestamp(datetime(2030, 1, 2, tzinfo=UTC)))
        return st.CreateUploadResponse(
            file=info,
            upload_url=f"{self.upload_base}{self._path(info)}?{self.upload_query}",
            upload_headers={"Content-Type": request.content_type},
        )

    async def complete_upload(self, request: st.CompleteUploadRequest) -> st.FileInfo:
        self._enter("complete_upload")
        info = self._find(request.tenant_id, request.file_id)
        data = self.objects.objects.get(self._path(info))
        if data is None:
            raise make_rpc_error(
                grpc.StatusCode.FAILED_PRECONDITION, "nothing uploaded"
            )
        if info.sha256 and hashlib.sha256(data).hexdigest() != info.sha256:
            raise make_rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "sha256 mismatch")
        info.size = len(data)
        if request.HasField("width"):
            info.width = request.width
            info.height = request.height
        info.state = st.FILE_STATE_READY
        return info

    async def get_download_url(
        self, request: st.GetDownloadUrlRequest
    ) -> st.DownloadUrl:
        self._enter("get_download_url")
        return self._download(self._find(request.tenant_id, request.file_id))

    async def get_download_urls(
        self, request: st.GetDownloadUrlsRequest
    ) -> st.GetDownloadUrlsResponse:
        self._enter("get_download_urls")
        self.download_url_calls.append(request)
        if len(request.file_ids) > DOWNLOAD_URLS_PER_CALL:
            raise make_rpc_error(
                grpc.StatusCode.INVALID_ARGUMENT,
                "too many files",
                violations={
                    "file_ids": f"at most {DOWNLOAD_URLS_PER_CALL} files per call"
                },
            )
        return st.GetDownloadUrlsResponse(
            urls=[
                self._download(self._find(request.tenant_id, file_id))
                for file_id in request.file_ids
            ]
        )

    async def get_file(self, request: st.GetFileRequest) -> st.FileInfo:
        self._enter("get_file")
        return self._find(request.tenant_id, request.file_id)

    async def get_storage_usage(
        self, request: st.GetStorageUsageRequest
    ) -> st.GetStorageUsageResponse:
        self._enter("get_storage_usage")
        usage: dict[str, st.TenantStorage] = {}
        for info in self.files.values():
            if request.tenant_ids and info.tenant_id not in request.tenant_ids:
                continue
            entry = usage.setdefault(
                info.tenant_id, st.TenantStorage(tenant_id=info.tenant_id)
            )
            entry.bytes += info.size
            entry.files += 1
        return st.GetStorageUsageResponse(tenants=list(usage.values()))

    async def delete_file(self, request: st.DeleteFileRequest) -> None:
        self._enter("delete_file")
        info = self._find(request.tenant_id, request.file_id)
        del self.files[info.id]
        if not any(other.key == info.key for other in self.files.values()):
            self.objects.objects.pop(self._path(info), None)

    async def list_files(self, request: st.ListFilesRequest) -> st.ListFilesResponse:
        self._enter("list_files")
        return st.ListFilesResponse(
            files=[
                info
                for info in self.files.values()
                if info.tenant_id == request.tenant_id
                and (not request.HasField("job_id") or info.job_id == request.job_id)
            ]
        )

    def _newest(self, tenant_id: str, **wanted: str) -> st.FileInfo | None:
        found = [
            info
            for info in self.files.values()
            if info.tenant_id == tenant_id
            and info.state == st.FILE_STATE_READY
            and all(getattr(info, name) == value for name, value in wanted.items())
        ]
        return found[-1] if found else None

    async def find_file_by_hash(self, request: st.FindFileByHashRequest) -> st.FileInfo:
        self._enter("find_file_by_hash")
        info = self._newest(request.tenant_id, blake3=request.blake3.lower())
        if info is None:
            raise make_rpc_error(grpc.StatusCode.NOT_FOUND, "no such hash")
        return info

    async def create_file_from_hash(
        self, request: st.CreateFileFromHashRequest
    ) -> st.CreateFileFromHashResponse:
        self._enter("create_file_from_hash")
        blake3 = request.blake3.lower()
        source = self._newest(request.tenant_id, blake3=blake3)
        if source is None:
            raise make_rpc_error(grpc.StatusCode.NOT_FOUND, "no such hash")
        folder = request.folder or "input"
        path = request.path or source.path
        existing = self._newest(
            request.tenant_id, blake3=blake3, folder=folder, path=path
        )
        if existing is not None:
            return st.CreateFileFromHashResponse(file=existing, created_new=False)
        minted = st.FileInfo()
        minted.CopyFrom(source)
        minted.id = str(uuid.uuid4())
        minted.folder, minted.path = folder, path
        minted.filename = path.rsplit("/", 1)[-1]
        self.files[minted.id] = minted
        return st.CreateFileFromHashResponse(file=minted, created_new=True)

    async def find_named_file(self, request: st.FindNamedFileRequest) -> st.FileInfo:
        self._enter("find_named_file")
        info = self._newest(
            request.tenant_id, folder=request.folder or "input", path=request.path
        )
        if info is None:
            raise make_rpc_error(grpc.StatusCode.NOT_FOUND, "no such name")
        return info
