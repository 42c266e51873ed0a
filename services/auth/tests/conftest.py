"""Fixtures for the auth service's tests: one migrated schema and one running
service (the real gRPC server, in-process) per test session, a clock tests can
move, and a password hasher that records what it verified."""

from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
import grpc
import pytest
from argon2 import PasswordHasher
from pydantic import SecretStr

from comfyserve.auth.app import Runtime, run_app
from comfyserve.auth.migrate import upgrade_async
from comfyserve.auth.settings import Settings
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb
from comfyserve.contracts.pb.auth.v1 import auth_pb2_grpc
from comfyserve.runtime.grpc import insecure_channel, rpc_details

PASSWORD = "correct horse battery"
PER_ACCOUNT = 3
PER_ADDRESS = 6


class FakeClock:
    """The real time, moved by `offset`."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class RecordingHasher(PasswordHasher):
    """argon2's own hasher, remembering every hash it verified against."""

    def __init__(self, **parameters: int) -> None:
        super().__init__(**parameters)
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)


@dataclass(frozen=True)
class Account:
    """A registered owner, logged in."""

    email: str
    user: pb.User
    tokens: pb.TokenPair

    @property
    def credential(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.tokens.access_token)


def bearer(credential: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {credential}"),)


def address() -> str:
    """A client address no other test uses, so throttles stay apart."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(256)}"


def email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def field_of(error: grpc.aio.AioRpcError) -> str:
    """The one request field an INVALID_ARGUMENT names."""
    [field] = rpc_details(error).fields
    return field


@pytest.fixture(scope="session")
def session_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def service_keys() -> dict[str, str]:
    return {
        name: "csk_" + secrets.token_urlsafe(24) for name in ("gateway", "executor")
    }


@pytest.fixture(scope="session")
def settings(
    stack: dict[str, str], session_id: str, service_keys: dict[str, str]
) -> Settings:
    return Settings(
        database_url=stack["DATABASE_URL"],
        schema_=f"auth_test_{session_id}",
        grpc_port=0,
        metrics_port=0,
        key_encryption_secret=SecretStr(secrets.token_urlsafe(32)),
        # Cheap hashes: the tests count verifications, not their cost.
        password_time_cost=1,
        password_memory_kib=8192,
        password_parallelism=1,
        login_max_failures_per_account=PER_ACCOUNT,
        login_max_failures_per_address=PER_ADDRESS,
        service_keys=SecretStr(
            ",".join(f"{name}={secret}" for name, secret in service_keys.items())
        ),
    )


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    await upgrade_async(settings)
    connection = await asyncpg.connect(
        settings.asyncpg_dsn, server_settings={"search_path": settings.schema_}
    )
    try:
        yield connection
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{settings.schema_}" CASCADE')
        await connection.close()


@pytest.fixture(scope="session")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def time_travel(clock: FakeClock) -> Iterator[FakeClock]:
    """The service's clock, back to the real time after the test."""
    yield clock
    clock.offset = timedelta(0)


@pytest.fixture(scope="session")
def hasher(settings: Settings) -> RecordingHasher:
    return RecordingHasher(
        time_cost=settings.password_time_cost,
        memory_cost=settings.password_memory_kib,
        parallelism=settings.password_parallelism,
    )


@pytest.fixture(scope="session")
async def runtime(
    settings: Settings,
    db: asyncpg.Connection,
    clock: FakeClock,
    hasher: RecordingHasher,
) -> AsyncIterator[Runtime]:
    async with run_app(
        settings, clock=clock, hasher=hasher, grpc_host="127.0.0.1"
    ) as running:
        yield running


@pytest.fixture(scope="session")
async def stub(runtime: Runtime) -> AsyncIterator[auth_pb2_grpc.AuthServiceAsyncStub]:
    channel = insecure_channel(f"127.0.0.1:{runtime.grpc_port}")
    yield auth_pb2_grpc.AuthServiceStub(channel)
    await channel.close()


async def register(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, **fields: str
) -> tuple[str, pb.User]:
    fields.setdefault("email", email())
    fields.setdefault("password", PASSWORD)
    user = await stub.Register(pb.RegisterRequest(**fields))
    return fields["email"], user


async def login(
    stub: auth_pb2_grpc.AuthServiceAsyncStub,
    user_email: str,
    *,
    password: str = PASSWORD,
    client_address: str | None = None,
    scopes: tuple[str, ...] = (),
) -> pb.TokenPair:
    return await stub.Login(
        pb.LoginRequest(
            email=user_email,
            password=password,
            client_address=client_address or address(),
            scopes=scopes,
        )
    )


@pytest.fixture
async def owner(stub: auth_pb2_grpc.AuthServiceAsyncStub) -> Account:
    """A new tenant's owner, logged in with every scope of the role."""
    user_email, user = await register(stub)
    return Account(user_email, user, await login(stub, user_email))


@pytest.fixture
async def other_owner(stub: auth_pb2_grpc.AuthServiceAsyncStub) -> Account:
    """The owner of another tenant."""
    user_email, user = await register(stub)
    return Account(user_email, user, await login(stub, user_email))


@pytest.fixture
async def admin(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, db: asyncpg.Connection
) -> Account:
    """A user flagged admin, as bootstrap makes one, logged in."""
    user_email, user = await register(stub)
    await db.execute("UPDATE users SET is_admin = true WHERE email = $1", user_email)
    return Account(user_email, user, await login(stub, user_email))
