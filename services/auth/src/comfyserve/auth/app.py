"""The composition root: one small async context manager per resource, composed
in `run_app`, torn down in reverse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import structlog
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.auth.clock import Clock, system_clock
from comfyserve.auth.credentials.service import CredentialService
from comfyserve.auth.grpc import AuthApis, AuthServicer
from comfyserve.auth.keys.service import ApiKeyService
from comfyserve.auth.settings import Settings
from comfyserve.auth.signing.cipher import KeyCipher
from comfyserve.auth.signing.service import SigningKeys
from comfyserve.auth.sweeper import Sweeper
from comfyserve.auth.telemetry import Metrics
from comfyserve.auth.tenants.service import TenantAdmin
from comfyserve.auth.tokens.access import AccessTokens
from comfyserve.auth.tokens.service import TokenService
from comfyserve.auth.users.passwords import Passwords, hasher_for
from comfyserve.auth.users.service import LoginService, RegistrationService
from comfyserve.auth.users.throttle import LoginThrottle
from comfyserve.contracts.pb.auth.v1 import auth_pb2, auth_pb2_grpc
from comfyserve.runtime.database import database_engine
from comfyserve.runtime.grpc import serve_grpc
from comfyserve.runtime.metrics import serve_metrics
from comfyserve.runtime.tasks import supervised

log = structlog.get_logger(__name__)

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a running service exposes to its runner and to tests."""

    grpc_port: int
    metrics_port: int
    engine: AsyncEngine
    apis: AuthApis
    sweeper: Sweeper
    metrics: Metrics


def database(settings: Settings) -> AbstractAsyncContextManager[AsyncEngine]:
    """The engine of the service's schema, closed when the block exits."""
    return database_engine(settings.database_url, settings.schema_)


def signing_keys(engine: AsyncEngine, settings: Settings, clock: Clock) -> SigningKeys:
    cipher = KeyCipher(settings.key_encryption_secret.get_secret_value())
    return SigningKeys(engine, cipher, clock)


async def passwords(settings: Settings, hasher: PasswordHasher | None) -> Passwords:
    return await Passwords.create(
        hasher or hasher_for(settings), settings.password_hash_concurrency
    )


def build_apis(
    engine: AsyncEngine,
    settings: Settings,
    hashing: Passwords,
    metrics: Metrics,
    clock: Clock,
) -> AuthApis:
    signing = signing_keys(engine, settings, clock)
    access = AccessTokens(
        signing,
        issuer=settings.issuer,
        audience=settings.audience,
        lifetime=timedelta(minutes=settings.access_token_minutes),
        clock=clock,
    )
    tokens = TokenService(
        engine,
        access,
        refresh_lifetime=timedelta(days=settings.refresh_token_days),
        metrics=metrics,
        clock=clock,
    )
    keys = ApiKeyService(
        engine,
        max_keys_per_tenant=settings.max_keys_per_tenant,
        metrics=metrics,
        clock=clock,
    )
    throttle = LoginThrottle(
        window=timedelta(seconds=settings.login_failure_window_seconds),
        per_account=settings.login_max_failures_per_account,
        per_address=settings.login_max_failures_per_address,
    )
    return AuthApis(
        credentials=CredentialService(engine, access, keys, metrics),
        signing=signing,
        registrations=RegistrationService(engine, hashing, clock),
        logins=LoginService(
            engine, hashing, throttle, tokens, metrics=metrics, clock=clock
        ),
        tokens=tokens,
        keys=keys,
        tenants=TenantAdmin(engine, clock),
    )


@asynccontextmanager
async def run_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    hasher: PasswordHasher | None = None,
    grpc_host: str = "[::]",
) -> AsyncIterator[Runtime]:
    """Start the service (migrations already applied) and stop it on exit."""
    metrics = Metrics()
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(database(settings))
        apis = build_apis(
            engine, settings, await passwords(settings, hasher), metrics, clock
        )
        # Makes the first signing key of a new deployment, and proves at start
        # that AUTH_KEY_ENCRYPTION_SECRET opens the current one.
        await apis.signing.signer()
        await apis.keys.put_service_keys(settings.service_credentials)
        sweeper = Sweeper(
            engine,
            login_window=timedelta(seconds=settings.login_failure_window_seconds),
            interval_s=settings.sweep_interval_seconds,
            clock=clock,
        )
        metrics_port = await stack.enter_async_context(
            serve_metrics(metrics.registry, settings.metrics_port)
        )
        server = await stack.enter_async_context(
            serve_grpc(
                service=SERVICE_NAME,
                add_servicers=lambda grpc_server: (
                    auth_pb2_grpc.add_AuthServiceServicer_to_server(
                        AuthServicer(apis), grpc_server
                    )
                ),
                registry=metrics.registry,
                metrics_prefix="auth",
                address=f"{grpc_host}:{settings.grpc_port}",
            )
        )
        await stack.enter_async_context(supervised({"sweeper": sweeper.loop()}))
        log.info("auth.started", grpc_port=server.port, metrics_port=metrics_port)
        yield Runtime(
            grpc_port=server.port,
            metrics_port=metrics_port,
            engine=engine,
            apis=apis,
            sweeper=sweeper,
            metrics=metrics,
        )
        log.info("auth.stopping")
