"""Hand-written fakes of the workflow and storage services, and an app wired to them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
import structlog
import uvicorn
from fastapi import FastAPI
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2, error_details_pb2, status_pb2
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from comfyserve.contracts.limits import DOWNLOAD_URLS_PER_CALL
from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.app import create_app
from comfyserve.gateway.auth import (
    Principal,
    StaticKeyAuthenticator,
    tenant_id_for_key,
)
from comfyserve.gateway.resources import Resources
from comfyserve.gateway.settings import Settings

KEY_A = "test-key-tenant-a"
KEY_B = "test-key-tenant-b"
# A key whose principal holds no scope, as the auth service may issue.
KEY_NO_SCOPES = "test-key-no-scopes"
OBJECT_HOST = "objects.test"
_FINAL = {
    wf.JOB_STATUS_COMPLETED,
    wf.JOB_STATUS_FAILED,
    wf.JOB_STATUS_CANCELLED,
    wf.JOB_STATUS_EXPIRED,
}


_LISTABLE = {
    wf.JOB_STATUS_PENDING,
    wf.JOB_STATUS_RUNNING,
    wf.JOB_STATUS_COMPLETED,
    wf.JOB_STATUS_FAILED,
    wf.JOB_STATUS_CANCELLED,
    wf.JOB_STATUS_EXPIRED,
}


def make_rpc_error(
    code: grpc.StatusCode, details: str, violations: dict[str, str] | None = None
) -> grpc.aio.AioRpcError:
    """The error a grpc.aio stub raises, optionally with a google.rpc.BadRequest."""
    trailing = grpc.aio.Metadata()
    if violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=name, description=text
                )
                for name, text in violations.items()
            ]
        )
        status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=details)
        status.details.add().Pack(bad_request)
        trailing.add("grpc-status-details-bin", status.SerializeToString())
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), trailing, details=details, debug_error_string=None
    )


def timestamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


def tenant_of(key: str) -> str:
    return tenant_id_for_key(key)


class FakeWorkflow:
    """WorkflowService in memory: tenants' jobs, idempotency, scripted watches."""

    def __init__(self) -> None:
        self.jobs: dict[str, wf.Job] = {}
        self.requests: list[object] = []
        self.idempotency: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.validation_errors: wf.ValidationErrors | None = None
        self.fail_with: BaseException | None = None
        # Raised by the named method only, like one call's status.
        self.failures: dict[str, BaseException] = {}
        self.calls: list[str] = []
        self.watch_scripts: dict[str, list[wf.JobUpdate]] = {}
        # When set, a watch waits for it after its first update.
        self.watch_gate: asyncio.Event | None = None
        self._clock = datetime(2030, 1, 1, tzinfo=UTC)

    def _record(self, method: str, request: object) -> None:
        self.requests.append(request)
        self.calls.append(method)
        if self.fail_with is not None:
            raise self.fail_with
        if method in self.failures:
            raise self.failures[method]

    def add_job(self, tenant_id: str, **fields: object) -> wf.Job:
        self._clock += timedelta(seconds=1)
        values: dict[str, object] = {
            "id": str(uuid.uuid4()),
            "tenant_id": tenant_id,
            "status": wf.JOB_STATUS_PENDING,
            "priority": wf.PRIORITY_NORMAL,
            "created_at": timestamp(self._clock),
            "timeout_seconds": 600,
            **fields,
        }
        job = wf.Job(**values)  # type: ignore[arg-type]
        self.jobs[job.id] = job
        return job

    def _find(self, tenant_id: str, job_id: str) -> wf.Job:
        job = self.jobs.get(job_id)
        if job is None or job.tenant_id != tenant_id:
            raise make_rpc_error(grpc.StatusCode.NOT_FOUND, f"job {job_id} not found")
        return job

    async def submit_job(self, request: wf.SubmitJobRequest) -> wf.SubmitJobResponse:
        self._record("submit_job", request)
        if self.validation_errors is not None:
            return wf.SubmitJobResponse(validation_errors=self.validation_errors)
        body = request.SerializeToString(deterministic=True)
        if request.HasField("idempotency_key"):
            known = self.idempotency.get((request.tenant_id, request.idempotency_key))
            if known is not None:
                if known[0] != body:
                    raise make_rpc_error(grpc.StatusCode.ALREADY_EXISTS, "key reused")
                return wf.SubmitJobResponse(job=self.jobs[known[1]], replayed=True)
        pending = sum(job.status == wf.JOB_STATUS_PENDING for job in self.jobs.values())
        job = self.add_job(
            request.tenant_id,
            priority=request.priority,
            metadata=dict(request.metadata),
            queue_position=pending,
            workflow_json=request.workflow_json,
        )
        job.timeout_seconds = request.timeout_seconds
        if request.HasField("webhook_url"):
            job.webhook_url = request.webhook_url
        if request.HasField("idempotency_key"):
            self.idempotency[(request.tenant_id, request.idempotency_key)] = (
                body,
                job.id,
            )
        return wf.SubmitJobResponse(job=job)

    async def validate_workflow(
        self, request: wf.ValidateWorkflowRequest
    ) -> wf.ValidateWorkflowResponse:
        self._record("validate_workflow", request)
        if self.validation_errors is not None:
            return wf.ValidateWorkflowResponse(
                valid=False, errors=self.validation_errors
            )
        return wf.ValidateWorkflowResponse(valid=True)

    async def get_job(self, request: wf.GetJobRequest) -> wf.Job:
        self._record("get_job", request)
        return self._find(request.tenant_id, request.job_id)

    async def list_jobs(self, request: wf.ListJobsRequest) -> wf.ListJobsResponse:
        self._record("list_jobs", request)
        # As the service: every status a job can have is a filter, and nothing else.
        unknown = [value for value in request.statuses if value not in _LISTABLE]
        if unknown:
            raise make_rpc_error(
                grpc.StatusCode.INVALID_ARGUMENT,
                "statuses is invalid",
                violations={"statuses": f"unknown value {unknown[0]}"},
            )
        jobs = sorted(
            (
                job
                for job in self.jobs.values()
                if job.tenant_id == request.tenant_id
                and (not request.statuses or job.status in request.statuses)
            ),
            key=lambda job: job.created_at.ToDatetime(),
            reverse=True,
        )
        start = int(request.cursor) if request.cursor else 0
        size = request.page_size or 20
        page = jobs[start : start + size]
        more = start + size < len(jobs)
        return wf.ListJobsResponse(
            jobs=page, next_cursor=str(start + size) if more else ""
        )

    async def cancel_job(self, request: wf.CancelJobRequest) -> wf.Job:
        self._record("cancel_job", request)
        job = self._find(request.tenant_id, request.job_id)
        if job.status == wf.JOB_STATUS_PENDING:
            job.status = wf.JOB_STATUS_CANCELLED
            job.ClearField("queue_position")
        elif job.status == wf.JOB_STATUS_RUNNING:
            job.cancel_requested = True
        return job

    async def watch_job(
        self, request: wf.WatchJobRequest
    ) -> AsyncGenerator[wf.JobUpdate, None]:
        self._record("watch_job", request)
        job = self._find(request.tenant_id, request.job_id)
        script = self.watch_scripts.get(job.id)
        if script is None:
            script = [wf.JobUpdate(job=job, kind=wf.UPDATE_KIND_STATUS)]
        for position, update in enumerate(script):
            if position == 1 and self.watch_gate is not None:
                await self.watch_gate.wait()
            yield update


@dataclass
class FakeObjectStore:
    """The S3 side of presigned URLs, served through httpx.MockTransport."""

    objects: dict[str, bytes] = field(default_factory=dict)
    puts: list[httpx.Request] = field(default_factory=list)
    refuse: bool = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method != "PUT" or request.url.params.get("sig") != "put":
            return httpx.Response(403)
        self.puts.append(request)
        if self.refuse:
            return httpx.Response(503)
        self.objects[request.url.path] = request.content
        return httpx.Response(200)


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


class FakeAuthenticator:
    """The configured keys, and principals with chosen scopes for other keys."""

    def __init__(self, keys: list[SecretStr], scoped: dict[str, Principal]) -> None:
        self._keys = StaticKeyAuthenticator(keys)
        self._scoped = scoped

    async def authenticate(self, token: str) -> Principal | None:
        return self._scoped.get(token) or await self._keys.authenticate(token)


@dataclass
class FakeProbe:
    name: str
    healthy: bool = True

    async def check(self, timeout_seconds: float) -> bool:
        return self.healthy


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """structlog and the root logger as a fresh process has them, for every test.

    A test elsewhere in the session that runs `configure_logging` under capsys
    leaves loggers bound to its closed capture file (structlog caches them on
    first use); every request here logs, so each test starts from defaults.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def ts() -> Callable[[datetime], Timestamp]:
    return timestamp


@pytest.fixture
def rpc_error() -> Callable[..., grpc.aio.AioRpcError]:
    return make_rpc_error


@pytest.fixture
def workflow() -> FakeWorkflow:
    return FakeWorkflow()


@pytest.fixture
def object_store() -> FakeObjectStore:
    return FakeObjectStore()


@pytest.fixture
def storage(object_store: FakeObjectStore) -> FakeStorage:
    return FakeStorage(object_store)


@pytest.fixture
def probes() -> list[FakeProbe]:
    return [FakeProbe("workflow"), FakeProbe("storage"), FakeProbe("redis")]


@pytest.fixture
def settings() -> Settings:
    return Settings(
        api_keys=[SecretStr(KEY_A), SecretStr(KEY_B)],
        max_body_bytes=4096,
        max_upload_bytes=256 * 1024,
        sse_keepalive_seconds=10,
    )


@pytest.fixture
def make_app(
    workflow: FakeWorkflow,
    storage: FakeStorage,
    object_store: FakeObjectStore,
    probes: list[FakeProbe],
) -> Callable[[Settings], FastAPI]:
    def build(settings: Settings) -> FastAPI:
        @asynccontextmanager
        async def fakes(settings: Settings) -> AsyncIterator[Resources]:
            transport = httpx.MockTransport(object_store.handle)
            async with httpx.AsyncClient(transport=transport) as http:
                yield Resources(
                    authenticator=FakeAuthenticator(
                        settings.api_keys,
                        {
                            KEY_NO_SCOPES: Principal(
                                tenant_id=tenant_of(KEY_NO_SCOPES),
                                subject="key:no-scopes",
                                scopes=frozenset(),
                            )
                        },
                    ),
                    workflow=workflow,
                    storage=storage,
                    http=http,
                    probes=probes,
                )

        return create_app(settings, fakes)

    return build


@pytest.fixture
def app(make_app: Callable[[Settings], FastAPI], settings: Settings) -> FastAPI:
    return make_app(settings)


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of `app` with its lifespan running, as a server would."""
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state or {})
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver"
        ) as client:
            yield client


@pytest.fixture
def serve_app() -> Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]:
    return serve


@asynccontextmanager
async def serve_uvicorn(config: uvicorn.Config) -> AsyncIterator[int]:
    """A real uvicorn server in this event loop; yields its port."""
    # A socket listening before the server starts queues the client's connection
    # until uvicorn accepts it: no need to wait for start-up.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
def uvicorn_server() -> Callable[[uvicorn.Config], AbstractAsyncContextManager[int]]:
    return serve_uvicorn


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as test_client:
        yield test_client


def _parse_sse(text: str) -> list[tuple[str, Any]]:
    """(event, data) pairs of a text/event-stream body; comments are skipped."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].strip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


@pytest.fixture
def parse_sse() -> Callable[[str], list[tuple[str, Any]]]:
    return _parse_sse


@pytest.fixture
def auth_a() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY_A}"}


@pytest.fixture
def auth_b() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY_B}"}


@pytest.fixture
def auth_no_scopes() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY_NO_SCOPES}"}


@pytest.fixture
def tenant_a() -> str:
    return tenant_of(KEY_A)


@pytest.fixture
def tenant_b() -> str:
    return tenant_of(KEY_B)


@pytest.fixture
def api_workflow() -> dict[str, object]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    }
