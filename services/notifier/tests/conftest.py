"""Notifier test fixtures: a real HTTP receiver, a fake job source, test
topics, and the real service in-process on a schema of its own."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text

from comfyserve.contracts.pb.notifier.v1 import notifier_pb2_grpc as pb_grpc
from comfyserve.contracts.topics import dlq
from comfyserve.notifier.app import App, running
from comfyserve.notifier.db import create_engine
from comfyserve.notifier.settings import Settings

from .support import FakeJobs

# Retries a fifth of a second apart, so a test sees several windows pass.
FAST_SCHEDULE = "0.2,0.2,0.2,0.2,0.2"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float


@dataclass
class Receiver:
    """A real HTTP receiver on 127.0.0.1: answers `statuses` in turn (then
    `default`), can be stopped and started on the same port, and records
    every request it answered."""

    port: int
    statuses: list[int] = field(default_factory=list)
    default: int = 200
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            body = await request.read()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            status = self.statuses.pop(0) if self.statuses else self.default
            self.received.append(
                Received(dict(request.headers), body, status, time.monotonic())
            )
            return web.Response(status=status, text=f"answered {status}")
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def succeeded(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    """The running stack's settings. Unlike the root fixture this never starts
    the stack: these tests need only Postgres and Kafka, and must not wait on
    parts of the stack they do not use."""
    env_file = Path(__file__).resolve().parents[3] / ".local" / "stack.env"
    if not env_file.exists():
        pytest.fail("the local stack is not up: run `make up` first")
    return dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver(free_port())
    await found.start()
    try:
        yield found
    finally:
        await found.stop()


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    within_s: float = 20.0,
    what: str = "the condition",
) -> None:
    """Waits, with a deadline, until `check` holds."""
    deadline = time.monotonic() + within_s
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within_s}s")
        await asyncio.sleep(0.05)


def notifier_settings(
    stack: dict[str, str], schema: str, **overrides: object
) -> Settings:
    values: dict[str, Any] = {
        "database_url": stack["DATABASE_URL"],
        "schema_name": schema,
        "grpc_port": 0,
        "metrics_port": 0,
        "kafka_bootstrap_servers": stack["KAFKA_BOOTSTRAP_SERVERS"],
        # Never the product's topics or group: a test must not take, nor
        # commit, the events of a running stack.
        "finished_topic": f"test.{schema}.finished",
        "started_topic": f"test.{schema}.started",
        "progress_topic": f"test.{schema}.progress",
        "dead_topic": f"test.{schema}.dead",
        "consumer_group": f"test.{schema}",
        # The topics are the test's own: nothing in them predates it.
        "first_start_offset": "earliest",
        "retry_schedule_seconds": FAST_SCHEDULE,
        "retry_jitter": 0.0,
        "idle_poll_seconds": 0.5,
        # The receivers of these tests listen on loopback.
        "allow_private_targets": True,
        # The service alone: its callers' credentials are the runtime's tests.
        "require_credentials": False,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def topics_of(settings: Settings) -> list[str]:
    assert settings.dead_topic is not None
    return [
        settings.finished_topic,
        settings.started_topic,
        settings.progress_topic,
        settings.dead_topic,
        dlq(settings.finished_topic),
    ]


async def drop_schema(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(f'DROP SCHEMA IF EXISTS "{settings.schema_name}" CASCADE')
            )
    finally:
        await engine.dispose()


@pytest.fixture
async def settings(stack: dict[str, str]) -> AsyncIterator[Settings]:
    """Settings on a schema and topics of this test's own, dropped after it."""
    found = notifier_settings(stack, f"notifier_test_{uuid.uuid4().hex[:12]}")
    admin = AIOKafkaAdminClient(bootstrap_servers=found.kafka_bootstrap_servers)
    await admin.start()
    try:
        # Created up front, as the stack provisions the product's: the service
        # subscribes without creating them.
        await admin.create_topics([NewTopic(t, 1, 1) for t in topics_of(found)])
        yield found
    finally:
        await drop_schema(found)
        try:
            await admin.delete_topics(topics_of(found))
        finally:
            await admin.close()


@pytest.fixture
def jobs() -> FakeJobs:
    return FakeJobs()


@pytest.fixture
async def app(settings: Settings, jobs: FakeJobs) -> AsyncIterator[App]:
    async with running(settings, jobs=jobs) as started:
        yield started


@pytest.fixture
async def client(app: App) -> AsyncIterator[pb_grpc.NotifierServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        yield pb_grpc.NotifierServiceStub(channel)  # type: ignore[misc]


def now() -> datetime:
    return datetime.now(UTC)
