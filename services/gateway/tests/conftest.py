"""Fixtures: the hand-written fakes of `fakes/` (workflow, storage, auth, Redis)
and an app wired to them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import httpx
import pytest
import structlog
import uvicorn
from fastapi import FastAPI
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import SecretStr

from comfyserve.gateway.app import create_app
from comfyserve.gateway.auth.principal import (
    Authenticator,
    BootstrapKeys,
    tenant_id_for_key,
)
from comfyserve.gateway.resources import Resources
from comfyserve.gateway.settings import Settings
from comfyserve.runtime.auth import Principal

from .fakes.auth import (
    ADMIN_TOKEN,
    KEY_NO_SCOPES,
    USER_TOKEN,
    FakeAuth,
    FakeVerifier,
    known_principals,
)
from .fakes.idempotency import FakeIdempotencyClaims
from .fakes.limits import FakeLimiter, FakeSuspensions
from .fakes.notifier import FakeNotifier
from .fakes.prompt_router import FakePromptRouter
from .fakes.rpc import make_rpc_error, timestamp
from .fakes.storage import FakeObjectStore, FakeStorage
from .fakes.workflow import FakeWorkflow
from .support import parse_sse_text, serve, serve_uvicorn

# Bootstrap keys (GATEWAY_API_KEYS), each its own tenant.
KEY_A = "test-key-tenant-a"
KEY_B = "test-key-tenant-b"


def tenant_of(key: str) -> str:
    return tenant_id_for_key(key)


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
    first use); every request here logs, so each test starts from defaults,
    but for tracebacks printed plain: rich's, with every frame's locals, take
    seconds for an app's.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    structlog.reset_defaults()
    *processors, _ = structlog.get_config()["processors"]
    plain = structlog.dev.ConsoleRenderer(
        exception_formatter=structlog.dev.plain_traceback
    )
    structlog.configure(processors=[*processors, plain])
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
def notifier() -> FakeNotifier:
    return FakeNotifier()


@pytest.fixture
def object_store() -> FakeObjectStore:
    return FakeObjectStore()


@pytest.fixture
def storage(object_store: FakeObjectStore) -> FakeStorage:
    return FakeStorage(object_store)


@pytest.fixture
def principals() -> dict[str, Principal]:
    return known_principals()


@pytest.fixture
def verifier(principals: dict[str, Principal]) -> FakeVerifier:
    return FakeVerifier(principals)


@pytest.fixture
def auth(principals: dict[str, Principal]) -> FakeAuth:
    return FakeAuth(principals)


@pytest.fixture
def limiter() -> FakeLimiter:
    return FakeLimiter()


@pytest.fixture
def suspensions() -> FakeSuspensions:
    return FakeSuspensions()


@pytest.fixture
def idempotency() -> FakeIdempotencyClaims:
    return FakeIdempotencyClaims()


@pytest.fixture
def prompt_router() -> FakePromptRouter:
    return FakePromptRouter()


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


FakeResources = Callable[[Settings, httpx.AsyncClient], Resources]


@pytest.fixture
def fake_resources(
    workflow: FakeWorkflow,
    storage: FakeStorage,
    notifier: FakeNotifier,
    probes: list[FakeProbe],
    auth: FakeAuth,
    verifier: FakeVerifier,
    limiter: FakeLimiter,
    suspensions: FakeSuspensions,
    prompt_router: FakePromptRouter,
    idempotency: FakeIdempotencyClaims,
) -> FakeResources:
    """The fakes as the app's resources, uploading through `http`."""

    def resources(settings: Settings, http: httpx.AsyncClient) -> Resources:
        return Resources(
            authenticator=Authenticator(BootstrapKeys(settings.api_keys), verifier),
            auth=auth,
            workflow=workflow,
            storage=storage,
            notifier=notifier,
            limiter=limiter,
            suspensions=suspensions,
            prompt_router=prompt_router,
            idempotency=idempotency,
            http=http,
            probes=probes,
        )

    return resources


@pytest.fixture
def make_app(
    object_store: FakeObjectStore, fake_resources: FakeResources
) -> Callable[[Settings], FastAPI]:
    def build(settings: Settings) -> FastAPI:
        @asynccontextmanager
        async def fakes(settings: Settings) -> AsyncIterator[Resources]:
            transport = httpx.MockTransport(object_store.handle)
            async with httpx.AsyncClient(transport=transport) as http:
                yield fake_resources(settings, http)

        return create_app(settings, fakes)

    return build


@pytest.fixture
def app(make_app: Callable[[Settings], FastAPI], settings: Settings) -> FastAPI:
    return make_app(settings)


@pytest.fixture
def serve_app() -> Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]:
    return serve


@pytest.fixture
def uvicorn_server() -> Callable[[uvicorn.Config], AbstractAsyncContextManager[int]]:
    return serve_uvicorn


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as test_client:
        yield test_client


@pytest.fixture
def parse_sse() -> Callable[[str], list[tuple[str, Any]]]:
    return parse_sse_text


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
def auth_user() -> dict[str, str]:
    return {"Authorization": f"Bearer {USER_TOKEN}"}


@pytest.fixture
def auth_admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


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
